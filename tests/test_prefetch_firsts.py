"""Several partitions' first entries are read in one round trip (`prefetch.read_firsts`).

Customers writing one by one leave each partition one entry per worker read, so the read-ahead (which rides on the
commit of the entry before) rarely applies; the worker's read hands it entries of several partitions at once, and
their first reads go out together. What each entry gets must be what its own read would have given it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from gateway import keys, prefetch
from gateway.domain import ChannelKind, InboundMessage
from gateway.redis_conn import round_trip_client, stream_rows
from gateway.store import ConversationStore


@pytest.fixture
async def store(redis_url: str, redis: aioredis.Redis) -> AsyncIterator[ConversationStore]:
    """On the worker's lean pool; `redis` cleans the database around the test."""
    client = round_trip_client(redis_url)
    yield ConversationStore(client, partitions=8)
    await client.aclose()


async def queued(store: ConversationStore, customer: str, text: str) -> dict[str, str]:
    """A stored message's stream entry, as the worker reads it."""
    accepted = await store.ingest(InboundMessage(channel=ChannelKind.API, customer_id=customer,
                                                 message_id=f"{customer}-1", text=text))
    for p in range(store.partitions):
        for _, entry in stream_rows(await store.redis.xrange(keys.inbound_stream(p))):
            if entry["conv"] == accepted.conversation_id:
                return entry
    raise AssertionError("entry not queued")


async def test_first_reads_go_out_together_and_find_what_their_own_reads_find(store: ConversationStore) -> None:
    client = store.redis
    taken = 0
    get_connection = client.connection_pool.get_connection

    async def counted(*args: Any, **kwargs: Any) -> Any:
        nonlocal taken
        taken += 1
        return await get_connection(*args, **kwargs)

    entries = [await queued(store, f"firsts-{i}", f"my invoice {i} is wrong") for i in range(3)]
    entries.append({"kind": "note", "conv": entries[0]["conv"], "customer": entries[0]["customer"]})
    entries.append({"customer": "api:no-conversation"})
    client.connection_pool.get_connection = counted  # type: ignore[method-assign]
    firsts = await prefetch.read_firsts(client, store, entries)
    assert taken == 1  # one round trip for the three customer messages
    assert firsts[3] is None and firsts[4] is None  # a note, and an entry lacking fields, read for themselves
    for fields, first in zip(entries[:3], firsts[:3], strict=True):
        assert first is not None
        own = await prefetch.read(client, store, fields["conv"], fields.get("person"), fields["customer"])
        assert first() == own


async def test_a_read_that_fails_is_dropped_for_its_entry_only(store: ConversationStore) -> None:
    good, bad = [await queued(store, f"drop-{i}", "the app crashes") for i in range(2)]
    await store.redis.set(keys.effects(bad["conv"]), "not a hash")  # its read answers WRONGTYPE
    first_good, first_bad = await prefetch.read_firsts(store.redis, store, [good, bad])
    assert first_bad is None  # the entry reads for itself, and meets the error as its own
    assert first_good is not None and first_good().conv_id == good["conv"]


async def test_a_single_entry_reads_for_itself(store: ConversationStore) -> None:
    only = await queued(store, "alone", "where is my parcel")
    assert await prefetch.read_firsts(store.redis, store, [only]) == [None]
