"""A partition's next message is read on the final write of the one before it.

While a backlog is worked off, the worker holds the partition's next entry in hand; its first read (conversation,
transcript, effects, history, loads) rides on the previous entry's MULTI instead of costing a round trip of its own.
Read after the EXEC'd writes, a next message of the same conversation sees them (a follow-up finds the card just
posted); a read that fails is dropped and the next entry reads for itself.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from gateway import keys
from gateway.redis_conn import as_str, stream_rows
from gateway.worker import ATTEMPTS
from tests.harness import cards, eventually, make_settings, post_on_another_partition, start_gateway

TEXT = "I was charged twice on my invoice"


async def monitor(redis_url: str, seen: list[dict[str, Any]], ready: asyncio.Event) -> None:
    """Every command Redis runs, in order, with the client that sent it (Redis's own MONITOR)."""
    client = aioredis.from_url(redis_url, decode_responses=True)
    try:
        async with client.monitor() as feed:
            await client.ping()
            while True:
                command = await feed.next_command()
                ready.set()
                seen.append(command)
    finally:
        await client.aclose()


def first_read_in_multi(seen: list[dict[str, Any]], conversation: str) -> list[bool]:
    """For each HGETALL of `conversation`, whether its client had a MULTI open (a read riding on a final write)."""
    open_multi: dict[str, bool] = {}
    found = []
    for c in seen:
        words = c["command"].split()
        name, who = words[0].upper(), c.get("client_address", "") + str(c.get("client_port", ""))
        if name in ("MULTI", "EXEC", "DISCARD"):
            open_multi[who] = name == "MULTI"
        elif name == "HGETALL" and words[1] == keys.conversation(conversation):
            found.append(open_multi.get(who, False))
    return found


async def test_a_backlog_reads_each_next_message_on_the_write_before_it(redis_url: str, tmp_path: Path) -> None:
    gw = await start_gateway(make_settings(redis_url, tmp_path, automation="off"), with_worker=False)
    seen: list[dict[str, Any]] = []
    ready = asyncio.Event()
    watcher = asyncio.create_task(monitor(redis_url, seen, ready))
    try:
        statuses = []
        for mid, text in (("m1", TEXT), ("m2", "it was on the 3rd <!channel>"), ("m3", "order 1234")):
            status, body = await gw.post_message({"customer_id": "ahead-a", "message_id": mid, "text": text})
            statuses.append(status)
        assert statuses == [202, 202, 202]
        a = body["conversation_id"]
        b = await post_on_another_partition(gw, a, TEXT, "ahead-b", same=True)  # queued right behind a's three
        await asyncio.wait_for(ready.wait(), 5)
        gw.start_worker()

        def card_of(conv: str) -> list[dict[str, Any]]:
            return [c for c in cards(gw.slack, "support-billing")
                    if c["metadata"]["event_payload"]["conversation_id"] == conv]

        (card_a,) = await eventually(lambda: card_of(a))
        await eventually(lambda: card_of(b))

        def thread() -> list[str]:
            return [m["text"] for m in gw.slack.replies(gw.slack.channel_id("support-billing"), card_a["ts"])[1:]]

        # a's follow-ups, read ahead on the write that posted its card, find that card: threaded under it, in order
        replies = await eventually(lambda: (t := thread()) and len(t) >= 2 and t)
        assert "it was on the 3rd" in replies[0] and "&lt;!channel&gt;" in replies[0]
        assert "order 1234" in replies[1]
        assert [c["ts"] for c in card_of(a)] == [card_a["ts"]]  # one card (its text may have been updated since)
        # the first message of the partition read for itself; every one after it rode on the write before it
        assert first_read_in_multi(seen, a)[:3] == [False, True, True]
        assert first_read_in_multi(seen, b)[0] is True
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        await gw.close()


async def test_a_read_ahead_that_fails_is_dropped_and_the_next_message_reads_for_itself(
    redis: aioredis.Redis, redis_url: str, tmp_path: Path
) -> None:
    gw = await start_gateway(make_settings(redis_url, tmp_path, automation="off"), with_worker=False)
    try:
        status, body = await gw.post_message({"customer_id": "fails-a", "message_id": "m1", "text": TEXT})
        assert status == 202
        a = body["conversation_id"]
        b = await post_on_another_partition(gw, a, TEXT, "fails-b", same=True)
        await redis.set(keys.effects(b), "not a hash")  # b's reads answer WRONGTYPE, on a's write and on its own
        gw.start_worker(backoff=(0.2, 0.5))

        def carded(conv: str) -> int:
            return sum(1 for c in cards(gw.slack, "support-billing")
                       if c["metadata"]["event_payload"]["conversation_id"] == conv)

        await eventually(lambda: carded(a))
        partition = int(as_str(await redis.get(keys.conversation_partition(b))))
        entry_b = next(i for i, f in stream_rows(await redis.xrange(keys.inbound_stream(partition))) if f["conv"] == b)
        failing = await eventually(lambda: redis.hkeys(ATTEMPTS))  # b failed on its own read, as its own failure
        assert [as_str(f) for f in failing] == [f"{partition}:{entry_b}"]
        conv_a = await gw.rt.store.load(a)
        assert conv_a is not None and conv_a.card_ts  # a's write went through, its read ahead for b did not count
        assert carded(b) == 0
        await redis.delete(keys.effects(b))
        await eventually(lambda: carded(b))
        await eventually(lambda: gw.rt.store.load(b))
        assert carded(a) == 1 and carded(b) == 1
    finally:
        await gw.close()


async def test_an_entry_lacking_fields_behind_a_good_one_fails_alone(
    redis: aioredis.Redis, redis_url: str, tmp_path: Path
) -> None:
    """A hand-made or foreign entry without `customer`: the read ahead is skipped, so the good message before it
    commits once, and only the bad one is counted and parked (reading ahead for it, the good one's commit raised
    and was charged ten times for the entry behind it)."""
    gw = await start_gateway(make_settings(redis_url, tmp_path, automation="off"), with_worker=False)
    try:
        status, body = await gw.post_message({"customer_id": "lacking-a", "message_id": "m1", "text": TEXT})
        assert status == 202
        a = body["conversation_id"]
        partition = int(as_str(await redis.get(keys.conversation_partition(a))))
        bad = as_str(await redis.xadd(keys.inbound_stream(partition), {"conv": "conv_handmade", "mid": "m1"}))
        gw.start_worker(backoff=(0.05, 0.1))
        await eventually(lambda: redis.xlen(keys.DEAD), timeout=15)
        [(_, parked)] = stream_rows(await redis.xrange(keys.DEAD))
        assert parked["entry"] == bad and parked["conv"] == "conv_handmade" and "customer" in parked["error"]
        conv_a = await gw.rt.store.load(a)
        assert conv_a is not None and conv_a.card_ts and conv_a.version == 1  # committed once, on its first try
        assert len([c for c in cards(gw.slack, "support-billing")
                    if c["metadata"]["event_payload"]["conversation_id"] == a]) == 1
        assert await redis.hkeys(ATTEMPTS) == []
    finally:
        await gw.close()
