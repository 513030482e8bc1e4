"""Exactly-once side effects on top of at-least-once delivery.

Before an outside call (posting a card, a thread message) we write a `pending` marker; after it we
write the result. A worker that finds a marker still `pending` crashed mid-call, so it first asks the
outside system whether the effect already happened (Slack message metadata) before doing it again.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis

_PENDING = "pending:"


class Effects:
    def __init__(self, redis: aioredis.Redis, key: str) -> None:
        self.redis = redis
        self.key = key

    async def get(self, name: str) -> str | None:
        raw = await self.redis.hget(self.key, name)
        return raw.decode() if isinstance(raw, bytes) else raw

    async def once(
        self,
        name: str,
        do: Callable[[], Awaitable[str]],
        find: Callable[[float], Awaitable[str | None]],
    ) -> tuple[str, bool]:
        """Result of the effect and whether this call performed it."""
        current = await self.get(name)
        if current is not None and not current.startswith(_PENDING):
            return current, False
        if current is not None:
            found = await find(float(current.removeprefix(_PENDING)))
            if found is not None:
                await self.redis.hset(self.key, name, found)
                return found, False
        await self.redis.hset(self.key, name, f"{_PENDING}{time.time():.6f}")
        result = await do()
        await self.redis.hset(self.key, name, result)
        return result, True
