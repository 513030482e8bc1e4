"""A rating given in the web chat widget, through the whole gateway: real WebSocket, real Redis, the worker and
the Slack emulator's desk.

Before: the widget's rating was kept only in `sb:csat:<conv>`. The card's thread never said "⭐ The customer
rated this conversation 1/5.", the conversation had no `csat` (so the next card's "Earlier conversations"
showed no "CSAT 1/5"), and a second or re-sent rating was answered as if it had been taken.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis

from gateway import csat, keys, outbound
from gateway.domain import Direction, Message
from gateway.effects import Effects
from gateway.redis_conn import as_str, stream_rows
from gateway.streams import Ack
from integrations.webchat import outbox
from tests.harness import Gateway, cards, eventually, make_settings, outcomes, start_gateway, stored_card
from tests.test_desk import sender
from tests.test_desk_stale import ASK, _open_forms
from tests.test_webchat_support import recv, recv_until

RATED = "⭐ The customer rated this conversation"


@pytest.fixture
async def gw(redis: aioredis.Redis, redis_url: str, tmp_path: Path) -> AsyncIterator[Gateway]:
    g = await start_gateway(make_settings(redis_url, tmp_path))
    yield g
    await g.close()


async def _chat(gw: Gateway, text: str) -> tuple[aiohttp.ClientWebSocketResponse, str]:
    """A widget session that wrote `text`: (its socket, its conversation id)."""
    async with gw.session.post(f"{gw.url}/webchat/session", json={}, headers={"Origin": gw.url}) as resp:
        session = await resp.json()
    ws = await gw.session.ws_connect(f"{gw.url}/webchat/ws?token={session['token']}&since=0",
                                     headers={"Origin": gw.url})
    await ws.send_json({"type": "message", "client_id": "c1", "text": text})
    return ws, str(session["conversation_id"])


async def _resolved_asking(gw: Gateway, ws: aiohttp.ClientWebSocketResponse, conv_id: str, channel_name: str
                           ) -> tuple[dict[str, Any], str]:
    """Claimed by Alice and resolved with "Ask the customer for a rating? Yes"; the widget shows the prompt."""
    card, stored = await stored_card(gw, channel_name)
    assert stored == conv_id
    assert (await gw.rt.ops.claim(conv_id, "U0ALICE")).ok
    channel, slack = gw.slack.channel_id(channel_name), sender(gw)
    (form,) = await _open_forms(gw, slack, channel, card, conv_id, ("U0ALICE",))
    assert (await slack.submit_view("U0ALICE", form, ASK))[1] == ""
    await recv_until(ws, "csat_request")
    return card, channel


async def _rate(ws: aiohttp.ClientWebSocketResponse, score: int, comment: str | None = None) -> dict[str, Any]:
    """Send a rating; the ack (a `csat_rated` from the stream may come first)."""
    await ws.send_json({"type": "csat", "score": score} | ({"comment": comment} if comment else {}))
    return await recv_until(ws, "csat_ack")


def _notes(gw: Gateway, channel: str, card: dict[str, Any]) -> list[str]:
    return [m["text"] for m in gw.slack.replies(channel, card["ts"]) if m["text"].startswith(RATED)]


async def _rated_frames(redis: aioredis.Redis, conv_id: str) -> list[int]:
    return [f["score"] for _, f in await outbox.read(redis, conv_id, 0) if f["type"] == "csat_rated"]


async def test_a_widget_rating_reaches_the_thread_the_conversation_and_the_next_card_once(
    gw: Gateway, redis: aioredis.Redis
) -> None:
    ws, conv_id = await _chat(gw, "I was charged twice on my invoice")
    try:
        card, channel = await _resolved_asking(gw, ws, conv_id, "support-billing")
        ack = await _rate(ws, 1, "took too long")
        assert ack["score"] == 1
        (note,) = await eventually(lambda: _notes(gw, channel, card))
        assert note == f"{RATED} 1/5."  # the comment stays with the rating (erasable), not in Slack
        assert await redis.hget(outbox.csat_key(conv_id), "comment") == b"took too long"
        conv = await gw.rt.store.load(conv_id)
        assert conv is not None and conv.csat == 1
        assert ack == {"type": "csat_ack", "score": 1, "counted": True}
        rated = [o for o in await outcomes(redis) if o.get("csat")]
        assert [(o["conversation_id"], o["csat"], o["agent"]) for o in rated] == [(conv_id, 1, "U0ALICE")]

        # The same rating again (a re-send), then another one: neither counts, and the answer says what is kept.
        assert await _rate(ws, 1) == {"type": "csat_ack", "score": 1, "counted": False}
        assert await _rate(ws, 5) == {"type": "csat_ack", "score": 1, "counted": False}
        await asyncio.sleep(0.5)  # give a wrongly queued second note time to be posted
        assert len(_notes(gw, channel, card)) == 1
        assert [o["csat"] for o in await outcomes(redis) if o.get("csat")] == [1]
        assert await _rated_frames(redis, conv_id) == [1]  # no tab is told of a rating that was discarded
        assert await redis.hget(outbox.csat_key(conv_id), "score") == b"1"
        latest = await gw.rt.store.load(conv_id)
        assert latest is not None and latest.csat == 1 and latest.state.value == "resolved"

        # Past the reopen window the customer writes again: the new card lists the rated conversation.
        await redis.set(keys.closed(conv_id), 0)
        await ws.send_json({"type": "message", "client_id": "c2", "text": "My invoice is wrong again"})
        moved = await recv_until(ws, "conversation")
        assert moved["conversation_id"] != conv_id
        newest = await eventually(lambda: [c for c in cards(gw.slack, "support-billing")
                                           if moved["conversation_id"] in json.dumps(c["blocks"])])
        history = json.dumps(newest[-1]["blocks"])
        assert "Earlier conversations" in history and conv_id in history and "CSAT 1/5" in history
    finally:
        await ws.close()


async def test_a_rating_typed_first_is_what_the_widget_is_told_it_keeps(gw: Gateway, redis: aioredis.Redis) -> None:
    """The customer answers "How did we do?" by typing 4, then clicks 2 on the prompt still showing."""
    ws, conv_id = await _chat(gw, "I was charged twice on my invoice")
    try:
        card, channel = await _resolved_asking(gw, ws, conv_id, "support-billing")
        await ws.send_json({"type": "message", "client_id": "c2", "text": "4"})
        (typed,) = await eventually(lambda: _notes(gw, channel, card))
        assert typed == f"{RATED} 4/5."
        assert await _rate(ws, 2) == {"type": "csat_ack", "score": 4, "counted": False}
        await asyncio.sleep(0.5)
        assert _notes(gw, channel, card) == [typed]
        assert [o["csat"] for o in await outcomes(redis) if o.get("csat")] == [4]
        conv = await gw.rt.store.load(conv_id)
        assert conv is not None and conv.csat == 4
    finally:
        await ws.close()


async def test_a_rating_nobody_asked_for_is_not_taken(gw: Gateway, redis: aioredis.Redis) -> None:
    ws, conv_id = await _chat(gw, "I was charged twice on my invoice")
    try:
        await stored_card(gw, "support-billing")
        while (await recv(ws))["type"] != "ack":
            pass
        assert await _rate(ws, 5) == {"type": "csat_ack", "score": None, "counted": False}
        assert [o for o in await outcomes(redis) if o.get("csat")] == []
        conv = await gw.rt.store.load(conv_id)
        assert conv is not None and conv.csat is None
    finally:
        await ws.close()


async def test_a_typed_rating_and_a_widget_click_at_the_same_instant_count_once(
    gw: Gateway, redis: aioredis.Redis
) -> None:
    """The worker has read the typed "4" as the answer to the open request when the widget's 2 takes that request
    (the two run in different processes). Before: the worker went on to record the 4 as well, two outcomes and
    two thread lines for one request. The worker's step here is the real `csat.record`, run at that instant."""
    ws, conv_id = await _chat(gw, "I was charged twice on my invoice")
    try:
        card, channel = await _resolved_asking(gw, ws, conv_id, "support-billing")
        conv = await gw.rt.store.load(conv_id)
        assert conv is not None and await redis.exists(keys.csat_asked(conv_id))
        typed = Message(id="msg_typed4", direction=Direction.INBOUND, channel=conv.customer.channel, text="4")
        effects = Effects(redis, keys.effects(conv_id), known={}, fresh=True)
        assert await _rate(ws, 2) == {"type": "csat_ack", "score": 2, "counted": True}  # the click lands first

        assert await csat.record(gw.rt.pipeline, conv, typed, 4, effects) is False
        (note,) = await eventually(lambda: _notes(gw, channel, card))
        assert note == f"{RATED} 2/5."
        await asyncio.sleep(0.5)  # time for a wrongly posted second line
        assert _notes(gw, channel, card) == [note]
        assert [o["csat"] for o in await outcomes(redis) if o.get("csat")] == [2]
        stored = await gw.rt.store.load(conv_id)
        assert stored is not None and stored.csat == 2 and stored.state.value == "resolved"
    finally:
        await ws.close()


