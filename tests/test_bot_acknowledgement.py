"""A customer's "Thanks, that helped!" after a bot answer is answered by the bot, not handed to a person.

It used to find no KB entry and be handed off: a card for a thank-you, "a person will reply after we open" to a
customer who was done, and an automation failure label for an answer that worked. A thank-you that also asks or
complains ("thanks but it still doesn't work") is still handed off. The word table is pinned by unit tests; the
pipeline behaviour (no card, no failure label, the silence check later records the success) through the real
gateway with Redis, the Slack emulator and the API channel's callback as the customer.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from structlog.testing import capture_logs

from gateway import keys
from gateway.bot_followup import CHECK_TRIES, CLOSING, KIND, answered_text, publish_failure_once
from gateway.domain import ChannelKind, Conversation, ConversationState, Customer, Direction, Message, Scores
from gateway.effects import Effects
from gateway.scheduler import LEASE_S
from integrations.automation import AnswerBot
from integrations.automation.acknowledge import REPLY, is_acknowledgement
from router.policy import load_policy
from tests.conftest import Callback
from tests.harness import Gateway, bot_answered, cards, eventually, make_settings, outcomes, start_gateway

POLICY = load_policy()
BOT = AnswerBot(policy=POLICY)
CALM = Scores(sentiment=0.3, urgency=0.1, skill={"shipping": 1.0}, automation_success=0.7)


def after_answer(*texts: str) -> Conversation:
    """A conversation whose first question the bot answered, then the customer's `texts`."""
    msgs = [Message(id="m0", direction=Direction.INBOUND, channel=ChannelKind.API, text="How do I reset my password?"),
            Message(id="m1", direction=Direction.OUTBOUND, channel=ChannelKind.API, text="Use 'Forgot password?'")]
    msgs += [Message(id=f"m{i + 2}", direction=Direction.INBOUND, channel=ChannelKind.API, text=t)
             for i, t in enumerate(texts)]
    return Conversation(id="conv_ack", customer=Customer(key="api:ack", channel=ChannelKind.API, external_id="ack"),
                        messages=msgs)


@pytest.mark.parametrize(
    "text",
    ["Thanks, that helped!", "ok thanks", "Thank you so much for the quick answer", "Perfect, cheers 👍",
     "great, thx", "That’s all, have a nice day", "Got it. Bye!", "much appreciated", "THANK YOU!!"],
)
def test_plain_acknowledgements_are_recognised(text: str) -> None:
    assert is_acknowledgement(text)


@pytest.mark.parametrize(
    "text",
    ["thanks but it still doesn't work", "Thanks. How do I reset my password?", "thanks, where is my refund",
     "thanks for nothing", "great, another delay", "no thanks", "not helpful", "ok?", "thanks, I was charged twice",
     "", "thanks " * 13],
)
def test_messages_that_say_more_than_thanks_are_not_acknowledgements(text: str) -> None:
    assert not is_acknowledgement(text)


@pytest.mark.parametrize("text", ["Thanks, that helped!", "ok thanks", "thank you!"])
async def test_the_bot_answers_a_thank_you_briefly(text: str) -> None:
    reply = await BOT.handle(after_answer(text), CALM)
    assert (reply.answered, reply.text, reply.intent) == (True, REPLY, "acknowledgement"), reply


async def test_a_thank_you_twice_or_after_three_answers_is_no_reason_for_a_person() -> None:
    """The repeat and answer-count checks are about questions the bot failed; a second thanks is neither."""
    reply = await BOT.handle(after_answer("Thanks, that helped!", "Thanks, that helped!"), CALM)
    assert reply.answered, reply
    c = after_answer("and my address?", "And my invoice?", "thanks!")
    c.messages.insert(3, Message(id="o2", direction=Direction.OUTBOUND, channel=ChannelKind.API, text="Account"))
    c.messages.insert(5, Message(id="o3", direction=Direction.OUTBOUND, channel=ChannelKind.API, text="Orders"))
    assert (await BOT.handle(c, CALM)).answered


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("thanks but it still doesn't work", "customer said the answer did not help"),
        ("thanks, I want a real person", "customer asked for a human ('real person')"),
    ],
)
async def test_a_thank_you_that_complains_or_asks_for_a_person_is_still_handed_off(text: str, reason: str) -> None:
    reply = await BOT.handle(after_answer(text), CALM)
    assert not reply.answered and reply.handoff_reason == reason


