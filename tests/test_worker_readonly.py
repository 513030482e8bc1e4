"""A Redis that stops taking writes (a failover's old primary answering READONLY) is an outage the worker waits out.

Found in review: READONLY is a `ResponseError`, so the worker's read loop re-raised it and the worker process
stopped; met in a commit it counted against the entry (towards the dead-letter stream), and met again while
counting, stopped the worker all the same.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import redis.asyncio as aioredis

from gateway import keys
from tests.conftest import free_port, start_redis
from tests.harness import cards, eventually, make_settings, start_gateway


async def test_a_read_only_redis_is_waited_out_and_the_message_routed_after(tmp_path: Path) -> None:
    port = free_port()
    proc = start_redis(port, tmp_path, "--save", "", "--appendonly", "no")
    url = f"redis://127.0.0.1:{port}/0"
    admin = aioredis.from_url(url)
    gw = await start_gateway(make_settings(url, tmp_path, automation="off"), with_worker=False)
    try:
        status, _ = await gw.post_message({"customer_id": "ro-1", "message_id": "m1",
                                           "text": "I was charged twice on my invoice"})
        assert status == 202
        # The primary becomes a replica of a server that is not there: it keeps its data and refuses writes.
        await admin.execute_command("REPLICAOF", "127.0.0.1", str(free_port()))
        gw.start_worker()
        await asyncio.sleep(2.5)
        assert gw.worker_task is not None and not gw.worker_task.done()  # still waiting, not stopped
        assert not cards(gw.slack, "support-billing")
        await admin.execute_command("REPLICAOF", "NO", "ONE")
        await eventually(lambda: len(cards(gw.slack, "support-billing")) == 1, timeout=15)
        assert not await admin.xlen(keys.DEAD)  # an outage, not the entry's failure
        assert not gw.worker_task.done()
    finally:
        await gw.close()
        await admin.aclose()
        proc.terminate()
        proc.wait(timeout=10)
