"""A customer's rating after "How did we do?": a lone 1-5 while a rating is asked for is a rating, not a new
problem (no reopen); the web chat widget's own prompt answers through `widget_rating`.

Both ways of rating count the same: the conversation's `csat` (which the next card's "Earlier conversations"
shows), one outcome for stats (no learner: the resolve that asked for the rating taught it), and one "⭐" line in
the card's thread. A widget rating only ever reached a hash of its own, so the team never saw a web chat
customer's 1/5.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import redis.asyncio as aioredis
import structlog
from redis.exceptions import WatchError

from gateway import keys
from gateway.domain import Conversation, Direction, Message, Outcome
from gateway.effects import Effects, never_found
from gateway.redis_conn import as_str
from gateway.store import ConversationStore
from gateway.streams import note_entry
from learners.outcomes import publish_outcome, stage_outcome

if TYPE_CHECKING:
    from gateway.pipeline import Pipeline

log = structlog.get_logger(__name__)

_RATING = re.compile(r"^\s*([1-5])\s*(?:/\s*5)?\s*[.!]?\s*$")


def rating(text: str) -> int | None:
    m = _RATING.match(text)
    return int(m.group(1)) if m else None


ASK_S = 7 * 86400
"""How long a rating request stays open."""

WATCH_TRIES = 5
"""A conflicting write to the request (another tab rating, a new resolve asking again) retries the step: the
retry sees who won. Returning "not counted" at once discarded a rating that nothing had beaten."""


async def ask(redis: aioredis.Redis, conversation_id: str, request_id: str) -> None:
    """Open a rating request: until it is answered, a lone 1-5 from the customer is their rating."""
    await redis.set(keys.csat_asked(conversation_id), request_id, ex=ASK_S)


async def asked(p: Pipeline, conv: Conversation, message: Message, effects: Effects) -> bool:
    """A rating was asked for and not yet given, or this very message was recorded as one (a redelivery).

    A lone "2" with no question asked is the customer writing again, not a rating: it reopens the
    conversation. And a second "5" after the first is not a second rating."""
    if f"csat:{message.id}" in (effects.known or {}):
        return True
    return bool(await p.redis.exists(keys.csat_asked(conv.id)))


def thread_note(stars: int) -> str:
    """The card thread's line for a rating, however it was given. A widget comment is not quoted here: free text
    in a shared channel, kept instead with the rating (`sb:csat:<conv>`). The line says what the customer did, so
    an erasure deletes it, as every post of ours in the card's thread (`Eraser._erase_card` finds them by the
    card's bot, not by the `switchboard_message` tag this line does not carry)."""
    return f"⭐ The customer rated this conversation {stars}/5."


def rating_outcome(conv: Conversation, stars: int) -> Outcome:
    """The outcome a rating publishes, for stats, credited to the agent who had the card: a
    rating comes after Resolve, which drops the claim, so `claimed_by` alone credited nobody."""
    return Outcome(conversation_id=conv.id, kind="resolved", csat=stars, agent=conv.claimed_by or conv.agent)


async def record(p: Pipeline, conv: Conversation, message: Message, stars: int, effects: Effects) -> bool:
    """Whether this typed rating counted. The open request is taken in the step that stores the rating, as the
    widget's rating takes it (`widget_rating`): checked first and closed after the thread line, a widget click
    at the same instant counted too (two outcomes, two lines). A rating that lost is not a new problem either:
    it is in the transcript and reopens nothing."""
    name = f"csat:{message.id}"
    conv.csat = stars
    if name in (effects.known or {}):  # a redelivery: this message took the request before
        await p.store.save(conv, "csat")
    elif not await _take_request(p, conv, effects, name):
        log.info("csat_not_counted", conversation_id=conv.id, csat=stars, via="typed")
        return False

    async def once() -> str:
        await publish_outcome(p.redis, rating_outcome(conv, stars))
        await p.desk.note_in_thread(conv, thread_note(stars))
        thanks = Message(id=f"csat-{message.id}", direction=Direction.OUTBOUND, channel=conv.customer.channel,
                         text="Thank you for your rating!", author="Support")
        return await p._send(conv, thanks)

    await effects.once(name, once, never_found)
    log.info("csat_recorded", conversation_id=conv.id, csat=stars)
    return True


