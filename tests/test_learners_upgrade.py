"""Upgrades and crashes never cost learning: unreadable snapshots are kept, nothing is learned twice,
and one bad outcome does not stop the learner."""

from __future__ import annotations

import asyncio
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
import river
from structlog.testing import capture_logs

from gateway.domain import Outcome
from learners import snapshot
from learners.outcomes import FIELD, OUTCOMES_STREAM, parse_outcome, publish_outcome
from learners.process import GROUP, PARKED_STREAM, run_learner
from learners.snapshot import Ack, RedisLock, SnapshotError, dump, load, new_learners, publish
from tests.test_learners_models import bitext
from tests.test_learners_process import PROBE, fast, until, version_at_least
from tests.test_learners_snapshot import trained

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


async def pending(redis: aioredis.Redis) -> int:
    return int((await redis.xpending(OUTCOMES_STREAM, GROUP))["pending"])


async def labels_in_snapshot(redis: aioredis.Redis, name: str) -> int:
    return int(load((await snapshot.fetch(redis))[name], name).learner.tracker.labels_seen)


def test_river_pin_is_the_series_snapshots_accept() -> None:
    """Snapshots are refused across River minor versions, so an unpinned upgrade is a silent reset."""
    deps = tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]
    pin = next(d for d in deps if d.startswith("river"))
    major, minor = river.__version__.split(".")[:2]
    assert pin == f"river>={major}.{minor},<{major}.{int(minor) + 1}"


async def test_snapshot_from_another_river_is_kept_until_an_operator_releases_it(redis: aioredis.Redis) -> None:
    good = dump(trained()["skill"], 1)
    foreign = good.replace(f'"river": "{river.__version__}"'.encode(), b'"river": "0.25.3"')
    assert foreign != good
    await redis.hset(snapshot.SNAPSHOT_KEY, mapping={"version": 1, "skill": foreign})
    await redis.set(snapshot.SEQ_KEY, 1)
    cfg = fast("upgraded")
    cfg.claim_every_s = 0.05
    stop = asyncio.Event()
    with capture_logs() as logs:
        task = asyncio.create_task(run_learner(redis, stop=stop, config=cfg))
        try:
            await publish_outcome(
                redis, Outcome(conversation_id="u", kind="resolved", text=PROBE, final_skill="billing", mood="negative")
            )
            await until(await version_at_least(redis, 2))
            blobs = await snapshot.fetch(redis)
            assert blobs["skill"] == foreign  # 400 labels' worth of learning, not replaced by a fresh model
            assert await labels_in_snapshot(redis, "sentiment") == 1  # the other learners carry on
            assert await pending(redis) == 0

            await redis.hdel(snapshot.SNAPSHOT_KEY, "skill")  # the operator discards the unreadable model
            await until(lambda: _logged(logs, "learner_snapshot_released"))
            again = Outcome(conversation_id="v", kind="resolved", text=PROBE, final_skill="billing")
            await publish_outcome(redis, again)
            await until(lambda: redis.hexists(snapshot.SNAPSHOT_KEY, "skill"))
            assert await labels_in_snapshot(redis, "skill") == 1
        finally:
            stop.set()
            await asyncio.wait_for(task, 10)
    held = [e for e in logs if e["event"] == "learner_snapshot_held"]
    assert len(held) == 1 and held[0]["learner"] == "skill" and "river" in held[0]["reason"]
    assert "HDEL" in held[0]["action"]


async def _logged(logs: Sequence[Mapping[str, Any]], event: str) -> bool:
    return any(e["event"] == event for e in logs)


