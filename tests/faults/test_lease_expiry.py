"""A batch slower than the partition lease must not be worked twice.

Found as a bug by this suite: leases were renewed only between batches, so a slow batch (Slack's
per-channel pacing, a stalled API) lost its lease and a second worker XAUTOCLAIMed and posted the same
entries. Leases are now renewed by their own task and a worker stops a batch the moment it no longer
owns the partition (fencing); this test keeps it that way.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import redis.asyncio as aioredis

from gateway.worker import Worker
from integrations.slack.pacing import ChannelPacer
from tests.faults import ledger
from tests.harness import cards, eventually, make_settings, start_gateway


async def test_slow_batch_beyond_lease_gives_one_card_per_conversation(
    redis: aioredis.Redis, redis_url: str, tmp_path: Path
) -> None:
    settings = make_settings(redis_url, tmp_path, automation="off").model_copy(
        update={"partitions": 1, "lease_ms": 500, "reclaim_idle_ms": 200})
    gw = await start_gateway(settings, with_worker=False)
    gw.rt.desk.pacer = ChannelPacer(rate=4.0, burst=1)  # Slack-like pacing, just faster: 8 cards ≈ 2 s
    stop = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []
    try:
        for i in range(8):
            status, _ = await gw.post_message(
                {"customer_id": f"lease-{i}", "message_id": f"m-{i}", "text": "I was charged twice on my invoice"})
            assert status == 202
        first = Worker(gw.rt.redis, gw.rt.pipeline, 1, 500, 200, name="first")
        tasks.append(asyncio.create_task(first.run(stop)))
        await eventually(lambda: cards(gw.slack, "support-billing"), timeout=10)
        second = Worker(gw.rt.redis, gw.rt.pipeline, 1, 500, 200, name="second")
        tasks.append(asyncio.create_task(second.run(stop)))

        async def drained() -> bool:
            info = await redis.xpending("sb:in:0", "workers")
            return int(info["pending"]) == 0 and len(cards(gw.slack, "support-billing")) >= 8

        await eventually(drained, timeout=20)
        await asyncio.sleep(0.5)
        posted = [c["metadata"]["event_payload"]["conversation_id"] for c in cards(gw.slack, "support-billing")]
        dup = len(posted) - len(set(posted))
        ledger.record("batch outlives its lease", 8, 8 - len(set(posted)), dup, "lease renewed apart from batches")
        assert dup == 0, f"{dup} duplicate cards"
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        await gw.close()
