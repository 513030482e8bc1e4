"""A heartbeat that fails for good stops its worker, having given up its partitions first.

Found in CI: the heartbeat met an error it did not expect (a NOSCRIPT from a Redis restarted between redis-py's
script load and its call) and its task died unnoticed until the stop. The read loop went on as the owner of
partitions whose leases nobody renewed: once they lapsed another worker took them over, and both would have run
the same entries. Now the heartbeat clears the partitions it held before its error reaches the loop, which raises
it (the process exits and is restarted), and NOSCRIPT is an outage the worker waits out.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from redis.exceptions import NoScriptError, ResponseError

from gateway import keys
from gateway.worker import REDIS_AWAY, Worker
from tests.harness import cards, eventually, make_settings, start_gateway


async def test_a_heartbeat_that_fails_for_good_gives_up_its_partitions_and_stops_the_worker(
    redis: aioredis.Redis, redis_url: str, tmp_path: Path
) -> None:
    gw = await start_gateway(make_settings(redis_url, tmp_path, automation="off"), with_worker=False)
    stop = asyncio.Event()
    worker = Worker(gw.rt.redis, gw.rt.pipeline, gw.settings.partitions, gw.settings.lease_ms, 500)
    task = asyncio.create_task(worker.run(stop))
    try:
        status, _ = await gw.post_message({"customer_id": "beat-a", "message_id": "m1", "text": "charged twice"})
        assert status == 202
        await eventually(lambda: cards(gw.slack, "support-billing"))
        assert worker.leases.owned == set(range(gw.settings.partitions))
        # The live-worker set turned into something else: every heartbeat from now on answers WRONGTYPE.
        await redis.delete(keys.WORKERS)
        await redis.set(keys.WORKERS, "not a sorted set")
        await asyncio.wait({task}, timeout=5)  # not wait_for: its cancel would end a worker that reads on
        assert task.done(), "the worker read on without a heartbeat"
        with pytest.raises(ResponseError, match="WRONGTYPE"):
            task.result()
        assert worker.leases.owned == set()  # nothing of this worker's runs on leases it no longer renews
    finally:
        stop.set()
        if not task.done():
            await task
        await gw.close()


def test_noscript_is_an_outage_the_worker_waits_out() -> None:
    """Waited out like a dropped connection (the next call loads the script again), not charged to the entry in
    hand nor fatal to the heartbeat."""
    assert isinstance(NoScriptError("No matching script. Please use EVAL."), REDIS_AWAY)
