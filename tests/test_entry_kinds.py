"""Work a newer version queued, met by this version's worker during a rolling deploy."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis

from gateway import keys
from tests.harness import Gateway, eventually
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