async def test_an_angry_thank_you_is_still_handed_off() -> None:
    reply = await BOT.handle(after_answer("thanks"), Scores(sentiment=-0.7, urgency=0.1, skill={"general": 1.0},
                                                            automation_success=0.7))
    assert not reply.answered and (reply.handoff_reason or "").startswith("customer is frustrated")


async def test_acknowledgements_can_be_switched_off() -> None:
    reply = await AnswerBot(policy=POLICY, acknowledgement=None).handle(after_answer("ok thanks"), CALM)
    assert not reply.answered


# -- through the gateway ------------------------------------------------------------------------


@pytest.fixture
async def gw(redis: aioredis.Redis, redis_url: str, tmp_path: Path, callback: Callback) -> AsyncIterator[Gateway]:
    gateway = await start_gateway(make_settings(redis_url, tmp_path, api_callback_url=callback.url))
    yield gateway
    await gateway.close()


def all_cards(gw: Gateway) -> list[object]:
    return [c for channel in POLICY.channels() for c in cards(gw.slack, channel)]


async def test_thanks_after_a_bot_answer_gets_a_reply_no_card_and_counts_as_the_bots_success(
    gw: Gateway, redis: aioredis.Redis, callback: Callback
) -> None:
    follow, clock, conv_id = await bot_answered(gw, "ack-1")
    await eventually(lambda: len(callback.received) == 1)
    status, _ = await gw.post_message({"customer_id": "ack-1", "message_id": "m2", "text": "Thanks, that helped!"})
    assert status == 202
    await eventually(lambda: len(callback.received) == 2)
    assert callback.received[-1]["text"] == REPLY

    async def answered_and_saved() -> bool:
        conv = await gw.rt.store.load(conv_id)
        return conv is not None and conv.messages[-1].text == REPLY and conv.state is ConversationState.AUTOMATED

    await eventually(answered_and_saved)
    conv = await gw.rt.store.load(conv_id)
    assert conv is not None and conv.card_ts is None
    assert all_cards(gw) == []
    assert await outcomes(redis) == []  # no failure label for the answer that worked
    clock.advance(follow.quiet_s + 1)
    assert await follow.tick() == 1
    assert [(o["kind"], o["automation_failed"]) for o in await outcomes(redis)] == [("automation_resolved", False)]


async def test_thanks_but_still_broken_after_a_bot_answer_goes_to_a_person(
    gw: Gateway, redis: aioredis.Redis, callback: Callback
) -> None:
    _, _, conv_id = await bot_answered(gw, "ack-2")
    await gw.post_message({"customer_id": "ack-2", "message_id": "m2", "text": "thanks but it still doesn't work"})
    await eventually(lambda: all_cards(gw))
    await eventually(lambda: any("member of our team" in r["text"] for r in callback.received))

    async def carded() -> bool:
        conv = await gw.rt.store.load(conv_id)
        return conv is not None and conv.card_ts is not None and conv.state is ConversationState.WAITING

    await eventually(carded)
    failures = await eventually(lambda: outcomes(redis))
    assert [(o["kind"], o["automation_failed"]) for o in failures] == [("automation_handoff", True)]


