"""A customer's words the card could not show are threaded in full under it.

A card holds 3,000 characters of transcript and 500 of any one message; the API and the widget take 4,000.
The end of a long first message (an order number, a phone number) was stored but shown nowhere in Slack.
"""

from __future__ import annotations

import structlog

from gateway.domain import Conversation, Message
from gateway.effects import Effects
from gateway.ports import AgentDesk

log = structlog.get_logger(__name__)


async def thread_what_the_card_cut(desk: AgentDesk, conv: Conversation, effects: Effects, card: str = "") -> None:
    """Once per message and card. Under a routed card the effect is a follow-up's (`msg:<id>`): the message is
    in that thread either way. A transferred card (`card`: its move's tag) has a thread of its own."""
    for message in desk.cut_in_card(conv):

        async def post(whole: Message = message) -> str:
            return await desk.post_in_thread(conv, whole)

        async def find(since: float, message_id: str = message.id) -> str | None:
            return await desk.find_in_thread(conv, message_id)

        _, posted = await effects.once(f"msg:{message.id}" + (f"@{card}" if card else ""), post, find)
        if posted:
            log.info("full_text_threaded", conversation_id=conv.id, message_id=message.id, chars=len(message.text))