async def test_a_typed_rating_taken_before_a_crash_is_finished_on_redelivery(
    gw: Gateway, redis: aioredis.Redis
) -> None:
    """The request is taken in the step that marks the rating's effects started: a worker that dies after it
    finds the marker on redelivery and finishes the rating (it is not read as a new problem, which reopened the
    conversation with "4" and lost the rating)."""
    ws, conv_id = await _chat(gw, "I was charged twice on my invoice")
    try:
        card, channel = await _resolved_asking(gw, ws, conv_id, "support-billing")
        conv = await gw.rt.store.load(conv_id)
        assert conv is not None
        typed = Message(id="msg_typed4", direction=Direction.INBOUND, channel=conv.customer.channel, text="4")
        first = Effects(redis, keys.effects(conv_id), known={}, fresh=True)
        assert await csat._take_request(gw.rt.pipeline, conv, first, "csat:msg_typed4")  # then the worker dies
        assert not await redis.exists(keys.csat_asked(conv_id))

        logged = await redis.hgetall(keys.effects(conv_id))
        again = Effects(redis, keys.effects(conv_id), known={as_str(k): as_str(v) for k, v in logged.items()})
        assert await csat.asked(gw.rt.pipeline, conv, typed, again)
        assert await csat.record(gw.rt.pipeline, conv, typed, 4, again) is True
        (note,) = await eventually(lambda: _notes(gw, channel, card))
        assert note == f"{RATED} 4/5."
        assert [o["csat"] for o in await outcomes(redis) if o.get("csat")] == [4]
        assert await _rate(ws, 2) == {"type": "csat_ack", "score": 4, "counted": False}
    finally:
        await ws.close()


