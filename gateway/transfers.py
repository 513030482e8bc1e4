"""A transferred conversation's new card, posted by the worker from the customer's partition stream.

Posted by the Slack listener, the new card raced the customer: a follow-up threaded while that Slack
call was in flight went under the old card, which nobody watches any more. On the stream, the move is
ordered with the customer's messages: every message queued before it is threaded under the old card
and shown in the new card's transcript, every message after it is threaded under the new card.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import structlog

from gateway import keys
from gateway.domain import ConversationState, RouteKind
from gateway.effects import Effects
from gateway.redis_conn import as_str
from gateway.streams import Ack

if TYPE_CHECKING:
    from gateway.pipeline import Pipeline

log = structlog.get_logger(__name__)

CARD_FIELDS = ("decision", "slack_channel", "card_ts")


async def move_card(p: Pipeline, fields: Mapping[str, str], ack: Ack | None) -> None:
    """Post the card in the new skill's channel, point the conversation at it, retire the old one.

    Exactly once like a routed card: the post is a deferred effect (found again by its metadata after
    a crash) and its result is written in the same MULTI as the stream ack."""
    conv_id, skill, ref = fields["conv"], fields["skill"], fields["ref"]
    snap = await p.store.snapshot(conv_id)
    conv = snap.conversation
    if conv is None or conv.decision is None:
        log.error("transfer_for_missing_conversation", conversation_id=conv_id, transfer=ref)
        return
    if conv.skill != skill or conv.state is ConversationState.RESOLVED:
        # A later transfer (its own entry comes next) or a resolve overtook this one.
        log.info("transfer_superseded", conversation_id=conv_id, transfer=ref, skill=conv.skill,
                 state=conv.state.value)
        return
    policy = await p.policies.for_conversation(conv.id)
    decision = conv.decision.model_copy(update={
        "route": RouteKind.HUMAN, "skill": skill, "channel": policy.route_for(skill).channel,
        "reasons": [f"transferred from {fields.get('from_skill') or 'another skill'} by an agent",
                    *conv.decision.reasons],
    })
    history = await p.identity.history(conv.customer.person_id, conv.id) if p.identity is not None else []
    redelivered = ack is None or ack.redelivered
    effects = Effects(p.redis, keys.effects(conv.id), snap.effects, fresh=not redelivered,
                      since=ack.queued_at if ack is not None and redelivered else None)

    async def post() -> str:
        card = await p.desk.post_card(conv, decision, history)
        return f"{card.channel}|{card.ts}"

    async def find(since: float) -> str | None:
        card = await p.desk.find_card(conv, decision.channel or "", since)
        return f"{card.channel}|{card.ts}" if card else None

    result, _ = await effects.once(f"transfer:{ref}", post, find, deferred=True)
    new_channel, new_ts = result.split("|", 1)
    notice = (f"➡️ Transferred to <#{new_channel}> by <@{fields.get('user', '')}> · "
              f"{_clock(ack)} (`{conv.id}`)")
    old = (conv.slack_channel, conv.card_ts)
    if old[1] and old[1] != new_ts:
        await p.desk.retire_card(old[0] or "", old[1], notice)  # before the ack: a failure retries it
    conv.decision, conv.slack_channel, conv.card_ts = decision, new_channel, new_ts
    async with p.redis.pipeline(transaction=True) as pipe:
        pipe.hmget(keys.conversation(conv.id), ["slack_channel", "card_ts"])
        at = p.store.stage_save(pipe, conv, *CARD_FIELDS)
        pipe.set(keys.thread(new_channel, new_ts), conv.id)
        effects.stage(pipe)
        if ack is not None:
            ack.stage(pipe)
        results = await pipe.execute()
    conv.version = int(results[at])
    if ack is not None:
        ack.done = True
    current = _card(results[0])
    if current[1] and current[1] not in (old[1], new_ts):
        # An SLA escalation replaced the card while this one was being posted; its buttons would act on
        # a card that no longer leads. Cosmetic past the commit, so a failure is only logged.
        try:
            await p.desk.retire_card(current[0] or "", current[1], notice)
        except Exception as exc:
            log.warning("transfer_retire_failed", conversation_id=conv.id, ts=current[1], error=repr(exc))
    log.info("conversation_transferred", conversation_id=conv.id, skill=skill, channel=decision.channel,
             ts=new_ts)


def _card(raw: list[Any]) -> tuple[str | None, str | None]:
    """(channel, ts) as stored: JSON strings, or null."""
    channel, ts = (None if v is None else json.loads(as_str(v)) for v in raw)
    return channel, ts


def _clock(ack: Ack | None) -> str:
    """When the agent transferred (the entry's time), not when the card got posted."""
    at = ack.queued_at if ack is not None else datetime.now(UTC).timestamp()
    return datetime.fromtimestamp(at, UTC).strftime("%H:%M UTC")
