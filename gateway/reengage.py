"""WhatsApp after its 24-hour window: an approved template invites the customer back, and the agent's replies
wait for their answer instead of being refused.

WhatsApp takes free-form messages only within 24 hours of the customer's last one (`gateway.guards`), so an
agent answering the next day could not reach the customer at all. With a template configured for the customer's
sender (`WHATSAPP_REENGAGE_TEMPLATE`, `TWILIO_WHATSAPP_REENGAGE_CONTENT_SID`) the reply is held, the template goes
out, and the card's thread says so once. The customer's answer reopens the window and queues the held replies
behind it, in the order they were held, through the normal send path: opt-out and the other guards are asked
again, and a failure then takes the normal road (retries, dead letters, a note in the thread).

Only agent replies are held. The resolve notice is refused as before: a template asking the customer to answer
only to tell them their conversation is closed would be noise.

Held replies live in one sorted set per conversation (`keys.held_replies`): the queued entry's fields as JSON,
scored by when the agent sent them (the Slack ts). A redelivered entry adds the same member again, a no-op, so a
worker that died after holding a reply neither holds nor later delivers it twice. The set goes in the same MULTI
that queues its replies, so a crash never leaves a reply both queued and held, nor neither.

A template goes out when a reply is held and none went out for the replies already held in the last `AGAIN_S`:
one per wait, not one per reply (each is a paid, identical "we have an update" message, and customers block
senders that repeat themselves), yet a customer who let a whole day pass is asked once more when the agent adds
something, since the first may simply have been missed. Nothing is sent on a timer. Which held reply a template
went out for, and when, is read from the conversation's effect log (`reengage:<ref>`, the `Effects.once` record
that also keeps it from going out twice), so there is no round state to keep beside the held replies.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

import structlog

from gateway import keys
from gateway.domain import Conversation, ConversationState, Direction
from gateway.effects import Effects, never_found
from gateway.ports import Delivery, SendsTemplate
from gateway.redis_conn import as_str
from gateway.sla import sla_now
from router.sla import duration

if TYPE_CHECKING:
    from gateway.pipeline import Pipeline

log = structlog.get_logger(__name__)

WINDOW_CLOSED = "WhatsApp takes replies only within 24 h of the customer's last message"
"""How the window guard's refusal begins; a reply refused with it, and only it, may be held."""
AGAIN_S = 24 * 3600
"""A template is sent again for a newer reply only when the last one is this old and still unanswered."""
HELD_KINDS = frozenset({"agent_reply"})
TEMPLATE = "reengage:"
"""Effect name prefix: the template sent for the reply with this ref (its value: `sent:<time>:<provider id>`)."""
TOLD = "reengage_told:"
_SENT = "sent:"
_NOT_HELD = ("conv", "customer")
"""Written again when the reply is queued once more (the customer key may have changed meanwhile)."""


def last_heard(conv: Conversation) -> float | None:
    """When the customer last wrote (Unix time): WhatsApp's window counts from it."""
    return max((m.at.timestamp() for m in conv.messages if m.direction is Direction.INBOUND), default=None)


def _template_channel(p: Pipeline, conv: Conversation) -> SendsTemplate | None:
    channel = p.channels.get(conv.customer.channel)
    return channel if isinstance(channel, SendsTemplate) and channel.reengages(conv) else None


def holds(p: Pipeline, conv: Conversation, fields: Mapping[str, str]) -> bool:
    """Whether a reply the window refused waits for the customer instead (unset: refused, as before)."""
    return fields.get("kind", "agent_reply") in HELD_KINDS and _template_channel(p, conv) is not None


def _member(fields: Mapping[str, str]) -> str:
    """The same for every delivery of one queued entry, so holding it again adds nothing."""
    return json.dumps({k: v for k, v in fields.items() if k not in _NOT_HELD}, sort_keys=True, ensure_ascii=False)


def _order(fields: Mapping[str, str]) -> float:
    """When the agent sent it (its Slack ts): a reply whose template send failed once is held after replies sent
    later, and would have gone out after them in the order of holding.

    >>> _order({"slack_ts": "1796451997.465783", "ref": "1796451997.465783"})
    1796451997.465783
    """
    for name in ("slack_ts", "ref"):
        try:
            return float(fields.get(name, ""))
        except ValueError:
            continue
    return time.time()


def _sent_at(value: bytes | str | None) -> float | None:
    text = as_str(value) if value is not None else ""
    if not text.startswith(_SENT):
        return None
    try:
        return float(text.removeprefix(_SENT).split(":", 1)[0])
    except ValueError:
        return None


