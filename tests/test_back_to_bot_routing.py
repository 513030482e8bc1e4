"""After an agent presses "Back to bot", the customer's next message goes to the bot.

It used to go straight back to a person: routing judged the whole conversation, so the agent who had just handed
it back was a "returning customer: previous agent available" reason, and a "talk to someone" in the first message
(which the agent had already dealt with) still counted. Asking for a person after the hand-back still works, and
brings the same card back. All through the real gateway: signed Slack clicks and thread replies, the API
channel's callback as the customer.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from gateway.bot_followup import BOT_AGENT
from gateway.domain import Conversation, ConversationState
from gateway.scheduler import ManualClock
from tests.conftest import Callback
from tests.harness import Gateway, cards, eventually, make_settings, outcomes, start_gateway
from tests.slack_requests import SlackSender

RESET_ANSWER = 'Use "Forgot password?" on the sign-in page'


@pytest.fixture
async def gw(redis: aioredis.Redis, redis_url: str, tmp_path: Path, callback: Callback) -> AsyncIterator[Gateway]:
    gateway = await start_gateway(make_settings(redis_url, tmp_path, api_callback_url=callback.url))
    yield gateway
    await gateway.close()


async def _state(gw: Gateway, conv_id: str, state: ConversationState) -> Conversation | None:
    conv = await gw.rt.store.load(conv_id)
    return conv if conv is not None and conv.state is state else None


async def _handled_by_agent_then_back_to_bot(
    gw: Gateway, callback: Callback, customer: str, first: str, channel_name: str
) -> tuple[str, dict[str, Any], str]:
    """A card for `first`; U0ALICE claims it, replies, and hands it back to the bot, all by Slack requests."""
    status, body = await gw.post_message({"customer_id": customer, "message_id": f"{customer}-1", "text": first})
    assert status == 202
    conv_id = body["conversation_id"]
    (card,) = await eventually(lambda: cards(gw.slack, channel_name))
    await eventually(lambda: _state(gw, conv_id, ConversationState.WAITING))
    channel = gw.slack.channel_id(channel_name)
    slack = SlackSender(gw.session, f"{gw.url}/slack/events", gw.rt.slack.signing_secret)
    await slack.click("U0ALICE", channel, card, {"type": "button", "action_id": "sb_claim", "value": conv_id})
    await eventually(lambda: gw.rt.ops.holder(conv_id))
    await slack.message("U0ALICE", channel, "Happy to help, I have sorted that for you.", thread_ts=card["ts"])
    await eventually(lambda: any("sorted that" in r["text"] for r in callback.received))

    async def reply_stored() -> bool:  # the worker appends the reply once it is delivered
        conv = await gw.rt.store.load(conv_id)
        return conv is not None and any("sorted that" in m.text for m in conv.messages)

    await eventually(reply_stored)
    await slack.click("U0ALICE", channel, card, {"type": "button", "action_id": "sb_to_bot", "value": conv_id})
    await eventually(lambda: _state(gw, conv_id, ConversationState.AUTOMATED))
    return conv_id, card, channel_name


async def _bot_answer(callback: Callback) -> dict[str, Any]:
    found: dict[str, Any] = await eventually(
        lambda: next((r for r in callback.received if RESET_ANSWER in r["text"]), None))
    return found


async def _closed_by_the_bot_after_back_to_bot(gw: Gateway, callback: Callback, customer: str
                                               ) -> tuple[str, dict[str, Any], str]:
    """Handed back to the bot (`_handled_by_agent_then_back_to_bot`), answered by it, and closed by its silence check
    on a manual clock: (conversation id, card, channel name)."""
    conv_id, card, channel_name = await _handled_by_agent_then_back_to_bot(
        gw, callback, customer, "I was charged twice on my invoice", "support-billing")
    follow = gw.rt.pipeline.bot_followup
    assert follow is not None
    follow.clock = clock = ManualClock(time.time())
    await gw.post_message({"customer_id": customer, "message_id": f"{customer}-2",
                           "text": "Thanks. How do I reset my password?"})
    await _bot_answer(callback)
    await eventually(lambda: _state(gw, conv_id, ConversationState.AUTOMATED))
    clock.advance(follow.quiet_s + 1)
    assert await follow.tick() == 1
    return conv_id, card, channel_name


def _thread(gw: Gateway, channel: str, card: dict[str, Any]) -> list[str]:
    return [m.get("text", "") for m in gw.slack.replies(channel, card["ts"])]


async def test_after_back_to_bot_the_next_message_goes_to_the_bot_not_to_the_agent(
    gw: Gateway, callback: Callback
) -> None:
    conv_id, card, channel = await _handled_by_agent_then_back_to_bot(
        gw, callback, "btb-agent", "I was charged twice on my invoice", "support-billing")
    await gw.post_message({"customer_id": "btb-agent", "message_id": "btb-agent-2",
                           "text": "Thanks. How do I reset my password?"})
    await _bot_answer(callback)  # was: "returning customer: previous agent U0ALICE available", to a person
    await asyncio.sleep(0.5)
    conv = await gw.rt.store.load(conv_id)
    assert conv is not None and conv.state is ConversationState.AUTOMATED and conv.claimed_by is None
    assert conv.card_ts == card["ts"] and len(cards(gw.slack, channel)) == 1
    assert not any("needs a person again" in t for t in _thread(gw, channel, card))


async def test_a_request_for_a_person_before_back_to_bot_does_not_count_one_after_it_does(
    gw: Gateway, callback: Callback
) -> None:
    conv_id, card, channel = await _handled_by_agent_then_back_to_bot(
        gw, callback, "btb-asked", "I would like to speak with someone about my invoice", "support-billing")
    await gw.post_message({"customer_id": "btb-asked", "message_id": "btb-asked-2",
                           "text": "How do I reset my password?"})
    await _bot_answer(callback)  # was: "customer asked for a human once", from the first message
    conv = await gw.rt.store.load(conv_id)
    assert conv is not None and conv.state is ConversationState.AUTOMATED
    # Asked after the hand-back, it counts: the same card comes back, waiting for a claim.
    await gw.post_message({"customer_id": "btb-asked", "message_id": "btb-asked-3",
                           "text": "That is not it, I want to talk to a real person please"})
    back = await eventually(lambda: _state(gw, conv_id, ConversationState.WAITING))
    assert back.card_ts == card["ts"] and len(cards(gw.slack, channel)) == 1
    notes = [t for t in _thread(gw, channel, card) if "needs a person again" in t]
    assert len(notes) == 1 and "customer asked for a human once" in notes[0], notes


async def test_after_the_bot_closes_a_handed_back_conversation_its_agent_may_still_write(
    gw: Gateway, callback: Callback
) -> None:
    """The bot answered after the hand-back and its silence check closed the conversation. Before: an afterthought
    in the thread from the agent who handed it back was refused with "only <@bot>, who worked it, can still reply"
    (a Slack user that does not exist), and Claim and Resolve both said it was resolved: a dead end."""
    conv_id, card, channel_name = await _closed_by_the_bot_after_back_to_bot(gw, callback, "btb-closed")
    closed = await _state(gw, conv_id, ConversationState.RESOLVED)
    assert closed is not None and closed.agent == BOT_AGENT

    channel = gw.slack.channel_id(channel_name)
    slack = SlackSender(gw.session, f"{gw.url}/slack/events", gw.rt.slack.signing_secret)
    await slack.message("U0ALICE", channel, "PS: your refund reference is R-123.", thread_ts=card["ts"])
    await eventually(lambda: any("R-123" in r["text"] for r in callback.received))


@dataclasses.dataclass
class ActsDuringRedraw:
    """The real desk, with an agent acting on the conversation while the worker redraws its card "Back from the
    bot" (the window between the worker's read and its write: Slack takes 100-300 ms, the pacer longer)."""

    inner: Any
    act: Callable[[str], Awaitable[None]]

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def update_card(self, conversation: Conversation, status: str | None) -> None:
        if status and status.startswith("🙋 Back from the bot"):
            await self.act(conversation.id)
        await self.inner.update_card(conversation, status)