async def test_thanks_after_the_bot_closed_it_takes_back_no_success(
    gw: Gateway, redis: aioredis.Redis, callback: Callback
) -> None:
    """Before: a thank-you an hour after the bot's answer published "reopened within window", a failure label
    for the answer the customer was thanking it for."""
    follow, clock, conv_id = await bot_answered(gw, "ack-3")
    await eventually(lambda: len(callback.received) == 1)
    clock.advance(follow.quiet_s + 1)
    assert await follow.tick() == 1
    status, _ = await gw.post_message({"customer_id": "ack-3", "message_id": "m2", "text": "Thanks, that helped!"})
    assert status == 202
    await eventually(lambda: len(callback.received) == 2)
    assert callback.received[-1]["text"] == REPLY  # the bot's closing, as for a thanks before the resolve

    async def answered_and_saved() -> bool:
        conv = await gw.rt.store.load(conv_id)
        return conv is not None and conv.messages[-1].text == REPLY and conv.state is ConversationState.AUTOMATED

    await eventually(answered_and_saved)
    assert all_cards(gw) == []
    assert not [o for o in await outcomes(redis) if o["automation_failed"]]
    # Silence after the bot's closing closes it again, and teaches nothing: that question's success is counted
    # once (a second label, paired with the same question, weighed it double).
    clock.advance(follow.quiet_s + 1)
    assert await follow.tick() == 1
    conv = await gw.rt.store.load(conv_id)
    assert conv is not None and conv.state is ConversationState.RESOLVED
    assert [(o["kind"], o["automation_failed"]) for o in await outcomes(redis)] == [("automation_resolved", False)]


async def test_a_question_after_the_post_close_thanks_is_labelled_when_the_bot_answers_it(
    gw: Gateway, redis: aioredis.Redis, callback: Callback
) -> None:
    """The quiet close is for a closing only: a real question before the silence check counts as before."""
    follow, clock, conv_id = await bot_answered(gw, "ack-5")
    clock.advance(follow.quiet_s + 1)
    assert await follow.tick() == 1
    await gw.post_message({"customer_id": "ack-5", "message_id": "m2", "text": "Thanks, that helped!"})
    await eventually(lambda: len(callback.received) == 2)
    await gw.post_message({"customer_id": "ack-5", "message_id": "m3", "text": "How do I reset my password?"})
    await eventually(lambda: len(callback.received) == 3)
    assert callback.received[-1]["text"] != REPLY

    async def answered_and_saved() -> bool:
        conv = await gw.rt.store.load(conv_id)
        return conv is not None and len(conv.messages) == 6 and conv.state is ConversationState.AUTOMATED

    await eventually(answered_and_saved)
    clock.advance(follow.quiet_s + 1)
    assert await follow.tick() == 1
    assert [(o["kind"], o["automation_failed"]) for o in await outcomes(redis)] == [
        ("automation_resolved", False), ("automation_resolved", False)]


async def test_thanks_but_still_broken_after_the_bot_closed_it_is_a_comeback(
    gw: Gateway, redis: aioredis.Redis, callback: Callback
) -> None:
    follow, clock, _ = await bot_answered(gw, "ack-4")
    clock.advance(follow.quiet_s + 1)
    assert await follow.tick() == 1
    await gw.post_message({"customer_id": "ack-4", "message_id": "m2", "text": "thanks but it still doesn't work"})
    await eventually(lambda: all_cards(gw))

    async def taken_back() -> list[str]:
        return [o["correction"] for o in await outcomes(redis) if o["automation_failed"]]

    # The earlier answer failed (and the bot then handed this message off, a label of its own)
    assert "reopened within window" in await eventually(taken_back)


async def test_a_failure_label_pairs_with_the_five_messages_the_bot_answered_on(redis: aioredis.Redis) -> None:
    """Scored (and labelled a success) on the last five messages; the failure took the four before the comeback,
    so the two labels of one answer were two different texts to the learner."""
    texts = [f"question {i}" for i in range(1, 7)] + ["that did not help"]
    conv = Conversation(
        id="conv_pair", customer=Customer(key="api:pair", channel=ChannelKind.API, external_id="pair"),
        messages=[Message(id=f"m{i}", direction=Direction.INBOUND, channel=ChannelKind.API, text=t)
                  for i, t in enumerate(texts)])
    effects = Effects(redis, keys.effects(conv.id), known={}, fresh=True)
    await publish_failure_once(redis, effects, "comeback:m6", conv, CALM, "reopened within window")
    (label,) = await outcomes(redis)
    assert label["text"] == "\n".join(texts[1:6])  # questions 2-6: what the answer was scored on


