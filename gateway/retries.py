"""Delayed retries for replies the customer's channel did not take.

A reply that fails is not retried in place: that would hold up every later entry of the customer's
partition while their SMS provider is down. It goes into a sorted set with its due time instead, and
the worker re-queues it on the conversation's stream when it is due (each entry popped by one worker).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable, Mapping

import redis.asyncio as aioredis
import structlog

from gateway import keys

log = structlog.get_logger(__name__)

RETRY_KEY = f"{keys.PREFIX}retry"
MAX_ATTEMPTS = 12
"""With the back-off below, about half an hour of trying before we give up and say so."""

_POP = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, member in ipairs(due) do redis.call('ZREM', KEYS[1], member) end
return due
"""


def backoff(attempt: int) -> float:
    return float(min(2.0 * 2 ** (attempt - 1), 300.0))


class DeliveryRetries:
    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis = redis
        self._pop = redis.register_script(_POP)

    async def schedule(self, fields: Mapping[str, str], attempt: int, now: float | None = None) -> float:
        due = (now or time.time()) + backoff(attempt)
        member = json.dumps({**fields, "attempt": str(attempt)}, sort_keys=True)
        await self.redis.zadd(RETRY_KEY, {member: due})
        return due

    async def due(self, now: float | None = None, limit: int = 100) -> list[dict[str, str]]:
        raw = await self._pop(keys=[RETRY_KEY], args=[now or time.time(), limit])
        return [json.loads(m) for m in raw]

    async def run(self, requeue: Callable[[dict[str, str]], Awaitable[None]], stop: asyncio.Event,
                  interval: float = 0.5) -> None:
        while not stop.is_set():
            try:
                for fields in await self.due():
                    await requeue(fields)
                    log.info("reply_retry_requeued", conversation_id=fields.get("conv"), attempt=fields["attempt"])
            except Exception as exc:
                log.warning("reply_retry_failed", error=repr(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=interval)