async def test_a_rating_note_redelivered_after_its_post_is_not_posted_twice(gw: Gateway, redis: aioredis.Redis) -> None:
    """The widget's rating queues its thread line for a worker; a worker that dies after posting it and before
    acknowledging the entry gets it again. Before: posted a second time. The redelivery here is the real handler
    given the same entry, marked redelivered, with the effect's result not yet written (as after such a crash)."""
    ws, conv_id = await _chat(gw, "I was charged twice on my invoice")
    try:
        card, channel = await _resolved_asking(gw, ws, conv_id, "support-billing")
        assert (await _rate(ws, 3))["counted"]
        (note,) = await eventually(lambda: _notes(gw, channel, card))
        part = int(as_str(await redis.get(keys.conversation_partition(conv_id))))
        (entry_id, fields), = [(i, f) for i, f in stream_rows(await redis.xrange(keys.inbound_stream(part)))
                               if f.get("kind") == "note"]
        name = f"note:{fields['id']}"
        assert await eventually(lambda: redis.hget(keys.effects(conv_id), name))
        await redis.hdel(keys.effects(conv_id), name)

        await outbound.note(gw.rt.pipeline, fields, Ack(part, entry_id, redelivered=True))
        assert _notes(gw, channel, card) == [note]
        assert await redis.hget(keys.effects(conv_id), name) is not None  # found in the thread, written down
    finally:
        await ws.close()