async def test_one_unreadable_conversation_does_not_drop_the_other_silence_checks(
    gw: Gateway, redis: aioredis.Redis
) -> None:
    """Popped outright, a batch of silence checks ended at the first one that raised: every later conversation
    stayed with the bot for good, never closed nor labelled. Now the failing one is logged and comes back."""
    _, _, broken = await bot_answered(gw, "tick-1")
    follow, clock, fine = await bot_answered(gw, "tick-2")  # its clock is the check's clock from now on
    await redis.hset(keys.conversation(broken), "scores", "{not json")  # unreadable, as after a bad hand edit
    clock.advance(follow.quiet_s + 1)
    assert await follow.tick() == 1
    conv = await gw.rt.store.load(fine)
    assert conv is not None and conv.state is ConversationState.RESOLVED
    assert [d.conversation_id for d in await follow.deadlines.pending(broken)] == [broken]  # leased, not lost



async def test_a_check_that_fails_every_time_is_dropped_after_a_few_tries(gw: Gateway, redis: aioredis.Redis) -> None:
    """Leased, a check that can never succeed came back every two minutes for ever."""
    follow, clock, conv_id = await bot_answered(gw, "tick-3")
    await redis.hset(keys.conversation(conv_id), "scores", "{not json")
    clock.advance(follow.quiet_s + 1)
    with capture_logs() as logs:
        for _ in range(CHECK_TRIES):
            assert await follow.tick() == 0
            clock.advance(LEASE_S)
    assert [e["attempt"] for e in logs if e["event"] == "bot_check_failed"] == list(range(1, CHECK_TRIES))
    assert [e["event"] for e in logs if e["event"] == "bot_check_dropped"] == ["bot_check_dropped"]
    assert await follow.deadlines.pending(conv_id) == []


async def test_a_closing_check_overtaken_by_a_real_answer_is_not_put_back_beside_its_check(
    gw: Gateway, redis: aioredis.Redis
) -> None:
    """A closing check (after a post-close thank-you) found a newer bot answer, which had planned its own check,
    and put itself back beside it: due first, it closed the conversation without the answer's label."""
    follow, clock, conv_id = await bot_answered(gw, "tick-4")  # its answer planned the ordinary check
    await follow.deadlines.schedule(conv_id, CLOSING, clock.now() + 1)  # a closing check leased just before
    clock.advance(2)
    assert await follow.tick() == 0  # the newer answer is not silent yet
    assert [d.kind for d in await follow.deadlines.pending(conv_id)] == [KIND]


def test_both_labels_of_an_answer_pair_with_the_same_text() -> None:
    """A 👍 between the answer and the comeback was in the failure's text and not in the success's."""
    msgs = [Message(id="q", direction=Direction.INBOUND, channel=ChannelKind.WHATSAPP, text="Where is my order?"),
            Message(id="a", direction=Direction.OUTBOUND, channel=ChannelKind.WHATSAPP, text="On its way"),
            Message(id="r", direction=Direction.INBOUND, channel=ChannelKind.WHATSAPP, text="[reaction 👍]")]
    conv = Conversation(id="conv_pair2", customer=Customer(key="whatsapp:1", channel=ChannelKind.WHATSAPP,
                                                           external_id="1"), messages=msgs)
    success = answered_text(conv)
    conv.messages.append(Message(id="c", direction=Direction.INBOUND, channel=ChannelKind.WHATSAPP,
                                 text="it never came"))
    assert answered_text(conv, comeback=True) == success == "Where is my order?"
