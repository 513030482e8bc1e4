"""A customer message's first read: everything handling it may need, in one round trip of its own or riding on
the final write of the message before it (the read-ahead).

While a backlog is worked off, the worker holds a partition's next entry in hand (`Ack.then`), and its read is
queued inside the current entry's commit `MULTI`, after that entry's writes: one round trip fewer per message,
and a next message of the same conversation sees what the one before it wrote (a follow-up finds the card).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline as RedisPipeline

from gateway import keys
from gateway.agents import stage_agent_loads
from gateway.identity import Identity
from gateway.redis_conn import as_str, execute
from gateway.store import ConversationStore, Snapshot
from gateway.streams import Ack


@dataclass(frozen=True, slots=True)
class Prefetched:
    conv_id: str
    snapshot: Snapshot
    person: str | None
    history_ids: list[str]
    agent_loads: list[tuple[str, int]]
    held_in: str | None = None
    """The conversation holding replies for this customer (`gateway.reengage`), read here so that other messages
    pay no round trip."""


def stage(
    store: ConversationStore, pipe: RedisPipeline, conv_id: str, person: str | None, customer: str
) -> Callable[[list[Any]], Prefetched]:
    """The reads queued on `pipe` (its own, or the previous entry's final write); the returned function reads
    them from the results: the conversation with its transcript and effect log, and for routing the person's
    earlier conversations, the agents' loads and the held-replies pointer."""
    snapshot = store.stage_snapshot(pipe, conv_id)
    history = Identity.stage_history_ids(pipe, person)
    loads = stage_agent_loads(pipe)
    held_at = len(pipe)
    pipe.get(keys.held_for(customer))

    def found(results: list[Any]) -> Prefetched:
        held = as_str(results[held_at]) if results[held_at] else None
        return Prefetched(conv_id, snapshot(results), person, history(results), loads(results), held)

    return found


async def read(
    redis: aioredis.Redis, store: ConversationStore, conv_id: str, person: str | None, customer: str
) -> Prefetched:
    """The read in a round trip of its own."""
    async with redis.pipeline(transaction=False) as pipe:
        found = stage(store, pipe, conv_id, person, customer)
        results = await execute(pipe)
    return found(results)


def given(ack: Ack | None, conv_id: str) -> Prefetched | None:
    """What the entry before this one read for it (parsed now: bad data fails this entry, as its own read would)."""
    ahead = ack.read_before() if ack is not None and ack.read_before is not None else None
    return ahead if isinstance(ahead, Prefetched) and ahead.conv_id == conv_id else None


def _readable(fields: Mapping[str, str] | None) -> bool:
    """A customer message with what its read needs; any other entry reads (or not) for itself."""
    return fields is not None and fields.get("kind", "inbound") == "inbound" and {"conv", "customer"} <= fields.keys()


async def read_firsts(redis: aioredis.Redis, store: ConversationStore, entries: Sequence[Mapping[str, str]]
                      ) -> list[Callable[[], Prefetched] | None]:
    """The first read of several partitions' first entries in one round trip (`Ack.read_before` of each).

    Customers arriving one by one leave a partition one entry per read, so the read-ahead rarely has a next
    entry to ride on: each message paid its own read round trip. The worker's read hands it entries of several
    partitions at once, and their reads go out together. A read that fails is dropped: that entry reads for itself
    and meets the error as its own."""
    wanted = [i for i, fields in enumerate(entries) if _readable(fields)]
    out: list[Callable[[], Prefetched] | None] = [None] * len(entries)
    if len(wanted) < 2:  # one read is no better here than where the handler makes it
        return out
    async with redis.pipeline(transaction=False) as pipe:
        staged = []
        for i in wanted:
            fields, start = entries[i], len(pipe)
            found = stage(store, pipe, fields["conv"], fields.get("person"), fields["customer"])
            staged.append((i, start, len(pipe), found))
        results = await execute(pipe, raise_on_error=False)
    for i, start, end, found in staged:
        out[i] = _unless_failed(found, results, start, end)
    return out


def _unless_failed(found: Callable[[list[Any]], Prefetched], results: list[Any], start: int, end: int | None = None
                   ) -> Callable[[], Prefetched] | None:
    """The read's findings, or None when any of its commands failed (a key of the wrong type): dropped, so the entry
    reads for itself and meets the error as its own."""
    return None if any(isinstance(r, Exception) for r in results[start:end]) else partial(found, results)


def stage_read_ahead(store: ConversationStore, pipe: RedisPipeline, ack: Ack | None) -> Callable[[list[Any]], None]:
    """The partition's next customer message's read queued at the end of this entry's final write. The batch loop
    writes nothing between this write and the next entry's start; other writers (an agent's click, the SLA and bot
    follow-up tasks) may, as they may between any read and its use. A read that fails (a key of the wrong type) is
    dropped, not raised: the next entry reads again and meets it as its own failure; so does an entry lacking
    fields, for which nothing is read ahead."""
    then = ack.then if ack is not None else None
    if ack is None or then is None or not _readable(then):
        return lambda results: None
    start = len(pipe)
    found = stage(store, pipe, then["conv"], then.get("person"), then["customer"])

    def keep(results: list[Any]) -> None:
        ack.read_ahead = _unless_failed(found, results, start)

    return keep