@pytest.mark.parametrize("action", ["claim", "resolve"])
async def test_an_agent_acting_while_the_customer_comes_back_from_the_bot_keeps_what_they_did(
    gw: Gateway, callback: Callback, action: str
) -> None:
    """Before: the worker wrote "waiting" over the claim (the claim key held on a conversation reading
    unclaimed, its SLA ladder escalating a card Bob was working) or over the resolve (resolved, closed marker
    set, yet waiting: the dead end a transfer had had)."""
    customer = f"btb-race-{action}"
    conv_id, _, _ = await _handled_by_agent_then_back_to_bot(
        gw, callback, customer, "I was charged twice on my invoice", "support-billing")

    async def act(conversation_id: str) -> None:
        if action == "claim":
            assert (await gw.rt.ops.claim(conversation_id, "U0BOB")).ok
        else:
            assert (await gw.rt.ops.resolve(conversation_id, "U0BOB", skill="billing", urgency=None, mood=None)).ok

    gw.rt.pipeline.desk = ActsDuringRedraw(gw.rt.pipeline.desk, act)
    await gw.post_message({"customer_id": customer, "message_id": f"{customer}-2", "text": "I want a real person"})
    await eventually(lambda: any("member of our team" in r["text"] for r in callback.received))

    await asyncio.sleep(1.0)  # the worker's write for that message lands right after the notice
    conv = await gw.rt.store.load(conv_id)
    assert conv is not None
    if action == "claim":
        assert (conv.state, conv.claimed_by) == (ConversationState.CLAIMED, "U0BOB")
        assert await gw.rt.ops.holder(conv_id) == "U0BOB"
    else:
        assert conv.state is ConversationState.RESOLVED and conv.claimed_by is None


async def test_a_comeback_after_the_bot_closed_a_handed_back_conversation_takes_its_success_back(
    gw: Gateway, callback: Callback
) -> None:
    """The card's path (a conversation handed back keeps its card) reopened it for people and published nothing:
    the bot's success label stood alone, while one without a card gets its "reopened within window" failure."""
    conv_id, _, _ = await _closed_by_the_bot_after_back_to_bot(gw, callback, "btb-back")
    await gw.post_message({"customer_id": "btb-back", "message_id": "btb-back-3",
                           "text": "That reset link never arrived, it does not work"})
    await eventually(lambda: _state(gw, conv_id, ConversationState.WAITING))

    async def labels() -> list[tuple[str, bool, str | None]] | None:
        found = [(o["kind"], o["automation_failed"], o.get("correction")) for o in await outcomes(gw.rt.redis)
                 if o["conversation_id"] == conv_id]
        return found if len(found) >= 2 else None

    assert await eventually(labels) == [("automation_resolved", False, None),
                                        ("automation_handoff", True, "reopened within window")]
