"""`switchboard train` publishes no drift alarm of its own, so a warm start posts no "📉 Drift alarm" to the leads.

A drift alarm means live accuracy got worse. Replaying a history file raises alarms that mean nothing of the
kind (a file sorted by category, or one whose later rows were labelled by another scheme), and `train` only
silenced their log line: the count went into the snapshot, and once serve loaded it the model watcher
announced the increase ("📉 Drift alarm on the *skill* model (1 new, rolling accuracy 0.99)").
"""

from __future__ import annotations

import asyncio
import csv
import random
from pathlib import Path

import pytest
import redis as syncredis
import redis.asyncio as aioredis

from integrations.slack.commands.home import advance
from learners import commands, snapshot
from learners.service import LearnerScorer
from learners.skill import SkillLearner
from tests.test_learners_models import bitext

LIVE_ALARMS = 2


def relabelled_history(tmp_path: Path) -> Path:
    """400 rows labelled as the live desk does, then 200 from an era with other categories: ADWIN alarms."""
    rows = bitext(1000, seed=3)
    later = [skill for _, skill in rows[400:600]]
    random.Random(0).shuffle(later)
    path = tmp_path / "tickets.csv"
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["text", "skill"])
        w.writerows(rows[:400])
        w.writerows((text, skill) for (text, _), skill in zip(rows[400:600], later, strict=True))
    return path


async def _seed(url: str) -> None:
    """A live skill model that has raised `LIVE_ALARMS` real alarms, already announced."""
    redis = aioredis.from_url(url)
    try:
        learner = SkillLearner()
        learner.learn_one("my invoice is wrong", "billing")
        learner.tracker.drift_alarms = LIVE_ALARMS
        lock = snapshot.RedisLock(redis)
        assert await lock.acquire()
        assert await snapshot.publish(redis, {"skill": learner}, lock) == 1
        await lock.release()
    finally:
        await redis.aclose()


async def _health(url: str) -> dict[str, dict[str, object]]:
    redis = aioredis.from_url(url)
    try:
        scorer = LearnerScorer()
        await scorer.refresh(redis)
        return scorer.health()
    finally:
        await redis.aclose()


def test_a_warm_start_announces_no_drift(
    sync_redis: syncredis.Redis, redis_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    asyncio.run(_seed(redis_url))
    announced, _ = advance({}, asyncio.run(_health(redis_url)))  # what the leads were last told: the baseline
    rc = commands.main(["train", str(relabelled_history(tmp_path)), "--label-column", "skill", "--learner", "skill",
                        "--redis-url", redis_url])
    out = capsys.readouterr().out
    assert rc == 0
    assert "(replay raised 0," not in out  # the file really raised alarms: the case under test
    health = asyncio.run(_health(redis_url))
    assert health["skill"]["labels_seen"] == 601 and health["skill"]["snapshot_version"] == 2
    assert health["skill"]["drift_alarms"] == LIVE_ALARMS
    assert f"drift_alarms={LIVE_ALARMS} (replay raised" in out
    _, lines = advance(announced, health)
    assert not [line for line in lines if "Drift alarm" in line], lines
