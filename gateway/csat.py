"""A customer's rating after "How did we do?": a lone 1-5 is a rating, not a new problem (no reopen)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import structlog

from gateway.domain import Conversation, Direction, Message, Outcome
from gateway.effects import Effects
from gateway.outbound import never_found
from learners.outcomes import publish_outcome

if TYPE_CHECKING:
    from gateway.pipeline import Pipeline

log = structlog.get_logger(__name__)

_RATING = re.compile(r"^\s*([1-5])\s*(?:/\s*5)?\s*[.!]?\s*$")


def rating(text: str) -> int | None:
    m = _RATING.match(text)
    return int(m.group(1)) if m else None


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
    log.info("csat_recorded", conversation_id=conv.id, csat=stars)
