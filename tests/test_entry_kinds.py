"""Work a newer version queued, met by this version's worker during a rolling deploy."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from structlog.testing import capture_logs

from gateway import keys
from tests.harness import Gateway, eventually, make_settings, start_gateway
from tests.test_transfer_order import _drained


async def test_an_entry_of_an_unknown_kind_is_parked_not_dropped(gateway: Gateway, redis: aioredis.Redis) -> None:
    """It was acknowledged and dropped (an erasure's sweep queued by a newer web process, for instance);
    parked, `dead replay` hands it to a worker that knows it once the deploy is done."""
    await redis.xadd(keys.inbound_stream(0), {"kind": "from-the-future", "conv": "conv_x", "detail": "kept"})
    await eventually(lambda: _drained(gateway, redis))
    rows: Any = await eventually(lambda: redis.xrange(keys.DEAD))
    (parked,) = [f for _, f in rows]
    assert parked[b"kind"] == b"from-the-future" and parked[b"detail"] == b"kept"
    assert b"unknown entry kind 'from-the-future'" in parked[b"error"]


async def test_an_entry_that_fails_validation_is_parked_without_quoting_its_text(
    redis: aioredis.Redis, redis_url: str, tmp_path: Path
) -> None:
    """The worker logged and parked `repr(exc)`: a validation error's text quotes its input, here the
    customer's words (pydantic's `input_value=…`)."""
    gw = await start_gateway(make_settings(redis_url, tmp_path), with_worker=False)
    try:
        await redis.rpush(keys.transcript("conv_broken"), "my password is hunter2")  # not a message
        await redis.xadd(keys.inbound_stream(0), {"conv": "conv_broken", "mid": "m1", "customer": "api:x"})
        with capture_logs() as logs:
            gw.start_worker(backoff=(0.001, 0.002))
            rows: Any = await eventually(lambda: redis.xrange(keys.DEAD), timeout=20)
            await gw.stop_worker()
        (parked,) = [f for _, f in rows]
        assert parked[b"error"].startswith(b"ValidationError: ") and b"hunter2" not in parked[b"error"]
        assert "hunter2" not in json.dumps(logs, default=str)
        assert any(e["event"] == "pipeline_failed" for e in logs)
    finally:
        await gw.close()
