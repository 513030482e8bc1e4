"""Agent replies on their way to the customer, with retries that never stall a partition.

Split from `gateway.pipeline` (the inbound side); both run in the worker on the same stream.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import structlog
from pydantic import ValidationError

from gateway import dead_letters, keys, reengage
from gateway.domain import AGENT_REPLY, NOTICE, ConversationState, Direction, Message
from gateway.effects import Effects, never_found
from gateway.retries import MAX_ATTEMPTS
from gateway.store import ConversationStore
from gateway.streams import Ack, delivery, note_entry

if TYPE_CHECKING:
    from gateway.pipeline import Pipeline

log = structlog.get_logger(__name__)


FAILED = "failed:"
"""Prefix of a send's result when the customer's channel did not take it (retried later)."""
REFUSED = "refused:"
"""Prefix when the provider refused it for good (`Delivery.permanent`): no retry."""


def reason(result: str) -> str:
    """What a failed or refused send's result says went wrong."""
    return result.split(":", 1)[-1]


class DeliveryFailed(RuntimeError):
    """The customer's channel did not take the message; the worker retries the entry."""


async def deliver(p: Pipeline, fields: Mapping[str, str]) -> None:
    """An agent's thread reply (or our own notice) on its way to the customer's channel.

    A failed delivery is reported once in the thread and raised, so the worker retries it with
    back-off; the message itself is already in the transcript and is never lost.
    """
    conv = await p.store.load(fields["conv"])
    if conv is None:
        log.error("outbound_for_missing_conversation", conversation_id=fields["conv"])
        return
    ref = fields["ref"]
    try:
        message = Message(
            id=f"{NOTICE if fields.get('kind') == 'notify' else AGENT_REPLY}{ref}", direction=Direction.OUTBOUND,
            channel=conv.customer.channel, text=fields["text"],
            author=fields.get("author") or "Support",
        )
    except ValidationError as exc:
        await _park_invalid(p, fields, exc)
        return
    effects = Effects(p.redis, keys.effects(conv.id))
    result, _ = await effects.once(f"out:{ref}", lambda: p._send(conv, message), never_found)
    if result == "delivered":
        await p._replan(conv)
        if conv.state is ConversationState.RESOLVED and fields.get("kind") == "agent_reply":
            await p.store.extend_closed(conv)
        if fields.get("slack_ts"):
            await effects.once(f"delivered:{ref}", lambda: _mark(p, fields, "white_check_mark"), never_found)
        log.info("reply_delivered", conversation_id=conv.id, ref=ref)
        return
    await p.redis.hdel(keys.effects(conv.id), f"out:{ref}")
    if result.startswith(REFUSED) and reason(result).startswith(reengage.WINDOW_CLOSED) and reengage.holds(
            p, conv, fields):
        held = await reengage.hold(p, conv, fields, effects)  # a template invites the customer back
        if held.ok:
            return
        result = f"{REFUSED if held.permanent else FAILED}{held.error}"
    why_not = reason(result)
    attempt = int(fields.get("attempt", "0")) + 1
    refused = result.startswith(REFUSED)
    if attempt >= MAX_ATTEMPTS or refused:
        why = f"refused ({why_not})" if refused else f"after {attempt} attempts ({why_not})"
        await p.desk.note_in_thread(
            conv, f"❌ Not delivered to the customer: {why}. The reply is in the transcript; reach the customer "
            "another way."
        )
        await dead_letters.park(p.redis, fields, why_not)
        log.error("reply_undeliverable", conversation_id=conv.id, ref=ref, attempts=attempt, error=why_not)
        return

    async def report() -> str:
        ts = await p.desk.note_in_thread(conv, f"⚠️ Not delivered to the customer yet ({why_not}); retrying.")
        return ts or "none"

    await effects.once(f"outfail:{ref}", report, never_found)
    if p.retries is None:
        raise DeliveryFailed(why_not)
    await p.retries.schedule(fields, attempt, p.store.stream_of(conv))
    log.warning("reply_delivery_failed", conversation_id=conv.id, ref=ref, attempt=attempt, error=why_not)