async def _take_request(p: Pipeline, conv: Conversation, effects: Effects, name: str) -> bool:
    """Store the rating, close the request and mark the rating's effects started, in one MULTI, only while the
    request is open."""
    asked = keys.csat_asked(conv.id)
    for _ in range(WATCH_TRIES):
        async with p.redis.pipeline(transaction=True) as pipe:
            try:
                await pipe.watch(asked)
                if not await pipe.exists(asked):
                    return False
                pipe.multi()
                at = p.store.stage_save(pipe, conv, "csat")
                effects.stage_pending(pipe, name)
                pipe.delete(asked)
                results = await pipe.execute()
            except WatchError:
                continue
        conv.version = int(results[at])
        return True
    return False


@dataclass(frozen=True)
class WidgetRated:
    """What became of a widget rating: whether this one `counted`, and the `score` the conversation keeps
    (this one, an earlier one, a typed one, or None when none was ever given)."""

    counted: bool
    score: int | None


async def widget_rating(redis: aioredis.Redis, conversation_id: str, stars: int, fields: dict[Any, Any]) -> WidgetRated:
    """The widget's own prompt answered, counted like a typed rating (see the module docstring), only while a
    rating is asked for, and once: a re-sent or second rating is not counted, and the answer says what is kept.

    This runs in the web process, which has no Slack: the thread line is queued as a `note` on the
    conversation's partition (behind the customer's messages) for a worker to post, in the same MULTI that
    stores the rating and closes the request, so it is queued exactly when the rating counts."""
    asked = keys.csat_asked(conversation_id)
    conv_key = keys.conversation(conversation_id)
    store = ConversationStore(redis, partitions=1)  # for its field writes only; the partition is read below
    for _ in range(WATCH_TRIES):
        async with redis.pipeline(transaction=True) as pipe:
            try:
                await pipe.watch(asked)  # two tabs rating at once: one wins
                if not await pipe.exists(asked):
                    break
                conv = ConversationStore.parse(await pipe.hgetall(conv_key), [])
                part = await pipe.get(keys.conversation_partition(conversation_id))
                pipe.multi()
                pipe.hset(f"{keys.PREFIX}csat:{conversation_id}", mapping=fields)
                if conv is None:  # a session that never wrote: no card, no thread; the outcome still counts
                    stage_outcome(pipe, Outcome(conversation_id=conversation_id, kind="resolved", csat=stars))
                else:
                    conv.csat = stars
                    store.stage_save(pipe, conv, "csat")
                    stage_outcome(pipe, rating_outcome(conv, stars))
                    _stage_note(pipe, conv, part, thread_note(stars))
                pipe.delete(asked)
                await pipe.execute()
            except WatchError:
                continue
        log.info("csat_recorded", conversation_id=conversation_id, csat=stars, via="widget")
        return WidgetRated(counted=True, score=stars)
    return WidgetRated(counted=False, score=await kept(redis, conversation_id))


async def kept(redis: aioredis.Redis, conversation_id: str) -> int | None:
    """The rating the conversation keeps: its `csat` (either way of rating sets it), else the widget's hash (a
    rating given before the two were one)."""
    raw = await redis.hget(keys.conversation(conversation_id), "csat")
    score = json.loads(raw) if raw is not None else None
    if score is None:
        stored = await redis.hget(f"{keys.PREFIX}csat:{conversation_id}", "score")
        score = int(as_str(stored)) if stored is not None else None
    return int(score) if score is not None else None


def _stage_note(pipe: Any, conv: Conversation, part: Any, text: str) -> None:
    """Queue the thread line on the partition the conversation's messages go to (what `ConversationStore.enqueue`
    does, with the partition the ingest recorded, since the web chat does not know the partition count)."""
    recorded = as_str(part) if part is not None else None
    partition = int(recorded) if recorded is not None else conv.partition
    if partition is None:  # stored before partitions were recorded; such a conversation has long been closed
        log.warning("csat_note_unqueued", conversation_id=conv.id)
        return
    pipe.xadd(keys.inbound_stream(partition), {"conv": conv.id, "customer": conv.customer.key, **note_entry(text)})
