"""Redis going away: the API answers 503 (nothing acknowledged), then recovers by itself."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.conftest import free_port, start_redis
from tests.harness import eventually, make_settings, start_gateway


async def test_redis_outage_gives_503_then_recovers(tmp_path: Path) -> None:
    port = free_port()
    proc = start_redis(port, tmp_path, "--appendonly", "yes", "--save", "")
    gw = await start_gateway(make_settings(f"redis://127.0.0.1:{port}/0", tmp_path), with_worker=True)
    try:
        msg = {"customer_id": "c-1", "message_id": "m-1", "text": "my invoice is wrong"}
        status, first = await gw.post_message(msg)
        assert status == 202
        proc.terminate()
        proc.wait(timeout=10)
        status, body = await gw.post_message({**msg, "message_id": "m-2"})
        assert status == 503 and body["error"] == "unavailable"
        async with gw.session.get(f"{gw.url}/readyz") as resp:
            assert resp.status == 503
        proc = start_redis(port, tmp_path, "--appendonly", "yes", "--save", "")

        async def accepted() -> bool:
            return (await gw.post_message({**msg, "message_id": "m-2"}))[0] == 202

        await eventually(accepted, timeout=15, interval=0.3)

        async def both_in_transcript() -> bool:
            conv = await gw.rt.store.load(first["conversation_id"])
            return conv is not None and [m.external_id for m in conv.messages] == ["m-1", "m-2"]

        # What was acknowledged before the outage survived it (AOF), and the retry joined it.
        await eventually(both_in_transcript, timeout=15)
        await eventually(lambda: gw.slack.messages("support-billing"), timeout=15)
    finally:
        await gw.close()
        proc.terminate()
        proc.wait(timeout=10)



async def test_a_hung_redis_is_a_503_within_the_round_trip_deadline(tmp_path: Path) -> None:
    """A Redis that holds the connection and answers nothing (paused, swapping, a stalled failover): the API's ingest
    gives up after one 5 s deadline (`ROUND_TRIP_S`) with a 503, and accepts again once Redis answers."""
    port = free_port()
    proc = start_redis(port, tmp_path, "--appendonly", "yes", "--save", "")
    gw = await start_gateway(make_settings(f"redis://127.0.0.1:{port}/0", tmp_path), with_worker=False)
    try:
        msg = {"customer_id": "c-1", "message_id": "m-1", "text": "my invoice is wrong"}
        assert (await gw.post_message(msg))[0] == 202
        await gw.rt.redis.execute_command("CLIENT", "PAUSE", "7000", "ALL")
        started = asyncio.get_running_loop().time()
        status, body = await gw.post_message({**msg, "message_id": "m-2"})
        waited = asyncio.get_running_loop().time() - started
        assert status == 503 and body["error"] == "unavailable"
        assert 4.5 < waited < 6.5, waited
        await asyncio.sleep(7.2 - waited)
        status, retried = await gw.post_message({**msg, "message_id": "m-2"})
        assert (status, retried["duplicate"]) == (202, False)  # the 503 stored nothing; the retry did
        status, again = await gw.post_message({**msg, "message_id": "m-2"})
        assert (status, again["duplicate"]) == (202, True)
    finally:
        await gw.close()
        proc.terminate()
        proc.wait(timeout=10)


async def test_a_worker_started_while_redis_is_down_waits_for_it(tmp_path: Path) -> None:
    """Its very first call (creating the consumer groups) used to raise out of the worker and end the
    process, and with honcho every process beside it."""
    port = free_port()
    proc = start_redis(port, tmp_path, "--appendonly", "yes", "--save", "")
    gw = await start_gateway(make_settings(f"redis://127.0.0.1:{port}/0", tmp_path), with_worker=False)
    try:
        proc.terminate()
        proc.wait(timeout=10)
        gw.start_worker()
        await asyncio.sleep(1.5)
        assert gw.worker_task is not None and not gw.worker_task.done()
        proc = start_redis(port, tmp_path, "--appendonly", "yes", "--save", "")

        async def accepted() -> bool:
            msg = {"customer_id": "c-late", "message_id": "m-1", "text": "my invoice is wrong"}
            return (await gw.post_message(msg))[0] == 202

        await eventually(accepted, timeout=15, interval=0.3)
        await eventually(lambda: gw.slack.messages("support-billing"), timeout=20)
    finally:
        await gw.close()
        proc.terminate()
        proc.wait(timeout=10)