_INVALID: dict[str, Callable[[Mapping[str, Any]], str]] = {
    "string_too_long": lambda e: f"{len(e['input']):,} characters, the limit is {e['ctx']['max_length']:,}",
}
"""How a validation error reads in the thread, by pydantic's error type; the rest read as pydantic words
them. Never the input itself: it is the reply."""


def invalid(exc: ValidationError) -> str:
    """What makes a queued reply unsendable, in one line without its text."""
    error = exc.errors()[0]
    field = ".".join(str(x) for x in error["loc"])
    return f"{field}: {_INVALID.get(error['type'], lambda e: str(e['msg']))(error)}"


async def _park_invalid(p: Pipeline, fields: Mapping[str, str], exc: ValidationError) -> None:
    """A reply no retry can make sendable (queued before the Slack listener refused over-long replies, or put
    back by `dead replay`) is parked at once: ten attempts held the customer's partition for over a minute
    and then parked it anyway. The agent hears of it as of any parked reply (`dead_letters.tell`)."""
    why = f"not sendable, {invalid(exc)}"
    await dead_letters.park(p.redis, fields, why)
    log.error("reply_not_sendable", conversation_id=fields.get("conv"), ref=fields.get("ref"), error=why)
    try:
        await dead_letters.tell(p, fields, why)
    except Exception as told:  # parked and listed either way; the note is a courtesy
        log.warning("dead_letter_not_told", conversation_id=fields.get("conv"), error=dead_letters.summary(told))


async def report_undelivered(store: ConversationStore, conversation_id: str, channel: str, why: str) -> None:
    """A reply the provider took and later reported undelivered (a WhatsApp status): its ✅ only meant
    "queued", so the thread is told, through the customer's stream like any work on the conversation."""
    conv = await store.load(conversation_id)
    if conv is None:
        return
    text = f"❌ {channel} could not deliver a reply to the customer ({why}). Reach them another way."
    await store.enqueue(conv, note_entry(text))


async def note(p: Pipeline, fields: Mapping[str, str], ack: Ack | None = None) -> None:
    """Our own line in the card's thread, queued by the web process (which has no Slack of its own). Once: posted
    directly, a worker that died between the post and its acknowledgement posted it again on redelivery (a
    customer's rating twice in the thread). A note queued before notes had ids is posted as before."""
    snap = await p.store.snapshot(fields["conv"])
    conv = snap.conversation
    if conv is None:
        return
    note_id = fields.get("id")
    if note_id is None:
        await p.desk.note_in_thread(conv, fields["text"])
        return

    async def post() -> str:
        return await p.desk.note_in_thread(conv, fields["text"], note_id=note_id) or "no card"

    async def find(since: float) -> str | None:
        return await p.desk.find_in_thread(conv, note_id, field="note_id")

    fresh, since = delivery(ack, fields)  # a first delivery cannot have posted it; a redelivery or replay looks first
    effects = Effects(p.redis, keys.effects(conv.id), snap.effects, fresh=fresh, since=since)
    await effects.once(f"note:{note_id}", post, find)


async def _mark(p: Pipeline, fields: Mapping[str, str], emoji: str) -> str:
    """Cosmetic: a failed reaction must not make a delivered reply look undelivered (or retry it)."""
    try:
        await p.desk.mark_message(fields["slack_channel"], fields["slack_ts"], emoji)
    except Exception as exc:
        log.warning("delivery_mark_failed", slack_ts=fields.get("slack_ts"), error=repr(exc))
        return "unmarked"
    return emoji


async def requeue(p: Pipeline, fields: dict[str, str]) -> None:
    """A retry that is due goes back on the conversation's stream, behind newer work."""
    conv = await p.store.load(fields["conv"])
    if conv is not None:
        await p.store.enqueue(conv, {k: v for k, v in fields.items() if k not in ("conv", "customer")})
