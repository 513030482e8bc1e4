"""The retry budget of a failing stream entry must be its own.

Entry ids are only unique within one stream, and every partition is its own stream: two partitions that
receive a message in the same millisecond both get `<ms>-0`. Attempts used to be counted by the bare
entry id, so failures of unrelated entries added up and an entry was dead-lettered early; they are now
counted per partition and entry.
"""

from __future__ import annotations

import redis.asyncio as aioredis

from gateway import keys
from gateway.worker import DEAD_LETTER, MAX_ATTEMPTS, Worker


async def test_same_entry_id_in_two_partitions_has_separate_budgets(redis: aioredis.Redis) -> None:
    same_id = "1700000000000-0"
    for p in (0, 1):
        await redis.xadd(keys.inbound_stream(p), {"conv": f"conv-{p}", "mid": "m"}, id=same_id)
    worker = Worker(redis, pipeline=None, partitions=2, lease_ms=1500, reclaim_idle_ms=500)  # type: ignore[arg-type]
    failure = RuntimeError("customer channel down")
    for _ in range(2):  # partition 0's entry fails twice...
        await worker._failed(0, same_id, {"conv": "conv-0"}, failure)
    for _ in range(MAX_ATTEMPTS - 2):  # ...and partition 1's, a different message, fails three times
        await worker._failed(1, same_id, {"conv": "conv-1"}, failure)
    dead = await redis.xrange(DEAD_LETTER)
    assert dead == [], f"dead-lettered after {MAX_ATTEMPTS - 2} own attempts: {dead}"
