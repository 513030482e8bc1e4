"""Messages that ask nothing (STOP/START, a WhatsApp reaction) are shown in the card's thread and change nothing.

Before: STOP texted after the conversation was resolved reopened it ("🔁 reopened" broadcast to the channel,
state waiting, SLA ladder running) for a customer nobody could answer any more; a 👍 on WhatsApp did the same and
cost the open rating question, and taking the 👍 back reached the agent as the customer writing "[reaction ]".
Through the real gateway, worker, Redis, the Slack emulator (the Resolve form submitted as Slack does) and
stand-ins of Twilio's Messages API and Meta's Graph API.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any

import redis.asyncio as aioredis

from gateway.domain import Conversation, ConversationState
from gateway.optout import opt_out_key
from gateway.redis_conn import as_str
from gateway.scheduler import ManualClock
from tests.harness import Gateway, eventually, outcomes, stored_card, transcript_of
from tests.test_desk import resolve_form, sender
from tests.test_optout import _text
from tests.test_whatsapp import APP_SECRET, WA_ID, Graph, delivery, text
from tests.test_whatsapp_reengage import meta_gw_plain
from tests.twilio_gateway import sms_gw
from tests.twilio_standin import StandIn

__all__ = ["meta_gw_plain", "sms_gw"]


async def _resolved_with_rating_asked(gw: Gateway, card: dict[str, Any], conv_id: str) -> str:
    """Alice claims, replies and resolves through Slack, asking the customer for a rating; the card's channel."""
    channel = gw.slack.channel_id("support-billing")
    slack = sender(gw)
    await slack.click("U0ALICE", channel, card, {"type": "button", "action_id": "sb_claim", "value": conv_id})
    await eventually(lambda: gw.rt.ops.holder(conv_id))
    await slack.message("U0ALICE", channel, "Refunded, sorry about that", thread_ts=card["ts"])

    async def replied() -> bool:
        conv = await gw.rt.store.load(conv_id)
        return conv is not None and any(m.text == "Refunded, sorry about that" for m in conv.messages)

    await eventually(replied)
    view = await resolve_form(gw, "U0ALICE", channel, card, conv_id)
    values = {
        "skill": {"value": {"type": "static_select", "selected_option": {"value": "billing"}}},
        "csat": {"value": {"type": "static_select", "selected_option": {"value": "yes"}}},
    }
    status, _ = await slack.submit_view("U0ALICE", view, values)
    assert status == 200
    await eventually(lambda: _in_state(gw, conv_id, ConversationState.RESOLVED))
    return channel


async def _in_state(gw: Gateway, conv_id: str, state: ConversationState) -> Conversation | None:
    conv = await gw.rt.store.load(conv_id)
    return conv if conv is not None and conv.state is state else None


def _thread(gw: Gateway, channel: str, card: dict[str, Any], containing: str) -> list[str]:
    return [m.get("text", "") for m in gw.slack.replies(channel, card["ts"]) if containing in m.get("text", "")]


def _reopened(gw: Gateway) -> list[dict[str, Any]]:
    return [m for m in gw.slack.messages("support-billing") if "reopened" in m.get("text", "")]


async def test_stop_after_resolve_is_threaded_and_reopens_nothing(
    sms_gw: tuple[Gateway, StandIn], redis: aioredis.Redis
) -> None:
    gw, _ = sms_gw
    await _text(gw, 1, "I was charged twice on my invoice")
    card, conv_id = await stored_card(gw, "support-billing")
    channel = await _resolved_with_rating_asked(gw, card, conv_id)
    await _text(gw, 2, "STOP")
    await eventually(lambda: _thread(gw, channel, card, "opted out"))
    await eventually(lambda: _thread(gw, channel, card, ">STOP"))  # the card's thread shows the keyword itself
    assert await redis.exists(opt_out_key("sms:+14155550123"))
    conv = await gw.rt.store.load(conv_id)
    assert conv is not None and conv.state is ConversationState.RESOLVED, conv and conv.state  # was: waiting
    assert conv.resolved_at is not None
    assert not _reopened(gw)  # was: "🔁 The customer wrote again: this conversation is *reopened*."
    assert not await gw.rt.sla.scheduler.pending(conv_id)  # no SLA ladder for a customer we cannot answer


async def _meta_sends(gw: Gateway, message: dict[str, Any]) -> None:
    raw = json.dumps(delivery([message])).encode()
    signature = "sha256=" + hmac.new(APP_SECRET.encode(), raw, hashlib.sha256).hexdigest()
    async with gw.session.post(f"{gw.url}/channels/whatsapp", data=raw, headers={
            "Content-Type": "application/json", "X-Hub-Signature-256": signature}) as resp:
        assert resp.status == 200


