"""The live policy, shared through Redis so every process sees a change within a second."""

from __future__ import annotations

import time

import redis.asyncio as aioredis
import structlog

from gateway import keys
from router.policy import Policy

log = structlog.get_logger(__name__)


class PolicyStore:
    def __init__(self, redis: aioredis.Redis, max_age_s: float = 1.0) -> None:
        self.redis = redis
        self.max_age_s = max_age_s
        self._cached: Policy | None = None
        self._checked = 0.0

    async def bootstrap(self, policy: Policy) -> Policy:
        """Store the file's policy unless Redis already holds one (changes made from Slack win)."""
        if await self.redis.set(keys.POLICY, policy.to_json(), nx=True):
            log.info("policy_stored", version=policy.version, source="file")
        return await self.current(force=True)

    async def current(self, force: bool = False) -> Policy:
        now = time.monotonic()
        if self._cached is not None and not force and now - self._checked < self.max_age_s:
            return self._cached
        raw = await self.redis.get(keys.POLICY)
        if raw is None:
            raise RuntimeError("no policy in Redis; the web or serve process stores it at start")
        if self._cached is None or raw != self._raw:
            self._cached = Policy.from_json(raw)
            self._raw = raw
        self._checked = now
        return self._cached

    async def for_conversation(self, conversation_id: str) -> Policy:
        """The policy that routes this conversation (the canary arm, when one is running)."""
        return await self.current()

    _raw: bytes | str = b""