async def hold(p: Pipeline, conv: Conversation, fields: Mapping[str, str], effects: Effects) -> Delivery:
    """Hold a reply the window refused, sending the template first if this wait has none yet.

    Answers a failed delivery when the template did not go out: the reply then takes the normal failure path
    (retried, and held at the try that gets the template out; or, refused for good, parked and told), because a
    reply held with no template on its way would wait for an answer nobody asked for."""
    channel = _template_channel(p, conv)
    if channel is None:
        return Delivery(ok=False, error="no WhatsApp template configured", permanent=True)
    current = await p.redis.get(keys.customer_conversation(conv.customer.key))
    if current is not None and as_str(current) != conv.id:
        # Their answer would land in that newer conversation and these replies would wait here for ever.
        return Delivery(ok=False, permanent=True, error="the customer has a newer conversation: answer there")
    ref, key = fields["ref"], keys.held_replies(conv.id)
    held = [str(json.loads(as_str(raw)).get("ref", "")) for raw in await p.redis.zrange(key, 0, -1)]
    refs = [*dict.fromkeys([*held, ref])]
    stamps = await p.redis.hmget(keys.effects(conv.id), [f"{TEMPLATE}{r}" for r in refs])
    latest = max(((at, r) for r, raw in zip(refs, stamps, strict=True) if (at := _sent_at(raw)) is not None),
                 default=None)
    now = sla_now(p.sla)
    if latest is None or latest[1] == ref or now - latest[0] >= AGAIN_S:
        sent = await _send_template(p, conv, channel, ref, effects, now)
        if not sent.ok:
            return sent
        since = last_heard(conv)
        note = _note(None if since is None else now - since, again=latest is not None and latest[1] != ref)

        async def tell() -> str:
            return await p.desk.note_in_thread(conv, note) or "none"

        await effects.once(f"{TOLD}{ref}", tell, never_found)
    async with p.redis.pipeline(transaction=True) as pipe:
        pipe.zadd(key, {_member(fields): _order(fields)}, nx=True)
        # Found by their next message, wherever it lands; outlives the reopen window the hold just extended.
        pipe.set(keys.held_for(conv.customer.key), conv.id, ex=p.store.reopen_window_s + AGAIN_S)
        await pipe.execute()
    if conv.state is ConversationState.RESOLVED:  # the answer must land here, where the replies wait, not in a new one
        await p.store.extend_closed(conv)
    log.info("reply_held_for_whatsapp_window", conversation_id=conv.id, ref=ref, held=len(refs))
    return Delivery(ok=True)


async def _send_template(
    p: Pipeline, conv: Conversation, channel: SendsTemplate, ref: str, effects: Effects, now: float
) -> Delivery:
    """Once per wait (`Effects.once`); a failure is forgotten, so the reply's retry sends it again."""
    failed: list[Delivery] = []

    async def send() -> str:
        sent = await channel.send_template(conv, f"reengage-{ref}")
        if sent.ok:
            return f"{_SENT}{now:.3f}:{sent.external_id or ''}"
        failed.append(sent)
        return "failed"

    name = f"{TEMPLATE}{ref}"
    result, performed = await effects.once(name, send, never_found)
    if result.startswith(_SENT):
        if performed:
            log.info("whatsapp_template_sent", conversation_id=conv.id, ref=ref)
        return Delivery(ok=True)
    await p.redis.hdel(keys.effects(conv.id), name)
    why = failed[0] if failed else Delivery(ok=False, error="not sent")
    log.warning("whatsapp_template_not_sent", conversation_id=conv.id, ref=ref, error=why.error)
    return Delivery(ok=False, permanent=why.permanent,
                    error=f"the 24-hour window closed and the WhatsApp template did not go out: {why.error}")


def _note(since: float | None, again: bool) -> str:
    ago = f" (the customer last wrote {duration(since)} ago)" if since is not None else ""
    which = "another" if again else "an"
    return (f"⏳ WhatsApp's 24-hour window has closed{ago}, so {which} approved template went out inviting the "
            "customer to answer. Your reply, and any you send meanwhile, will be delivered as soon as they do.")


async def release(p: Pipeline, conv: Conversation, held_in: str) -> int:
    """The customer wrote, so the window is open: the replies held in `held_in` are queued behind their message,
    oldest first. Answers how many were queued.

    Queued, not sent from here: each goes through `gateway.outbound.deliver` like any reply, with its ids (the
    Slack thread's ✅), its guards (a STOP just now wins) and its retries.

    Their message may have started another conversation (it came after the held one's reopen window): the held
    replies belong to a thread the customer has left and are not sent; that thread is told so, with how many, so
    the agent answers under the new card instead of waiting for a delivery that will not come."""
    key = keys.held_replies(held_in)
    held = await p.redis.zrange(key, 0, -1)
    forget = p.redis.register_script(_FORGET_POINTER)
    if held_in != conv.id:
        await _stranded(p, held_in, len(held))
        async with p.redis.pipeline(transaction=True) as pipe:
            if held:  # only what was read: a reply held there meanwhile is told next time, not dropped unseen
                pipe.zrem(key, *held)
            await forget(keys=[keys.held_for(conv.customer.key)], args=[held_in], client=pipe)
            await pipe.execute()
        return 0
    async with p.redis.pipeline(transaction=True) as pipe:
        for raw in held:
            pipe.xadd(*p.store.entry(conv, dict(json.loads(as_str(raw)))))
        if held:
            pipe.zrem(key, *held)
        await forget(keys=[keys.held_for(conv.customer.key)], args=[conv.id], client=pipe)
        await pipe.execute()
    log.info("held_replies_released", conversation_id=conv.id, replies=len(held))
    return len(held)


_FORGET_POINTER = """
-- The customer's held-replies pointer, only if it still names this conversation (another may have taken it).
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
"""


async def _stranded(p: Pipeline, held_in: str, count: int) -> None:
    old = await p.store.load(held_in)
    if old is None or not count:
        return
    await p.desk.note_in_thread(
        old, f"⚠️ The customer wrote again, in a new conversation (this one's reopen window had passed): the {count} "
        "held repl" + ("y was" if count == 1 else "ies were") + " not sent. Answer under the new card.")
    log.warning("held_replies_stranded", conversation_id=held_in, replies=count)
