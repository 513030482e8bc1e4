"""A customer's words the card could not show are threaded in full under it.

A card holds 3,000 characters of transcript and 500 of any one message; the API and the widget take 4,000.
The end of a long first message (an order number, a phone number) was stored but shown nowhere in Slack.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import structlog

from gateway.card_gone import thread_follow_up
from gateway.domain import Conversation
from gateway.effects import Effects

if TYPE_CHECKING:
    from gateway.pipeline import Pipeline

log = structlog.get_logger(__name__)


async def thread_what_the_card_cut(p: Pipeline, conv: Conversation, effects: Effects, card: str = "") -> None:
    """Once per message and card. Under a routed card the effect is a follow-up's (`msg:<id>`): the message is
    in that thread either way. A transferred card (`card`: its move's tag) has a thread of its own."""
    for message in p.desk.cut_in_card(conv):
        name = f"msg:{message.id}" + (f"@{card}" if card else "")
        if await thread_follow_up(p, conv, message, effects, name):
            log.info("full_text_threaded", conversation_id=conv.id, message_id=message.id, chars=len(message.text))