def _reaction(wamid: str, emoji: str) -> dict[str, Any]:
    return {"from": WA_ID, "id": wamid, "timestamp": "1717000000", "type": "reaction",
            "reaction": {"message_id": "wamid.OUT1", "emoji": emoji}}


async def test_a_whatsapp_reaction_after_resolve_keeps_it_resolved_and_the_rating_question_open(
    meta_gw_plain: tuple[Gateway, Graph]
) -> None:
    gw, _ = meta_gw_plain
    await _meta_sends(gw, text("wamid.IN1", "I was charged twice on my invoice"))
    card, conv_id = await stored_card(gw, "support-billing")
    channel = await _resolved_with_rating_asked(gw, card, conv_id)

    await _meta_sends(gw, _reaction("wamid.IN2", "👍"))
    await eventually(lambda: _thread(gw, channel, card, "[reaction 👍]"))  # the agent still sees it
    conv = await gw.rt.store.load(conv_id)
    assert conv is not None and conv.state is ConversationState.RESOLVED  # was: reopened, waiting
    assert not _reopened(gw) and not await gw.rt.sla.scheduler.pending(conv_id)

    await _meta_sends(gw, text("wamid.IN3", "5"))  # still the answer to "How did we do?"
    rated = await eventually(lambda: _in_state(gw, conv_id, ConversationState.RESOLVED) if _thread(
        gw, channel, card, "rated this conversation 5/5") else None)
    assert rated.csat == 5


async def test_a_whatsapp_reaction_taken_back_is_acknowledged_and_dropped(
    meta_gw_plain: tuple[Gateway, Graph]
) -> None:
    """Meta sends the removal as a reaction without an emoji: it is no message (and answered 200, or Meta would
    send it again for days)."""
    gw, _ = meta_gw_plain
    await _meta_sends(gw, text("wamid.IN1", "I was charged twice on my invoice"))
    card, _ = await stored_card(gw, "support-billing")
    channel = gw.slack.channel_id("support-billing")
    await _meta_sends(gw, _reaction("wamid.IN2", ""))
    await _meta_sends(gw, text("wamid.IN3", "One more question about my invoice"))  # queued after it, in order
    await eventually(lambda: _thread(gw, channel, card, "One more question"))
    texts = [m["text"] for m in await transcript_of(gw.rt.redis, f"whatsapp:+{WA_ID}")]
    assert texts == ["I was charged twice on my invoice", "One more question about my invoice"], texts
    assert not _thread(gw, channel, card, "[reaction")  # was: "*Customer* (whatsapp): [reaction ]"


async def test_a_whatsapp_reaction_to_the_bots_answer_lets_its_silence_close_the_conversation(
    meta_gw_plain: tuple[Gateway, Graph], redis: aioredis.Redis
) -> None:
    """Before: the 👍 was the transcript's last message, so the bot's silence check read "the customer wrote again,
    that message is being routed", dropped its deadline and never came back: the conversation stayed with the bot
    for good, the answer the customer liked was never labelled a success, and a message days later labelled it a
    failure."""
    gw, _ = meta_gw_plain
    follow = gw.rt.pipeline.bot_followup
    assert follow is not None
    follow.clock = clock = ManualClock(time.time())
    await _meta_sends(gw, text("wamid.IN1", "How long does shipping usually take?"))
    answered = await eventually(lambda: _any_in_state(gw, ConversationState.AUTOMATED))
    await _meta_sends(gw, _reaction("wamid.IN2", "👍"))

    async def reacted() -> bool:
        conv = await gw.rt.store.load(answered.id)
        return conv is not None and conv.messages[-1].text.startswith("[reaction")

    await eventually(reacted)
    clock.advance(follow.quiet_s + 1)
    assert await follow.tick() == 1
    assert await _in_state(gw, answered.id, ConversationState.RESOLVED)
    labels = await outcomes(redis)
    assert [(o["kind"], o["automation_failed"]) for o in labels] == [("automation_resolved", False)]
    assert "reaction" not in labels[0]["text"]  # the label is the question the bot answered


async def _any_in_state(gw: Gateway, state: ConversationState) -> Conversation | None:
    for key in await gw.rt.redis.keys("sb:conv:*:msgs"):
        conv = await gw.rt.store.load(as_str(key).split(":")[2])
        if conv is not None and conv.state is state:
            return conv
    return None
