"""A customer's message on a conversation that has a card: a rating, a reopen, or a line in the card's thread.

Messages that ask nothing (STOP or START, a WhatsApp reaction) are threaded too, but reopen nothing
(`is_reaction` here, and `Pipeline._thread_quietly`): followed up like any message, they reopened resolved
conversations for customers who had just unsubscribed, and a 👍 to our "resolved" message cost the open rating
question.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import structlog

from gateway import csat
from gateway.card_gone import thread_follow_up
from gateway.domain import ChannelKind, Conversation, ConversationState, Direction, Message
from gateway.effects import Effects, never_found
from integrations.whatsapp.payload import is_reaction_text

if TYPE_CHECKING:
    from gateway.pipeline import Pipeline

log = structlog.get_logger(__name__)


def is_reaction(message: Message) -> bool:
    """A WhatsApp reaction (👍 on one of our messages): shown to agents, but no request of its own."""
    return message.channel is ChannelKind.WHATSAPP and is_reaction_text(message.text)



async def follow_up(p: Pipeline, conv: Conversation, message: Message, effects: Effects) -> None:
    if message.direction is not Direction.INBOUND:
        return
    rating = csat.rating(message.text)
    if conv.state is ConversationState.RESOLVED and rating is not None and await csat.asked(p, conv, message,
                                                                                             effects):
        await csat.record(p, conv, message, rating, effects)
        return
    reopened = conv.state is ConversationState.RESOLVED
    if reopened:
        conv.state = ConversationState.WAITING
        conv.resolved_at = None
        await p.store.mark_open(conv)
        log.info("conversation_reopened", conversation_id=conv.id)

    await thread_follow_up(p, conv, message, effects)
    log.info("follow_up_threaded", conversation_id=conv.id, message_id=message.id)
    if reopened:

        async def announce() -> str:
            await p.desk.update_card(conv, "🔁 Reopened: the customer wrote again")
            ts = await p.desk.note_in_thread(
                conv, "🔁 The customer wrote again: this conversation is *reopened*.", broadcast=True
            )
            return ts or "none"

        await effects.once(f"reopen:{message.id}", announce, never_found)
