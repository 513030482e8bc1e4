"""A partition taken over is read only once its predecessor's pending entries are claimed.

Found in review: the heartbeat counted a partition as owned as soon as its lease was taken, before the take-over
(`XAUTOCLAIM`) moved the dead worker's pending entries over, so the read loop could read the customer's newest
message (`>`) first and replay the older ones after it; and a take-over that failed left the partition read with
its old entries waiting for the idle reclaim (30 s in production). Here the take-over is held up (or fails once,
an outage) while the customer's newest message is already queued.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from pathlib import Path
from typing import Any, cast

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError

from gateway import keys
from gateway.redis_conn import as_str
from gateway.worker import Worker
from tests.harness import cards, eventually, make_settings, post_on_another_partition, start_gateway
from tests.test_transfer_order import _drained

TEXTS = ("I was charged twice on my invoice", "the second charge is from Monday", "please refund one of them")
LEASE_MS = 10_000  # the take-over is held up for seconds: the leases must outlive it


@dataclasses.dataclass
class HeldClaims:
    """The worker's real Redis; its `XAUTOCLAIM`s on one stream wait until `go` is set (the first one fails
    instead, as a dropped connection would, with `fail_first`)."""

    inner: aioredis.Redis
    stream: str
    fail_first: bool
    go: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    reached: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    calls: int = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def xautoclaim(self, name: str, *args: Any, **kwargs: Any) -> Any:
        if name == self.stream:
            self.calls += 1
            self.reached.set()
            if self.fail_first and self.calls == 1:
                raise RedisConnectionError("connection dropped (injected)")
            await self.go.wait()
        return await self.inner.xautoclaim(name, *args, **kwargs)


@pytest.mark.parametrize("fail_first", [False, True], ids=["slow-take-over", "failed-take-over"])
async def test_a_taken_over_partition_replays_its_pending_entries_before_new_ones(
    redis: aioredis.Redis, redis_url: str, tmp_path: Path, fail_first: bool
) -> None:
    settings = make_settings(redis_url, tmp_path, automation="off").model_copy(
        update={"partitions": 2, "lease_ms": LEASE_MS})
    gw = await start_gateway(settings, with_worker=False)
    stop = asyncio.Event()
    task: asyncio.Task[None] | None = None
    try:
        conv = ""
        for i, text in enumerate(TEXTS[:2]):
            status, body = await gw.post_message({"customer_id": "taken-over", "message_id": f"m{i}", "text": text})
            assert status == 202
            conv = body["conversation_id"]
        p = int(as_str(await redis.get(keys.conversation_partition(conv))) or "0")
        # A worker read the first two messages and died: they are pending under its name, its lease still runs.
        read: Any = await redis.xreadgroup(keys.INBOUND_GROUP, "dead-worker", {keys.inbound_stream(p): ">"}, count=10)
        assert len(read[0][1]) == 2
        await redis.set(keys.lease(p), "dead-worker", px=60_000)

        held = HeldClaims(redis, keys.inbound_stream(p), fail_first)
        worker = Worker(cast(aioredis.Redis, held), gw.rt.pipeline, 2, LEASE_MS, 500, name="next")
        task = asyncio.create_task(worker.run(stop))
        await eventually(lambda: worker.leases.owned == {1 - p})
        # Reading its other partition meanwhile: another customer's message there is handled (a technical card).
        await post_on_another_partition(gw, conv, "My app crashes with an error, not working!", "elsewhere")
        await eventually(lambda: cards(gw.slack, "support-technical"), timeout=10)
        status, _ = await gw.post_message({"customer_id": "taken-over", "message_id": "m2", "text": TEXTS[2]})
        assert status == 202

        await redis.delete(keys.lease(p))  # the dead worker's lease runs out
        await held.reached.wait()
        with contextlib.suppress(AssertionError):  # before: the newest message was read and carded meanwhile
            await eventually(lambda: cards(gw.slack, "support-billing"), timeout=1.5)
        read_early = p in worker.leases.owned
        held.go.set()

        await eventually(lambda: _drained(gw, redis), timeout=15)
        (card,) = cards(gw.slack, "support-billing")
        thread = [m["text"] for m in gw.slack.replies("support-billing", card["ts"])[1:]]
        assert [next(t for t in TEXTS if t in m) for m in thread] == list(TEXTS[1:])  # the card was the first's
        assert not read_early, "read before its pending entries were claimed"
        assert worker.leases.owned == {0, 1}
    finally:
        stop.set()
        if task is not None:
            await task
        await gw.close()
