"""SMS and WhatsApp opt-out: a customer who texts STOP gets nothing more from us until they text START.

Carriers require it, and Twilio enforces it itself (it answers the keyword and refuses later sends with
error 21610), but it still forwards the keyword to us. Scored and routed, "STOP" got a bot answer Twilio
refused and a card saying so; an agent's reply was "sent" and refused. Now the keyword is recorded, said in
the card's thread if there is one, and every later send is refused before it leaves with a reason the agent
can act on.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING

import structlog

from gateway import keys
from gateway.domain import ChannelKind, Conversation, Message
from gateway.effects import Effects, never_found

if TYPE_CHECKING:
    from gateway.pipeline import Pipeline

log = structlog.get_logger(__name__)


class Keyword(StrEnum):
    OUT = "out"
    IN = "in"


KEYWORDS: dict[str, Keyword] = {
    **dict.fromkeys(("stop", "stopall", "unsubscribe", "cancel", "end", "quit", "optout", "revoke"), Keyword.OUT),
    **dict.fromkeys(("start", "unstop", "yes", "optin"), Keyword.IN),
}
"""Twilio's standard opt-out and opt-in keywords, the whole message, any case (Twilio matches them so)."""
CHANNELS = frozenset({ChannelKind.SMS, ChannelKind.WHATSAPP})

NOTES = {
    Keyword.OUT: "📵 The customer texted *{word}*: they opted out of {channel}. Replies cannot reach them until "
                 "they text START.",
    Keyword.IN: "📲 The customer texted *{word}*: {channel} replies reach them again.",
}


def opt_out_key(customer_key: str) -> str:
    return f"{keys.PREFIX}optout:{customer_key}"


def keyword(conv: Conversation, message: Message) -> Keyword | None:
    """The opt-out or opt-in keyword this message is, on a channel that has them; None for anything else.

    >>> from gateway.domain import Customer, Direction
    >>> conv = Conversation(id="c", customer=Customer(key="sms:+15550100", channel="sms", external_id="+15550100"))
    >>> keyword(conv, Message(id="m", direction=Direction.INBOUND, channel="sms", text=" Stop. "))
    <Keyword.OUT: 'out'>
    >>> keyword(conv, Message(id="m", direction=Direction.INBOUND, channel="sms", text="stop charging me"))
    """
    if conv.customer.channel not in CHANNELS:
        return None
    return KEYWORDS.get(message.text.strip().strip(".!").lower())


async def record(p: Pipeline, conv: Conversation, message: Message, word: Keyword, effects: Effects) -> bool:
    """Remember the choice and say it in the card's thread; False when there was nothing to record.

    An opt-in word counts only from a customer who opted out: "Yes" is mostly an answer to an agent's
    question, and it was swallowed (never threaded) and reported as an opt-in."""
    key = opt_out_key(conv.customer.key)
    if word is Keyword.OUT:
        await p.redis.set(key, message.id)
    elif not await p.redis.delete(key):
        return False
    log.info("customer_opt_out" if word is Keyword.OUT else "customer_opt_in", conversation_id=conv.id,
             channel=conv.customer.channel.value)
    if conv.card_ts:
        note = NOTES[word].format(word=message.text.strip()[:20], channel=conv.customer.channel.value)

        async def tell() -> str:
            return await p.desk.note_in_thread(conv, note) or "none"

        await effects.once(f"optout:{message.id}", tell, never_found)
    return True


async def refusal(p: Pipeline, conv: Conversation) -> str | None:
    """Why nothing may be sent to this customer now (they opted out), or None."""
    if conv.customer.channel not in CHANNELS or not await p.redis.exists(opt_out_key(conv.customer.key)):
        return None
    from gateway.outbound import REFUSED  # here: the SLA clock reads keywords, and outbound imports it

    return f"{REFUSED}the customer opted out (texted STOP); they must text START first"
