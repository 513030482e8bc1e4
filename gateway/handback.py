"""A conversation an agent handed back to the bot ("Back to bot") that needs a person again.

It keeps its card: the customer's message is threaded there (it always is), the card is redrawn waiting
for a claim and the channel is told. Posting a new card would leave two live cards for one customer,
and before this nothing happened at all: the message was threaded under a card nobody watched any more,
and the bot, which owned the conversation, never saw it.
"""

from __future__ import annotations

import structlog

from gateway.domain import Conversation, ConversationState, Decision, Message
from gateway.effects import Effects, never_found
from gateway.ports import AgentDesk
from integrations.slack.escape import escape

log = structlog.get_logger(__name__)


async def to_people(desk: AgentDesk, conv: Conversation, decision: Decision, effects: Effects,
                    message: Message) -> None:
    conv.state = ConversationState.WAITING
    reason = escape(decision.reasons[0] if decision.reasons else "the bot handed it over")

    async def announce() -> str:
        await desk.update_card(conv, f"🙋 Back from the bot: {reason}")
        ts = await desk.note_in_thread(conv, f"🙋 The customer needs a person again ({reason}).", broadcast=True)
        return ts or "none"

    await effects.once(f"back:{message.id}", announce, never_found)
    log.info("conversation_back_from_bot", conversation_id=conv.id, reason=reason)
