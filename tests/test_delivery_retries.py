"""Reply retries come back onto their conversation's stream in the same step that takes them off the schedule."""

from __future__ import annotations

import json
from typing import Any

import redis.asyncio as aioredis

from gateway import keys
from gateway.retries import RETRY_KEY, DeliveryRetries


async def test_due_retries_are_queued_on_their_stream_atomically(redis: aioredis.Redis) -> None:
    retries = DeliveryRetries(redis)
    stream = keys.inbound_stream(3)
    for i in range(3):
        fields = {"conv": f"conv_{i}", "customer": f"sms:+4917{i}", "kind": "agent_reply", "text": f"reply {i}",
                  "ref": f"r{i}"}
        await retries.schedule(fields, attempt=i + 1, stream=stream, now=1_000.0)
    later = {"conv": "conv_9", "customer": "sms:+49179", "kind": "agent_reply", "text": "later", "ref": "r9"}
    await retries.schedule(later, attempt=5, stream=stream, now=10_000.0)
    # A member scheduled before streams were recorded with it goes back through the caller.
    await redis.zadd(RETRY_KEY, {json.dumps({"conv": "conv_old", "attempt": "2"}): 0})
    legacy: list[dict[str, str]] = []

    async def requeue(fields: dict[str, str]) -> None:
        legacy.append(fields)

    assert await retries.requeue_due(requeue, now=2_000.0) == 4
    entries: Any = await redis.xrange(stream)
    queued = [{k.decode(): v.decode() for k, v in fields.items()} for _, fields in entries]
    assert sorted(q["ref"] for q in queued) == ["r0", "r1", "r2"]
    assert all("stream" not in q and q["kind"] == "agent_reply" and q["attempt"] for q in queued)
    assert legacy == [{"conv": "conv_old", "attempt": "2"}]
    assert await redis.zcard(RETRY_KEY) == 1  # only the one not yet due
