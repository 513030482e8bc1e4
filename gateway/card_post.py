"""A routed conversation's card: posted once, however often its entry is handled, and the customer told the wait.

The post is an effect (`Effects.once`, deferred into the pipeline's commit): an entry handled again after a crash
asks Slack, by message metadata, whether the card already exists before posting another.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

import structlog

from gateway.domain import Conversation, ConversationState, Decision, PastConversation
from gateway.effects import Effects
from gateway.faults import checkpoint
from gateway.full_text import thread_what_the_card_cut
from gateway.ports import shows_waiting
from router.sla import eta_minutes

if TYPE_CHECKING:
    from gateway.pipeline import Pipeline

log = structlog.get_logger(__name__)


async def post_card(
    p: Pipeline, conv: Conversation, decision: Decision, effects: Effects, history: list[PastConversation],
    suggested: str | None, now: datetime,
) -> None:
    """`now`: when the customer was handed to people (their message), for the wait the widget shows."""
    assert decision.channel is not None

    async def post() -> str:
        ref = await p.desk.post_card(conv, decision, history, suggested)
        await checkpoint("after_card_post", conversation_id=conv.id)
        return f"{ref.channel}|{ref.ts}"

    async def find(since: float) -> str | None:
        ref = await p.desk.find_card(conv, decision.channel or "", since)
        if ref is not None:
            return f"{ref.channel}|{ref.ts}"
        await retire_elsewhere(p, conv, decision, since)
        return None

    result, posted = await effects.once("card", post, find, deferred=True)
    conv.slack_channel, conv.card_ts = result.split("|", 1)
    await thread_what_the_card_cut(p, conv, effects)
    channel = p.channels.get(conv.customer.channel)
    if posted and shows_waiting(channel):
        policy = await p.policies.routed_under(conv.id)
        # The SLA clock's time, as the hand-off notice tells it: the bare target promised "about 15 minutes"
        # while the desk was closed until Monday.
        minutes = eta_minutes(policy, decision.skill, now)
        await channel.waiting(conv, minutes)
        log.info("customer_told_wait", conversation_id=conv.id, eta_minutes=minutes)
    if conv.state in (ConversationState.NEW, ConversationState.AUTOMATED):
        conv.state = ConversationState.WAITING
    if not posted:
        log.info("card_already_posted", conversation_id=conv.id, ts=conv.card_ts)


async def retire_elsewhere(p: Pipeline, conv: Conversation, decision: Decision, since: float) -> None:
    """A card an earlier attempt posted where that attempt routed, which this one does not (a new model snapshot
    or a lead's change in between): retired, so the conversation has one live card. Looked for only in the
    decision's channel, it stayed live with Claim buttons and no thread index beside the new one. Only the
    channels the policy routes to are searched (one history call each, on a redelivery only): a card in a
    channel the policy dropped meanwhile is not found."""
    policy = await p.policies.routed_under(conv.id)
    for name in policy.channels():
        if name == decision.channel:
            continue
        try:
            ref = await p.desk.find_card(conv, name, since)
        except Exception as exc:  # a channel the bot cannot read: nothing of ours can be there
            log.info("card_search_skipped", conversation_id=conv.id, channel=name, error=repr(exc)[:200])
            continue
        if ref is not None:
            await p.desk.retire_card(ref.channel, ref.ts, f"Moved: this conversation is routed to #{decision.channel} "
                                     "now (it was routed again after a restart).")
            log.warning("card_retired_after_reroute", conversation_id=conv.id, channel=name, to=decision.channel)
