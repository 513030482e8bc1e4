"""A transferred conversation's new card, posted by the worker from the customer's partition stream.

Posted by the Slack listener, the new card raced the customer: a follow-up threaded while that Slack
call was in flight went under the old card, which nobody watches any more. On the stream, the move is
ordered with the customer's messages: every message queued before it is threaded under the old card
and shown in the new card's transcript, every message after it is threaded under the new card.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import structlog
from redis.exceptions import WatchError

from gateway import keys
from gateway.desk_ops import agent_outcome
from gateway.domain import Conversation, ConversationState, Outcome, RouteKind
from gateway.effects import Effects
from gateway.full_text import thread_what_the_card_cut
from gateway.streams import Ack, delivery
from learners.outcomes import stage_outcome

if TYPE_CHECKING:
    from gateway.pipeline import Pipeline

log = structlog.get_logger(__name__)

CARD_FIELDS = ("decision", "slack_channel", "card_ts", "moving_ref")
NOT_NOW = (ConversationState.RESOLVED, ConversationState.AUTOMATED)


async def move_card(p: Pipeline, fields: Mapping[str, str], ack: Ack | None) -> None:
    """Post the card in the new skill's channel, point the conversation at it, then retire the old one.

    Exactly once like a routed card: the post is a deferred effect, found again after a crash by its
    tag (this transfer's ref) in the card's metadata, and its result is written in the same MULTI as the
    stream ack. The old card is retired by a queued `retire` entry in that MULTI: pointing the
    conversation at the new card first means an agent acting in between redraws the new card, not the
    one being retired, and a Slack failure while retiring is retried without moving anything twice."""
    conv_id, skill, ref = fields["conv"], fields["skill"], fields["ref"]
    tag = f"transfer:{ref}"
    snap = await p.store.snapshot(conv_id)
    conv = snap.conversation
    if conv is None or conv.decision is None:
        log.error("transfer_for_missing_conversation", conversation_id=conv_id, transfer=ref)
        return
    policy = await p.policies.routed_under(conv.id)
    channel = policy.route_for(skill).channel
    by = f"by <@{fields.get('user', '')}> · {_clock(ack)} (`{conv.id}`)"
    fresh, since = delivery(ack, fields)
    effects = Effects(p.redis, keys.effects(conv.id), snap.effects, fresh=fresh, since=since)
    if conv.skill != skill or conv.state in NOT_NOW or conv.decision.skill == skill:
        # Overtaken by a later transfer (its own entry comes next), a resolve or the bot, or already
        # there. A first attempt that crashed after posting left a card: it must not stay live.
        log.info("transfer_overtaken", conversation_id=conv_id, transfer=ref, skill=conv.skill,
                 state=conv.state.value)
        await _retire_orphan(p, conv, effects, tag, channel, f"➡️ Transfer to #{channel} overtaken {by}")
        return

    decision = conv.decision.model_copy(update={
        "route": RouteKind.HUMAN, "skill": skill, "channel": channel,
        "reasons": [f"transferred from {fields.get('from_skill') or 'another skill'} by an agent",
                    *conv.decision.reasons],
    })
    history = await p.identity.history(conv.customer.person_id, conv.id) if p.identity is not None else []

    async def post() -> str:
        card = await p.desk.post_card(conv, decision, history, tag=tag)
        return f"{card.channel}|{card.ts}"

    async def find(since: float) -> str | None:
        card = await p.desk.find_card(conv, channel, since, tag=tag)
        return f"{card.channel}|{card.ts}" if card else None

    result, _ = await effects.once(tag, post, find, deferred=True)
    new_channel, new_ts = result.split("|", 1)
    read_card = (conv.slack_channel, conv.card_ts)
    # Counted as a misroute (stats), but the skill is taught by the resolve, where the conversation ends up:
    # taught at each move, a chain (shipping → technical → billing) taught every stop for the same text, and the
    # learner cannot take a label back.
    label = agent_outcome(conv, "transferred", fields.get("user", ""), final_skill=skill,
                          correction=f"misrouted: really {skill}", skill_taught=True)
    conv.decision, conv.slack_channel, conv.card_ts, conv.moving_ref = decision, new_channel, new_ts, None
    await thread_what_the_card_cut(p, conv, effects, tag)  # the new card says its thread has them
    if await _commit(p, conv, skill, effects, ack, read_card, by, label):
        log.info("conversation_transferred", conversation_id=conv.id, skill=skill, channel=channel, ts=new_ts)
    else:
        log.info("transfer_overtaken_while_posting", conversation_id=conv.id, transfer=ref, ts=new_ts)


async def _commit(p: Pipeline, conv: Conversation, skill: str, effects: Effects, ack: Ack | None,
                  read_card: tuple[str | None, str | None], by: str, label: Outcome) -> bool:
    """Point the conversation at its new card and queue the old card's retirement, under WATCH: a resolve,
    a later transfer or the bot taking over while the card was being posted wins, and then the new card
    is the one retired. Either way the post's result and the stream ack are written, so it is not redone.

    The old cards are the one this move read and the one stored now (an SLA escalation may have
    re-posted it since)."""
    key = keys.conversation(conv.id)
    new = (conv.slack_channel, conv.card_ts)
    while True:
        try:
            async with p.redis.pipeline(transaction=True) as pipe:
                await pipe.watch(key)
                stored = p.store.parse(await pipe.hgetall(key), conv.messages)
                won = stored is not None and stored.skill == skill and stored.state not in NOT_NOW
                pipe.multi()
                at = -1
                if stored is not None and won:
                    at = p.store.stage_save(pipe, conv, *CARD_FIELDS)
                    stage_outcome(pipe, label)  # exactly once, with the ack: only a move that lands teaches
                    p.store.stage_card(pipe, conv)
                    for card in sorted({read_card, (stored.slack_channel, stored.card_ts)} - {new}, key=str):
                        if card[1]:
                            pipe.xadd(*p.store.entry(conv, retire_work(card, f"➡️ Transferred to <#{new[0]}> {by}")))
                    if p.sla is not None:
                        # A fresh ladder on the new card, from the conversation as it is now (claimed
                        # meanwhile, say). One planned at the click could fire on the old card while the
                        # move waited on Slack, and this move retires what it posted (an escalation):
                        # the customer's overdue steps run again here, where the conversation now is.
                        now = stored.model_copy(update={"decision": conv.decision, "slack_channel": new[0],
                                                        "card_ts": new[1]})
                        await p.sla.stage_replan(pipe, now, new_wait=True)
                else:
                    p.store.stage_listed(pipe, conv.id, new[0] or "", new[1] or "")
                    pipe.xadd(*p.store.entry(conv, retire_work(new, f"➡️ Transfer overtaken {by}")))
                effects.stage(pipe)
                if ack is not None:
                    ack.stage(pipe)
                results = await pipe.execute()
        except WatchError:
            continue  # written meanwhile (a claim, say): read again
        if won:
            conv.version = int(results[at])
        if ack is not None:
            ack.done = True
        return won


async def _retire_orphan(
    p: Pipeline, conv: Conversation, effects: Effects, tag: str, channel: str, notice: str
) -> None:
    """A card an earlier attempt posted before it crashed (its result never committed) loses its buttons."""
    if effects.since is None:
        return  # first delivery: nothing was posted for it yet
    card = await p.desk.find_card(conv, channel, effects.since, tag=tag)
    if card is not None and card.ts != conv.card_ts:
        await p.store.stage_listed(p.redis, conv.id, card.channel, card.ts)
        await p.desk.retire_card(card.channel, card.ts, notice)


def retire_work(card: tuple[str | None, str | None], text: str) -> dict[str, str]:
    return {"kind": "retire", "channel": card[0] or "", "ts": card[1] or "", "text": text}


async def retire(p: Pipeline, fields: Mapping[str, str], ack: Ack | None) -> None:
    """A card that no longer leads (moved by a transfer) loses its buttons; repeating it is harmless."""
    await p.desk.retire_card(fields["channel"], fields["ts"], fields["text"])
    await p.redis.set(keys.thread(fields["channel"], fields["ts"]), f"{keys.RETIRED}{fields['conv']}")
    log.info("card_retired", conversation_id=fields.get("conv"), channel=fields["channel"], ts=fields["ts"])


def _clock(ack: Ack | None) -> str:
    """When the agent transferred (the entry's time), not when the card got posted."""
    at = ack.queued_at if ack is not None else datetime.now(UTC).timestamp()
    return datetime.fromtimestamp(at, UTC).strftime("%H:%M UTC")
