"""When a customer's wait starts and which SLA steps it has used up: after the bot, after a release,
after a follow-up to a hand-off, and after an agent hands a conversation back to the bot."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from gateway import keys
from gateway.domain import Conversation
from tests.conftest import Callback
from tests.harness import (
    Gateway,
    bot_answered,
    cards,
    eventually,
    make_settings,
    outcomes,
    sla_on_manual_clock,
    start_gateway,
)
from tests.slack_requests import SlackSender
from tests.test_sla_e2e import _card
from tests.test_transfer_order import _drained


@pytest.fixture
async def gw(redis: aioredis.Redis, redis_url: str, tmp_path: Path, callback: Callback) -> AsyncIterator[Gateway]:
    gateway = await start_gateway(make_settings(redis_url, tmp_path, api_callback_url=callback.url))
    yield gateway
    await gateway.close()


async def _backdate(gw: Gateway, conv_id: str, seconds: float) -> None:
    """As if everything said so far had been said `seconds` earlier."""
    key = keys.transcript(conv_id)
    for i, raw in enumerate(await gw.rt.redis.lrange(key, 0, -1)):
        m = json.loads(raw)
        m["at"] = (datetime.fromisoformat(m["at"]) - timedelta(seconds=seconds)).isoformat()
        await gw.rt.redis.lset(key, i, json.dumps(m))


async def _with_card(gw: Gateway, conv_id: str) -> Conversation:
    async def carded() -> Conversation | None:
        conv = await gw.rt.store.load(conv_id)
        return conv if conv is not None and conv.card_ts and await gw.rt.sla.scheduler.pending(conv_id) else None

    conv: Conversation = await eventually(carded)
    return conv


async def _steps(gw: Gateway, conv_id: str) -> list[str]:
    return [h["step"] for h in await gw.rt.sla.scheduler.escalations(conv_id)]


async def test_a_hand_off_after_the_bot_is_timed_from_the_message_that_asked_for_a_person(gw: Gateway) -> None:
    _, _, conv_id = await bot_answered(gw, "wait-1")
    clock = await sla_on_manual_clock(gw)
    await _backdate(gw, conv_id, 20 * 60)  # the bot answered twenty minutes ago
    await gw.post_message({"customer_id": "wait-1", "message_id": "m2",
                           "text": "that did not help, I want to talk to a real person"})
    conv = await _with_card(gw, conv_id)
    first_response = (await gw.rt.policies.current()).route_for(conv.skill or "general").sla.first_response
    clock.advance(first_response * 0.75 - 5)
    assert await gw.rt.sla.tick() == 0  # was: overdue at once, timed from the question the bot answered
    clock.advance(10)
    assert await gw.rt.sla.tick() == 1 and await _steps(gw, conv_id) == ["warn"]


async def test_writing_again_after_a_hand_off_notice_does_not_escalate_twice(gw: Gateway) -> None:
    _, _, conv_id = await bot_answered(gw, "wait-2")
    clock = await sla_on_manual_clock(gw)
    await gw.post_message({"customer_id": "wait-2", "message_id": "m2",
                           "text": "that did not help, I want to talk to a real person"})
    conv = await _with_card(gw, conv_id)
    clock.advance((await gw.rt.policies.current()).route_for(conv.skill or "general").sla.first_response + 5)
    assert await gw.rt.sla.tick() == 1 and await _steps(gw, conv_id) == ["escalate"]
    escalated = len(cards(gw.slack, "support-leads"))
    await gw.post_message({"customer_id": "wait-2", "message_id": "m3", "text": "hello?? anyone"})

    await eventually(lambda: _drained(gw, gw.rt.redis))
    clock.advance(1)
    await gw.rt.sla.tick()
    assert "escalate" not in (await _steps(gw, conv_id))[:-1]  # once only
    assert len(cards(gw.slack, "support-leads")) == escalated


async def test_a_release_does_not_fire_the_steps_already_fired_again(gw: Gateway) -> None:
    clock = await sla_on_manual_clock(gw)
    conv_id, _ = await _card(gw)
    first_response = (await gw.rt.policies.current()).route_for("billing").sla.first_response
    clock.advance(first_response * 0.75 + 1)
    assert await gw.rt.sla.tick() == 1
    assert (await gw.rt.ops.claim(conv_id, "U0ALICE")).ok
    clock.advance(5)
    assert (await gw.rt.ops.release(conv_id, "U0ALICE")).ok
    clock.advance(1)
    assert await gw.rt.sla.tick() == 0 and await _steps(gw, conv_id) == ["warn"]  # was: warn, warn


async def test_back_to_bot_then_the_customer_writes_the_bot_decides_and_the_card_comes_back(gw: Gateway) -> None:
    _, body = await gw.post_message({"customer_id": "wait-4", "message_id": "m1", "text": "my invoice is wrong"})
    conv_id = body["conversation_id"]
    (card,) = await eventually(lambda: cards(gw.slack, "support-billing"))
    await _with_card(gw, conv_id)
    assert (await gw.rt.ops.to_bot(conv_id, "U0ALICE")).ok
    await gw.post_message({"customer_id": "wait-4", "message_id": "m2", "text": "this is still wrong, I want a person"})

    async def waiting() -> Conversation | None:
        conv = await gw.rt.store.load(conv_id)
        return conv if conv is not None and conv.state.value == "waiting" else None

    conv = await eventually(waiting)  # was: "automated" for ever, under a card nobody watched
    assert conv.card_ts == card["ts"] and len(cards(gw.slack, "support-billing")) == 1  # the same card, alive
    assert conv.skill == "billing" and await gw.rt.sla.scheduler.pending(conv_id)  # and on the clock again
    redrawn = next(m for m in gw.slack.messages("support-billing") if m["ts"] == card["ts"])
    assert "Back from the bot" in json.dumps(redrawn["blocks"]) and '"sb_claim"' in json.dumps(redrawn["blocks"])
    texts = [m.get("text", "") for m in gw.slack.replies("support-billing", card["ts"])]
    assert any("needs a person again" in t for t in texts)
    assert sum("I want a person" in t for t in texts) == 1  # threaded once
    assert any(o["kind"] == "automation_handoff" for o in await outcomes(gw.rt.redis))  # the bot had its turn


async def test_an_agent_who_replied_keeps_the_conversation_while_the_reply_is_on_its_way(gw: Gateway) -> None:
    clock = await sla_on_manual_clock(gw)
    conv_id, card = await _card(gw)
    slack = SlackSender(gw.session, f"{gw.url}/slack/events", gw.rt.slack.signing_secret)
    channel = gw.slack.channel_id("support-billing")
    assert (await gw.rt.ops.claim(conv_id, "U0ALICE")).ok
    await gw.stop_worker()  # the customer's partition is busy: the reply waits there a while
    clock.advance((await gw.rt.policies.current()).route_for("billing").sla.first_response - 5)
    await slack.message("U0ALICE", channel, "Hi, I am looking at your invoice now", thread_ts=card["ts"])

    async def recorded() -> bool:
        conv = await gw.rt.store.load(conv_id)
        return conv is not None and conv.replied_at is not None

    await eventually(recorded)
    clock.advance(10)
    assert await gw.rt.sla.tick() == 0  # was: "U0ALICE has not replied for 10m 05s", and back to the queue
    assert await gw.rt.ops.holder(conv_id) == "U0ALICE"
    gw.start_worker()
    await eventually(lambda: _drained(gw, gw.rt.redis))
    conv = await gw.rt.store.load(conv_id)
    assert conv is not None and conv.claimed_by == "U0ALICE" and conv.state.value == "claimed"
