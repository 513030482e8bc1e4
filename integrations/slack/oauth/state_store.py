"""OAuth `state` values in Redis, so any gateway replica can finish an install another one started.

A state is issued with a TTL (Redis expires it, no clean-up job) and consumed with a single `DEL`:
`DEL` answers how many keys it removed, so of two concurrent callbacks carrying the same state exactly
one sees 1. That makes each state single-use without GETDEL (Redis 6.2+) or a script.
"""

from __future__ import annotations

import logging
import secrets
from logging import Logger
from typing import Any

import redis.asyncio as aioredis
from slack_sdk.oauth.state_store.async_state_store import AsyncOAuthStateStore


class RedisOAuthStateStore(AsyncOAuthStateStore):
    def __init__(
        self,
        redis: aioredis.Redis,
        expiration_seconds: int = 600,
        *,
        key_prefix: str = "sb:slack",
        logger: Logger | None = None,
    ) -> None:
        self.redis = redis
        self.expiration_seconds = expiration_seconds
        self.key_prefix = key_prefix
        self._logger = logger or logging.getLogger(__name__)

    @property
    def logger(self) -> Logger:
        return self._logger

    def _key(self, state: str) -> str:
        return f"{self.key_prefix}:oauth_state:{state}"

    async def async_issue(self, *args: Any, **kwargs: Any) -> str:
        """An unguessable value (it is also the CSRF check bolt compares with the browser cookie)."""
        state = secrets.token_urlsafe(24)
        await self.redis.set(self._key(state), "1", px=self.expiration_seconds * 1000, nx=True)
        return state

    async def async_consume(self, state: str) -> bool:
        if not state:
            return False
        consumed = int(await self.redis.delete(self._key(state))) == 1
        if not consumed:
            self.logger.warning("OAuth state unknown, expired or already used")
        return consumed
