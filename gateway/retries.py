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
-- Pop what is due and put it back on its conversation's stream in the same step: popping first and
-- queuing after lost the whole batch to a Redis error or a shutdown in between (the agent had been told
-- "retrying", and nothing else ever came). Members scheduled without a stream are returned instead.
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
local legacy = {}
for _, member in ipairs(due) do
  local fields = cjson.decode(member)
  local stream = fields['stream']
  if stream then
    fields['stream'] = nil
    local flat = {}
    for k, v in pairs(fields) do
      table.insert(flat, k)
      table.insert(flat, v)
    end
    redis.call('XADD', stream, '*', unpack(flat))
  else
    table.insert(legacy, member)
  end
  redis.call('ZREM', KEYS[1], member)
end
return {#due - #legacy, legacy}
"""


def backoff(attempt: int) -> float:
    return float(min(2.0 * 2 ** (attempt - 1), 300.0))


class DeliveryRetries:
    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis = redis
        self._pop = redis.register_script(_POP)

    async def schedule(self, fields: Mapping[str, str], attempt: int, stream: str, now: float | None = None
                       ) -> float:
        """`stream`: the conversation's partition stream, where the retry is queued again when due."""
        due = (now or time.time()) + backoff(attempt)
        member = json.dumps({**fields, "attempt": str(attempt), "stream": stream}, sort_keys=True)
        await self.redis.zadd(RETRY_KEY, {member: due})
        return due

    async def requeue_due(self, requeue: Callable[[dict[str, str]], Awaitable[None]], now: float | None = None,
                          limit: int = 100) -> int:
        """Queue what is due again; returns how many. `requeue` handles members from before streams were
        recorded with them."""
        queued, legacy = await self._pop(keys=[RETRY_KEY], args=[now or time.time(), limit])
        for raw in legacy:
            await requeue(json.loads(raw))
        return int(queued) + len(legacy)

    async def run(self, requeue: Callable[[dict[str, str]], Awaitable[None]], stop: asyncio.Event,
                  interval: float = 0.5) -> None:
        while not stop.is_set():
            try:
                if count := await self.requeue_due(requeue):
                    log.info("reply_retries_requeued", entries=count)
            except Exception as exc:
                log.warning("reply_retry_failed", error=repr(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=interval)
