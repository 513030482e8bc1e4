"""Which outcomes teach the skill learner, and outcomes from a newer producer still teach an older learner."""

from __future__ import annotations

import asyncio
import json

import pytest
import redis.asyncio as aioredis

from gateway.domain import Outcome
from gateway.policy_store import PolicyStore
from learners import snapshot
from learners.outcomes import FIELD, OUTCOMES_STREAM, labels_of, parse_outcome, publish_outcome
from learners.process import GROUP, run_learner
from learners.service import LearnerScorer
from router.policy import load_policy
from tests.test_learners_process import fast, labels_reach, until, version_at_least

HANDOFF_REASONS = [
    "reopened within window",
    "customer asked for a human",
    "no confident answer (best 'refund' 0.31 < 0.45)",
    "urgency 0.91 ≥ 0.80",
    "keyword 'unacceptable'",
    "bot answer not delivered (timeout)",
    "misrouted: really billing",  # even a note that looks like a correction: a hand-off is not one
]


@pytest.mark.parametrize("reason", HANDOFF_REASONS)
def test_bot_handoff_reason_is_not_a_skill_label(reason: str) -> None:
    handoff = Outcome(
        conversation_id="c", kind="automation_handoff", text="where is my refund", automation_failed=True,
        correction=reason,
    )
    assert set(labels_of(handoff).pairs) == {"automation"}
    assert "skill" not in labels_of(handoff, {"billing", "window"}).pairs


def test_correction_must_name_a_policy_skill() -> None:
    def skill(note: str, skills: set[str] | None) -> object:
        outcome = Outcome(conversation_id="c", kind="correction", text="hi", correction=note)
        return labels_of(outcome, skills).pairs.get("skill", (None, None))[1]

    policy = {"billing", "shipping", "general"}
    assert skill("misrouted: really billing", policy) == "billing"
    assert skill("really billing, not sure", policy) == "billing"  # the last word naming a skill, not the last word
    assert skill("misrouted, see my notes", policy) is None
    assert skill("misrouted: really billing", None) == "billing"  # no policy readable: skill-shaped word


async def test_learner_only_learns_policy_skills(redis: aioredis.Redis) -> None:
    policy = load_policy()
    await PolicyStore(redis).bootstrap(policy)
    outcomes = [
        Outcome(conversation_id="h", kind="automation_handoff", text="my parcel is late", automation_failed=True,
                correction="reopened within window"),
        Outcome(conversation_id="x", kind="correction", text="my parcel is late", correction="misrouted: see notes"),
        Outcome(conversation_id="y", kind="correction", text="charged twice", correction="misrouted: really billing"),
    ]
    for outcome in outcomes:
        await publish_outcome(redis, outcome)
    stop = asyncio.Event()
    task = asyncio.create_task(run_learner(redis, stop=stop, config=fast("labels")))
    try:
        worker = LearnerScorer()
        await labels_reach(redis, worker, "automation", 1)
        await labels_reach(redis, worker, "skill", 1)
        await asyncio.sleep(0.2)  # every entry is read in the first batch; let a stray label show if any
        await worker.refresh(redis)
        assert worker.learner("skill").classes == ["billing"]
        assert worker.health()["skill"]["labels_seen"] == 1
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


def test_parse_outcome_ignores_fields_it_does_not_know() -> None:
    newer = {"conversation_id": "c", "kind": "resolved", "text": "hi", "final_skill": "billing", "channel": "sms"}
    outcome, unknown = parse_outcome(json.dumps(newer))
    assert outcome.final_skill == "billing" and unknown == ["channel"]
    with pytest.raises(ValueError):
        parse_outcome("[1, 2]")
    with pytest.raises(ValueError):
        parse_outcome(json.dumps({"kind": "resolved"}))  # no conversation id: not an outcome


async def test_outcome_from_a_newer_producer_is_learned(redis: aioredis.Redis) -> None:
    newer = {
        "conversation_id": "n", "kind": "resolved", "text": "I was charged twice", "final_skill": "billing",
        "mood": "negative", "sentiment_model": "v9", "queue_time_s": 12.5,
    }
    await redis.xadd(OUTCOMES_STREAM, {FIELD: json.dumps(newer)})
    stop = asyncio.Event()
    task = asyncio.create_task(run_learner(redis, stop=stop, config=fast("tolerant")))
    try:
        await until(await version_at_least(redis, 1))
        blobs = await snapshot.fetch(redis)
        assert snapshot.load(blobs["skill"], "skill").learner.tracker.labels_seen == 1
        assert snapshot.load(blobs["sentiment"], "sentiment").learner.tracker.labels_seen == 1
        assert (await redis.xpending(OUTCOMES_STREAM, GROUP))["pending"] == 0
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
