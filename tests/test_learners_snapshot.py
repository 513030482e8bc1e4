"""Snapshots: identical predictions after a round trip, bad blobs refused, one writer (sizes: test_learners_bounds)."""

from __future__ import annotations

import redis.asyncio as aioredis
from structlog.testing import capture_logs

from learners import snapshot
from learners.service import LearnerScorer
from learners.snapshot import RedisLock, SnapshotError, dump, load, new_learners, publish
from tests.test_learners_models import SKILLS, bitext

PROBES = ["I was charged twice, refund please", "where is my parcel?", "I can't log in to my account"]


def trained() -> dict[str, snapshot.TextLearner]:
    learners = new_learners()
    for text, label in bitext(400, seed=5):
        learners["skill"].learn_one(text, label)
        learners["sentiment"].learn_one(text, "negative" if "refund" in text else "neutral")
        learners["urgency"].learn_one(text, "urgent" in text or "now" in text)
        learners["automation"].learn_one({"text": text, "urgency": 0.2}, label != "billing")
    return learners


async def test_round_trip_through_redis_predicts_identically(redis: aioredis.Redis) -> None:
    learners = trained()
    lock = RedisLock(redis)
    assert await lock.acquire()
    version = await publish(redis, learners, lock)
    assert version == 1
    worker = LearnerScorer(min_labels=100)
    assert await worker.refresh(redis) is True
    assert await worker.refresh(redis) is False  # nothing newer
    local = LearnerScorer(learners, min_labels=100)
    for probe in PROBES:
        got, want = worker.score(probe, SKILLS), local.score(probe, SKILLS)
        assert got.skill == want.skill and got.sentiment == want.sentiment
        assert got.urgency == want.urgency and got.automation_success == want.automation_success
        assert got.versions["skill"] == "skill-v1"
    health = worker.health()
    assert health["skill"]["snapshot_version"] == 1 and health["skill"]["labels_seen"] == 400
    assert health["skill"]["snapshot_age_s"] is not None and health["skill"]["snapshot_age_s"] < 60


async def test_corrupt_snapshot_is_refused_and_previous_keeps_serving(redis: aioredis.Redis) -> None:
    learners = trained()
    lock = RedisLock(redis)
    assert await lock.acquire()
    await publish(redis, learners, lock)
    worker = LearnerScorer(min_labels=100)
    await worker.refresh(redis)
    before = worker.score(PROBES[0], SKILLS)

    learners["skill"].learn_one("one more refund", "billing")  # a newer model, so a new checksum to load
    good = dump(learners["skill"], 2)
    flipped = good[:-50] + bytes(b ^ 0xFF for b in good[-50:])
    await redis.hset(snapshot.SNAPSHOT_KEY, mapping={"version": 2, "skill": flipped})
    with capture_logs() as logs:
        assert await worker.refresh(redis) is False
    refused = [e for e in logs if e["event"] == "learner_snapshot_refused"]
    assert refused and refused[0]["learner"] == "skill" and "checksum" in refused[0]["reason"]
    after = worker.score(PROBES[0], SKILLS)
    assert after.skill == before.skill and after.versions["skill"] == "skill-v1"


def test_incompatible_blobs_are_refused_with_a_reason() -> None:
    learner = new_learners()["skill"]
    blob = dump(learner, 3)
    for bad, reason in [
        (b"garbage", "magic"),
        (blob.replace(b'"river": "0.', b'"river": "9.'), "river"),
        (blob.replace(b'"format": 1', b'"format": 2'), "format"),
    ]:
        try:
            load(bad, "skill")
        except SnapshotError as exc:
            assert reason in str(exc)
        else:
            raise AssertionError(f"{reason} blob was accepted")
    try:
        load(blob, "sentiment")
    except SnapshotError as exc:
        assert "expected 'sentiment'" in str(exc)
    else:
        raise AssertionError("a skill blob loaded as sentiment")


async def test_lock_prevents_a_second_writer(redis: aioredis.Redis) -> None:
    learners = new_learners()
    first, second = RedisLock(redis, ttl_ms=5000), RedisLock(redis, ttl_ms=5000)
    assert await first.acquire()
    assert not await second.acquire()
    with capture_logs() as logs:
        assert await publish(redis, learners, second) is None
    assert any(e["event"] == "learner_snapshot_refused_lock_not_held" for e in logs)
    assert await snapshot.current_version(redis) == 0  # nothing written
    assert await publish(redis, learners, first) is not None
    assert not await second.renew()
    await first.release()
    assert await second.acquire()

