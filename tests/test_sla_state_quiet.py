"""What starts the customer's wait (`gateway.sla.sla_state`): found in the review of this change.

- A bot answer is recorded once delivered, so a message that came in during the send stands before it
  (`[m1, m2, bot:m1]`): m2 still waits. Read as answered, its hand-off planned no deadline.
- A STOP or a WhatsApp 👍 after an agent's reply starts no wait: a later re-plan (a claim, a policy change)
  chased agents over it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from gateway.domain import BOT_AUTHOR, ChannelKind, Conversation, Customer, Direction, Message
from gateway.sla import sla_state

T0 = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)


def _conv(channel: ChannelKind, *lines: tuple[str, Direction, str, str | None]) -> Conversation:
    key = f"{channel.value}:+4917012345678"
    customer = Customer(key=key, channel=channel, external_id="+4917012345678")
    messages = [Message(id=mid, direction=d, channel=channel, text=text, author=author, at=T0 + timedelta(minutes=i))
                for i, (mid, d, text, author) in enumerate(lines)]
    return Conversation(id="conv_1", customer=customer, messages=messages)


IN, OUT = Direction.INBOUND, Direction.OUTBOUND


def test_a_message_that_came_in_during_the_bot_answer_still_waits() -> None:
    conv = _conv(ChannelKind.SMS, ("m1", IN, "where is my order", None), ("m2", IN, "and my refund?", None),
                 ("bot-m1", OUT, "Tracking is under Account", BOT_AUTHOR),
                 ("handoff-m2", OUT, "I'm passing you to a member of our team", BOT_AUTHOR))
    state = sla_state(conv, frozenset())
    assert not state.answered and state.waiting_since == T0.timestamp()  # the earlier deadline: from m1


def test_a_bot_answer_to_the_latest_message_ends_the_wait() -> None:
    conv = _conv(ChannelKind.SMS, ("m1", IN, "where is my order", None),
                 ("bot-m1", OUT, "Tracking is under Account", BOT_AUTHOR))
    assert sla_state(conv, frozenset()).answered


def test_a_stop_or_a_reaction_after_a_reply_starts_no_wait() -> None:
    stop = _conv(ChannelKind.SMS, ("m1", IN, "my invoice is wrong", None), ("out-r1", OUT, "Fixed it", "Jane"),
                 ("m2", IN, "STOP", None))
    liked = _conv(ChannelKind.WHATSAPP, ("m1", IN, "my invoice is wrong", None), ("out-r1", OUT, "Fixed it", "Jane"),
                  ("m2", IN, "[reaction 👍]", None))
    assert sla_state(stop, frozenset()).answered and sla_state(liked, frozenset()).answered
    asked = _conv(ChannelKind.WHATSAPP, ("m1", IN, "my invoice is wrong", None), ("out-r1", OUT, "Fixed it", "Jane"),
                  ("m2", IN, "[reaction 👍]", None), ("m3", IN, "one more thing", None))
    state = sla_state(asked, frozenset())
    assert not state.answered and state.waiting_since == (T0 + timedelta(minutes=3)).timestamp()
