"""A Redis that comes back empty (restarted without persistence, or flushed) under a running gateway.

The worker used to exit on the first read after it (NOGROUP, or UNBLOCKED for a read blocked during a
FLUSHALL), taking the process with it, and every message failed for want of a policy. Now the groups are
recreated, the leases taken again and the policy stored again: new messages are routed within seconds."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from structlog.testing import capture_logs

from gateway import keys
from tests.conftest import free_port, start_redis
from tests.harness import Gateway, cards, eventually, make_settings, start_gateway

BILLING = "support-billing"


async def _message(gw: Gateway, customer: str) -> str:
    status, body = await gw.post_message(
        {"customer_id": customer, "message_id": f"{customer}-m", "text": "my invoice is wrong"})
    assert status == 202
    return str(body["conversation_id"])


def _carded(gw: Gateway, conversation_id: str) -> bool:
    return any(c["metadata"]["event_payload"]["conversation_id"] == conversation_id for c in cards(gw.slack, BILLING))


async def _routed_again(gw: Gateway, redis: aioredis.Redis) -> None:
    conv_id = await _message(gw, "after")
    await eventually(lambda: _carded(gw, conv_id), timeout=8)
    assert gw.worker_task is not None and not gw.worker_task.done(), "the worker stopped"
    # Routed with the policy held in memory (read at most a second ago); stored again at the next refresh.
    await eventually(lambda: redis.exists(keys.POLICY), timeout=5)

    async def ready() -> bool:
        async with gw.session.get(f"{gw.url}/readyz") as resp:
            return resp.status == 200

    await eventually(ready, timeout=5)


async def test_flushall_under_a_running_gateway(gateway: Gateway, redis: aioredis.Redis) -> None:
    gw = gateway
    first = await _message(gw, "before")
    await eventually(lambda: _carded(gw, first))
    await asyncio.sleep(0.5)  # the worker is now blocked in XREADGROUP: the flush answers it with UNBLOCKED
    with capture_logs() as logs:
        await redis.flushdb()  # the test database only (FLUSHALL takes the same path)
        await _routed_again(gw, redis)
    lost = [e for e in logs if e["event"] == "redis_state_lost"]
    assert len(lost) == 1 and lost[0]["log_level"] == "error"
    assert "appendonly yes" in lost[0]["detail"]
    # The recorded partition count went with the flush: recorded again, so the next process is still checked.
    assert await redis.get("sb:partitions") == str(gw.settings.partitions).encode()


async def test_redis_restarted_without_persistence(tmp_path: Path) -> None:
    port = free_port()
    proc = start_redis(port, tmp_path, "--appendonly", "no", "--save", "")
    url = f"redis://127.0.0.1:{port}/0"
    gw = await start_gateway(make_settings(url, tmp_path))
    client: Any = aioredis.from_url(url)
    try:
        first = await _message(gw, "before")
        await eventually(lambda: _carded(gw, first))
        await client.shutdown(nosave=True)
        proc.wait(timeout=10)
        await client.aclose()
        proc = start_redis(port, tmp_path, "--appendonly", "no", "--save", "")
        client = aioredis.from_url(url)

        async def accepted() -> bool:  # the API answers 503 until its connections are back
            status, _ = await gw.post_message({"customer_id": "probe", "message_id": "p", "text": "hello?"})
            return status == 202

        await eventually(accepted, timeout=15, interval=0.3)
        await _routed_again(gw, client)
    finally:
        await gw.close()
        await client.aclose()
        proc.terminate()
        proc.wait(timeout=10)
