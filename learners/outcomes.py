"""Outcome events on the `sb:outcomes` stream and what each one teaches each learner.

One event can carry labels for several learners (an agent resolving a conversation confirms the
skill, the mood and the urgency at once); `labels_of` is the single place that decides which.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from gateway.domain import Outcome
from learners.automation import automation_input
from learners.urgency import urgency_target

OUTCOMES_STREAM = "sb:outcomes"
FIELD = "data"
STREAM_MAXLEN = 1_000_000
"""Approximate cap so an unattended stream cannot fill Redis; far more than a snapshot interval."""

_SKILL = re.compile(r"[a-z][a-z0-9_-]{0,39}")
"""A policy skill name's shape (router.policy.SkillName)."""


def stage_outcome(pipe: Any, outcome: Outcome) -> None:
    """`publish_outcome` on a caller's MULTI, for an outcome that must be published with other writes."""
    pipe.xadd(OUTCOMES_STREAM, {FIELD: outcome.model_dump_json()}, maxlen=STREAM_MAXLEN, approximate=True)


async def publish_outcome(redis: aioredis.Redis, outcome: Outcome) -> str:
    """XADD the outcome for the learner process; returns the stream entry id."""
    entry_id = await redis.xadd(
        OUTCOMES_STREAM, {FIELD: outcome.model_dump_json()}, maxlen=STREAM_MAXLEN, approximate=True
    )
    return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)


def parse_outcome(raw: bytes | str) -> tuple[Outcome, list[str]]:
    """Read one stream entry, ignoring fields this build does not know; returns them for the log.

    `Outcome` forbids unknown fields (right for producers, which must not misspell one), but during a
    rolling deploy a newer gateway adds fields an older learner has never heard of; refusing the whole
    outcome would throw away the labels it does understand. Raises ValueError (pydantic's
    ValidationError included) for an entry that is not an outcome at all.
    """
    data = json.loads(raw)
    if not isinstance(data, dict):
        raise ValueError(f"outcome is a JSON {type(data).__name__}, not an object")
    unknown = sorted(k for k in data if k not in Outcome.model_fields)
    for key in unknown:
        del data[key]
    return Outcome.model_validate(data), unknown


def corrected_skill(correction: str, skills: Collection[str] | None = None) -> str | None:
    """ "misrouted: really billing" -> "billing": the last word of the agent's note naming a skill.

    With `skills` (the policy's), only those count, so a note like "really billing, not sure" still finds
    billing and one naming no skill teaches nothing. Without them (no policy readable) the last
    skill-shaped word is taken, as the note's author is an agent writing a correction.
    """
    found = _SKILL.findall(correction.strip().lower())
    if skills is not None:
        found = [w for w in found if w in skills]
    return found[-1] if found else None


@dataclass(frozen=True)
class Labels:
    """Per-learner (input, label) pairs one outcome provides; absent learners learn nothing."""

    pairs: dict[str, tuple[Any, Any]]


def labels_of(outcome: Outcome, skills: Collection[str] | None = None) -> Labels:
    """`skills`: the skills a correction note may name (the policy's); None = any skill-shaped word.

    A customer's rating (`csat`, published by `gateway.csat` with no text) teaches no learner, on purpose.
    A rating is only ever asked for when an agent resolves a conversation (the Resolve form's "ask for a
    rating"), so it grades a person's handling of it, after the fact:
    - skill: the resolve that asked for it already taught the skill the conversation ended on; a 1/5 after
      the right team handled it is not a routing mistake.
    - sentiment and urgency: they score the customer's messages, which the agent labelled on that resolve;
      a calm customer unhappy with the answer did not write a "negative" message.
    - automation: the bot did not end the conversation, a person did. If the bot had answered and the
      customer needed a person after all, that was labelled as the bot's failure when it handed off or the
      customer came back; a bot that never tried gives no evidence either way (as on a resolve).
    So ratings feed the stats (`/switchboard stats`, the next card's "Earlier conversations"), not the models.
    """
    text = outcome.text.strip()
    if not text:
        return Labels({})
    pairs: dict[str, tuple[Any, Any]] = {}
    skill = outcome.final_skill
    # `correction` is a free-text note on other kinds too: a bot hand-off stores its reason there
    # ("reopened within window", "customer asked for a human"), which names no skill at all.
    if not skill and outcome.kind == "correction" and outcome.correction:
        skill = corrected_skill(outcome.correction, skills)
    if skill and not outcome.skill_taught:  # a resolve confirming a transfer's label adds no second one
        pairs["skill"] = (text, skill)
    if outcome.mood:
        pairs["sentiment"] = (text, outcome.mood)
    if outcome.urgency is not None:
        # The figure itself: "high" (0.75) must not teach the same as "urgent" (1.0), see `learners.urgency`.
        pairs["urgency"] = (text, urgency_target(outcome.urgency))
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
