"""Scale-out moves partitions within a poll, not a heartbeat.

Found by bench/e2e: with the default 15 s lease a worker that joined waited up to 5 s (a third of a
lease) before the worker holding every partition gave any up, so a fresh deployment ran on one
worker for its first seconds. Both directions are checked here with that default lease.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import redis.asyncio as aioredis

from gateway.redis_conn import as_str
from gateway.worker import Worker
from tests.harness import eventually, make_settings, start_gateway

LEASE_MS = 15_000  # the default: heartbeats 5 s apart


async def test_partitions_rebalance_within_a_second_when_a_worker_joins_and_leaves(
    redis: aioredis.Redis, redis_url: str, tmp_path: Path
) -> None:
    settings = make_settings(redis_url, tmp_path, automation="off").model_copy(
        update={"partitions": 8, "lease_ms": LEASE_MS})
    gw = await start_gateway(settings, with_worker=False)
    first = Worker(gw.rt.redis, gw.rt.pipeline, 8, LEASE_MS, 500, name="first")
    second = Worker(gw.rt.redis, gw.rt.pipeline, 8, LEASE_MS, 500, name="second")
    stop_first, stop_second = asyncio.Event(), asyncio.Event()
    tasks = [asyncio.create_task(first.run(stop_first))]
    try:
        await eventually(lambda: len(first.leases.owned) == 8, timeout=5)
        joined = time.monotonic()
        tasks.append(asyncio.create_task(second.run(stop_second)))
        await eventually(lambda: len(first.leases.owned) == 4 and len(second.leases.owned) == 4, timeout=5)
        assert time.monotonic() - joined < 1.5, "partitions waited for a heartbeat"
        owners = {p: as_str(await redis.get(f"sb:lease:{p}") or b"") for p in range(8)}
        assert sorted(owners.values()) == ["first"] * 4 + ["second"] * 4

        left = time.monotonic()
        stop_second.set()
        await tasks.pop()
        await eventually(lambda: len(first.leases.owned) == 8, timeout=5)
        assert time.monotonic() - left < 1.5, "released partitions waited for a heartbeat"
    finally:
        stop_first.set()
        stop_second.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        await gw.close()