def test_snapshot_from_another_learner_schema_is_refused() -> None:
    learner = new_learners()["urgency"]
    blob = dump(learner, 1)
    schema = f'"schema": {snapshot.SCHEMA}'.encode()
    with pytest.raises(SnapshotError, match="schema"):
        load(blob.replace(schema, f'"schema": {snapshot.SCHEMA + 1}'.encode()), "urgency")
    # Written before the header had the field: read as schema 1 and converted (a no-op on this payload).
    legacy = blob.replace(schema + b", ", b"")
    assert legacy != blob and load(legacy, "urgency").version == 1
    del learner.tracker.log_drift  # what a pickle from the build before `log_drift` restores
    with pytest.raises(SnapshotError, match=r"tracker\.log_drift"):
        load(dump(learner, 1), "urgency")


async def test_poison_outcome_is_parked_and_learning_goes_on(redis: aioredis.Redis) -> None:
    poison = Outcome(  # a producer's bug: a skill "probability" that is not a number
        conversation_id="poison", kind="automation_handoff", text="help", predicted={"skill": {"billing": "high"}}
    )
    await publish_outcome(redis, poison)
    await publish_outcome(redis, Outcome(conversation_id="good", kind="resolved", text=PROBE, final_skill="billing"))
    stop = asyncio.Event()
    with capture_logs() as logs:
        task = asyncio.create_task(run_learner(redis, stop=stop, config=fast("poisoned")))
        try:
            published = await version_at_least(redis, 1)

            async def learned_or_died() -> bool:
                return task.done() or await published()

            await until(learned_or_died)
            assert not task.done(), task.exception()
            assert await labels_in_snapshot(redis, "skill") == 1
            assert await pending(redis) == 0
            parked: Any = await redis.xrange(PARKED_STREAM)
            assert len(parked) == 1
            record = parked[0][1]
            assert parse_outcome(record[FIELD.encode()])[0].conversation_id == "poison"
            assert b"ValueError" in record[b"error"]
        finally:
            stop.set()
            await asyncio.wait_for(task, 10)
    events = [e for e in logs if e["event"] == "outcome_parked"]
    assert len(events) == 1 and events[0]["conversation_id"] == "poison"


async def test_outcomes_in_a_snapshot_are_never_learned_again(redis: aioredis.Redis) -> None:
    # Leader A has read and learned three outcomes.
    await redis.xgroup_create(OUTCOMES_STREAM, GROUP, id="0", mkstream=True)
    for text, skill in bitext(3, seed=4):
        await publish_outcome(redis, Outcome(conversation_id="d", kind="resolved", text=text, final_skill=skill))
    reply: Any = await redis.xreadgroup(GROUP, "A", {OUTCOMES_STREAM: ">"}, count=10)
    entries = reply[0][1]
    learners = new_learners()
    for _id, fields in entries:
        outcome = parse_outcome(fields[FIELD.encode()])[0]
        assert outcome.final_skill is not None
        learners["skill"].learn_one(outcome.text, outcome.final_skill)
    ack = Ack(OUTCOMES_STREAM, GROUP, [entry_id for entry_id, _ in entries])

    assert await publish(redis, learners, RedisLock(redis), ack=ack) is None  # not the lock holder: nothing at all
    assert await pending(redis) == 3 and not await redis.hexists(snapshot.SNAPSHOT_KEY, "skill")

    lock_a = RedisLock(redis, ttl_ms=300)
    assert await lock_a.acquire()
    assert await publish(redis, learners, lock_a, ack=ack) is not None
    # A dies right here. The snapshot's one write acknowledged its entries: nothing is left to reclaim.
    assert await pending(redis) == 0

    stop = asyncio.Event()
    b = asyncio.create_task(run_learner(redis, stop=stop, config=fast("B", claim_idle_ms=0)))
    try:
        v = await snapshot.current_version(redis)
        await publish_outcome(redis, Outcome(conversation_id="e", kind="resolved", text=PROBE, final_skill="billing"))
        await until(await version_at_least(redis, v + 1))
        assert await labels_in_snapshot(redis, "skill") == 4  # 3 from A's snapshot + 1 new, none twice
    finally:
        stop.set()
        await asyncio.wait_for(b, 10)
