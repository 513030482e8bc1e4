"""A card that is no longer in Slack gets a new one, and the customer's follow-up is threaded there.

A card deleted in Slack (or every card, when the local emulator restarted while Redis kept the
conversations) made each follow-up fail with `thread_not_found`: ten attempts held the customer's
partition for over a minute, then the message was parked with no card to say so in, and no agent saw it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import structlog
from slack_sdk.errors import SlackApiError

from gateway.domain import Conversation, Message
from gateway.effects import Effects

if TYPE_CHECKING:
    from gateway.pipeline import Pipeline

log = structlog.get_logger(__name__)

CARD_GONE = frozenset({"thread_not_found", "message_not_found", "channel_not_found", "is_archived"})
"""Slack's answers that mean the card (or its channel) will never be there to thread under."""


def card_gone(exc: BaseException) -> bool:
    return isinstance(exc, SlackApiError) and (exc.response.get("error") if exc.response else None) in CARD_GONE


async def thread_follow_up(p: Pipeline, conv: Conversation, message: Message, effects: Effects,
                           name: str | None = None) -> bool:
    """`post_in_thread` once per message (effect `name`, by default `msg:<id>`), re-posting the card first
    when it is gone; whether this call posted it."""

    async def post() -> str:
        try:
            return await p.desk.post_in_thread(conv, message)
        except SlackApiError as exc:
            if not card_gone(exc):
                raise
        await repost(p, conv, message, effects)
        return await p.desk.post_in_thread(conv, message)

    async def find(since: float) -> str | None:
        try:
            return await p.desk.find_in_thread(conv, message.id)
        except SlackApiError as exc:
            if card_gone(exc):
                return None
            raise

    _, posted = await effects.once(name or f"msg:{message.id}", post, find)
    return posted


async def repost(p: Pipeline, conv: Conversation, message: Message, effects: Effects) -> None:
    """A new card in the conversation's channel, with the whole transcript; the caller's final write saves
    where it is (and indexes its thread, so agents' replies there reach the customer)."""
    decision = conv.decision
    assert decision is not None and decision.channel, "a conversation with a card has a decision"
    tag = f"repost:{message.id}"
    gone = (conv.slack_channel, conv.card_ts)

    async def post() -> str:
        ref = await p.desk.post_card(conv, decision, tag=tag)
        return f"{ref.channel}|{ref.ts}"

    async def find(since: float) -> str | None:
        ref = await p.desk.find_card(conv, decision.channel or "", since, tag=tag)
        return f"{ref.channel}|{ref.ts}" if ref else None

    result, _ = await effects.once(tag, post, find, deferred=True)
    conv.slack_channel, conv.card_ts = result.split("|", 1)
    log.warning("card_reposted", conversation_id=conv.id, gone=f"{gone[0]}|{gone[1]}", ts=conv.card_ts,
                channel=decision.channel)
