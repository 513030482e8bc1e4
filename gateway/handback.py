"""A conversation an agent handed back to the bot ("Back to bot") that needs a person again.

It keeps its card: the customer's message is threaded there (it always is), the card is redrawn waiting
for a claim and the channel is told. Posting a new card would leave two live cards for one customer,
and before this nothing happened at all: the message was threaded under a card nobody watched any more,
and the bot, which owned the conversation, never saw it.
"""

from __future__ import annotations

import structlog

from gateway.domain import BOT_ANSWER, Conversation, ConversationState, Decision, Direction, Message, is_bot_answer
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


def since_back_to_bot(conv: Conversation, message: Message) -> Conversation:
    """The conversation as routing judges `message`: whole, or from an agent's "Back to bot" on.

    Only a conversation the bot owns while it has a card was handed back (a card is posted waiting; the bot
    takes it over only through that button). The hand-back leaves no line in the transcript, so its place is
    found from what came after it: going back from `message`, every customer message the bot answered, and
    its answer, is the bot's turn; the first other line (an agent's reply, the hand-off notice, the message
    that brought the card) was there before. Judged whole, the first message's "I want a person" and the
    agent's own name sent every message after the hand-back straight back to a person."""
    if not conv.card_ts or conv.state is not ConversationState.AUTOMATED:
        return conv
    answered = {m.id.removeprefix(BOT_ANSWER) for m in conv.messages if is_bot_answer(m)}
    start = conv.messages.index(message)
    while start > 0:
        before = conv.messages[start - 1]
        if not (is_bot_answer(before) or (before.direction is Direction.INBOUND and before.id in answered)):
            break
        start -= 1
    return conv.model_copy(update={"messages": conv.messages[start:]})
