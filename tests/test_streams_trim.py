"""Partition streams keep only what someone still needs: Redis must not grow with every message ever
received, and an entry holds the customer's key and profile, which an erasure must not leave behind."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis

from gateway import keys
from gateway.domain import ChannelKind, InboundMessage
from gateway.store import ConversationStore
from gateway.streams import ensure_groups, trim_handled
from tests.harness import Gateway, cards, eventually


async def test_trim_keeps_pending_and_undelivered_entries_only(redis: aioredis.Redis) -> None:
    await ensure_groups(redis, 1)
    store = ConversationStore(redis, partitions=1)
    for i in range(5):
        await store.ingest(InboundMessage(channel=ChannelKind.API, customer_id=f"t{i}", message_id="m1", text="hi"))
    stream = keys.inbound_stream(0)
    read: Any = await redis.xreadgroup(keys.INBOUND_GROUP, "w1", {stream: ">"}, count=3)
    ids = [entry_id for entry_id, _ in read[0][1]]
    await redis.xack(stream, keys.INBOUND_GROUP, ids[0], ids[2])  # the second is still being worked on
    assert await trim_handled(redis, 0) == 1  # only the first: the second is pending, 4 and 5 undelivered
    rows: Any = await redis.xrange(stream)
    left = [entry_id for entry_id, _ in rows]
    assert left[0] == ids[1] and len(left) == 4
    await redis.xack(stream, keys.INBOUND_GROUP, ids[1])
    assert await trim_handled(redis, 0) == 2  # up to what was delivered
    rest: Any = await redis.xreadgroup(keys.INBOUND_GROUP, "w1", {stream: ">"}, count=10)
    assert len(rest[0][1]) == 2  # the undelivered ones are still there to read


async def test_the_worker_trims_what_it_has_handled(gateway: Gateway, redis: aioredis.Redis) -> None:
    for i in range(3):
        await gateway.post_message({"customer_id": f"trim-{i}", "message_id": "m1", "text": "my invoice is wrong"})
    await eventually(lambda: len(cards(gateway.slack, "support-billing")) == 3)
    worker = gateway.worker
    assert worker is not None

    async def trimmed() -> bool:
        await worker._trim()  # what its heartbeat does every 30 s
        lengths = [int(await redis.xlen(keys.inbound_stream(p))) for p in range(gateway.settings.partitions)]
        return sum(lengths) == 0

    assert await eventually(trimmed)
