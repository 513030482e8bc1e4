"""A customer's rating after "How did we do?": a lone 1-5 while a rating is asked for is a rating, not a new
problem (no reopen); the web chat widget's own prompt answers through `widget_rating`."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import redis.asyncio as aioredis
import structlog
from redis.exceptions import WatchError

from gateway import keys
from gateway.domain import Conversation, Direction, Message, Outcome
from gateway.effects import Effects, never_found
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


async def record(p: Pipeline, conv: Conversation, message: Message, stars: int, effects: Effects) -> None:
    conv.csat = stars
    await p.store.save(conv, "csat")

    async def once() -> str:
        outcome = Outcome(conversation_id=conv.id, kind="resolved", csat=stars, agent=conv.claimed_by)
        await publish_outcome(p.redis, outcome)
        await p.desk.note_in_thread(conv, f"⭐ The customer rated this conversation {stars}/5.")
        thanks = Message(id=f"csat-{message.id}", direction=Direction.OUTBOUND, channel=conv.customer.channel,
                         text="Thank you for your rating!", author="Support")
        return await p._send(conv, thanks)

    await effects.once(f"csat:{message.id}", once, never_found)
    await p.redis.delete(keys.csat_asked(conv.id))
    log.info("csat_recorded", conversation_id=conv.id, csat=stars)


async def widget_rating(redis: aioredis.Redis, conversation_id: str, stars: int, fields: dict[Any, Any]) -> bool:
    """The widget's own prompt answered: the rating is stored and published as an outcome (so stats and the
    learners see it, which they never did) in one step, only while a rating is asked for, and once.
    Returns whether it counted."""
    asked = keys.csat_asked(conversation_id)
    async with redis.pipeline(transaction=True) as pipe:
        try:
            await pipe.watch(asked)  # two tabs rating at once: one wins
            if not await pipe.exists(asked):
                return False
            pipe.multi()
            pipe.hset(f"{keys.PREFIX}csat:{conversation_id}", mapping=fields)
            stage_outcome(pipe, Outcome(conversation_id=conversation_id, kind="resolved", csat=stars))
            pipe.delete(asked)
            await pipe.execute()
        except WatchError:
            return False
    log.info("csat_recorded", conversation_id=conversation_id, csat=stars, via="widget")
    return True
