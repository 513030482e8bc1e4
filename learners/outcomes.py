"""Outcome events on the `sb:outcomes` stream and what each one teaches each learner.

One event can carry labels for several learners (an agent resolving a conversation confirms the
skill, the mood and the urgency at once); `labels_of` is the single place that decides which.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from gateway.domain import Outcome
from learners.automation import automation_input
from learners.urgency import urgent_label

OUTCOMES_STREAM = "sb:outcomes"
FIELD = "data"
STREAM_MAXLEN = 1_000_000
"""Approximate cap so an unattended stream cannot fill Redis; far more than a snapshot interval."""

_SKILL = re.compile(r"[a-z][a-z0-9_-]{0,39}")


async def publish_outcome(redis: aioredis.Redis, outcome: Outcome) -> str:
    """XADD the outcome for the learner process; returns the stream entry id."""
    entry_id = await redis.xadd(
        OUTCOMES_STREAM, {FIELD: outcome.model_dump_json()}, maxlen=STREAM_MAXLEN, approximate=True
    )
    return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)


def corrected_skill(correction: str) -> str | None:
    """ "misrouted: really billing" -> "billing": the last skill-shaped word of the agent's note."""
    found = _SKILL.findall(correction.strip().lower())
    return found[-1] if found else None


@dataclass(frozen=True)
class Labels:
    """Per-learner (input, label) pairs one outcome provides; absent learners learn nothing."""

    pairs: dict[str, tuple[Any, Any]]


def labels_of(outcome: Outcome) -> Labels:
    text = outcome.text.strip()
    if not text:
        return Labels({})
    pairs: dict[str, tuple[Any, Any]] = {}
    skill = outcome.final_skill
    if not skill and outcome.correction:
        skill = corrected_skill(outcome.correction)
    if skill:
        pairs["skill"] = (text, skill)
    if outcome.mood:
        pairs["sentiment"] = (text, outcome.mood)
    if outcome.urgency is not None:
        pairs["urgency"] = (text, urgent_label(outcome.urgency))
    # Only the bot's own outcomes say it succeeded; `automation_failed=False` on a human resolution
    # means the bot never tried, which is no evidence either way.
    success: bool | None = None
    if outcome.kind == "automation_resolved":
        success = True
    elif outcome.kind == "automation_handoff" or outcome.automation_failed:
        success = False
    if success is not None:
        pairs["automation"] = (automation_input(text, outcome.predicted), success)
    return Labels(pairs)
