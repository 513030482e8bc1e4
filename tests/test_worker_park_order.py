"""An entry parked on its first delivery leaves the rest of its read batch to be replayed first.

Found in review: the park branch returned before the partition was marked for replay, so the entries read with
the parked one stayed pending while the next read took newer ones (`>`); they came back only through the idle
reclaim (30 s in production), after the customer's later messages.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import redis.asyncio as aioredis

from gateway import keys
from gateway.worker import Worker
from tests.harness import cards, eventually, make_settings, start_gateway
from tests.test_transfer_order import _drained

TEXTS = ("I was charged twice on my invoice", "the second charge is from Monday", "please refund one of them")


async def test_the_batch_read_with_a_parked_entry_goes_before_newer_entries(
    redis: aioredis.Redis, redis_url: str, tmp_path: Path
) -> None:
    settings = make_settings(redis_url, tmp_path, automation="off").model_copy(update={"partitions": 1})
    gw = await start_gateway(settings, with_worker=False)
    stop = asyncio.Event()
    worker = Worker(gw.rt.redis, gw.rt.pipeline, 1, settings.lease_ms, 500, name="parks")
    worker.reader.count = 3  # one read: the unknown entry and the customer's first two messages; the third after
    task: asyncio.Task[None] | None = None
    try:
        # Queued by a newer version during a rolling deploy: parked at once (`ParkNow`), on its first delivery.
        await redis.xadd(keys.inbound_stream(0), {"kind": "from-the-future", "conv": "conv_future"})
        for i, text in enumerate(TEXTS):
            status, _ = await gw.post_message({"customer_id": "park-order", "message_id": f"m{i}", "text": text})
            assert status == 202
        task = asyncio.create_task(worker.run(stop))
        await eventually(lambda: _drained(gw, redis), timeout=15)
        assert await redis.xlen(keys.DEAD) == 1
        (card,) = cards(gw.slack, "support-billing")
        # The first message made the card and the others followed in its thread, in order. Before, the third was
        # read ahead of the first two: its card, then the first two in the thread.
        thread = [m["text"] for m in gw.slack.replies("support-billing", card["ts"])[1:]]
        assert [next(t for t in TEXTS if t in m) for m in thread] == list(TEXTS[1:])
    finally:
        stop.set()
        if task is not None:
            await task
        await gw.close()
