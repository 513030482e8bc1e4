"""The learner process end to end on a real Redis, and the train/evaluate commands."""

from __future__ import annotations

import asyncio
import csv
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import redis.asyncio as aioredis

from gateway.domain import Outcome
from learners import snapshot
from learners.outcomes import OUTCOMES_STREAM, labels_of, publish_outcome
from learners.process import GROUP, LearnerConfig, run_learner
from learners.service import LearnerScorer
from learners.skill import SkillLearner
from tests.test_learners_models import DATA, SKILLS, bitext, read

PROBE = "I got charged twice for the same invoice"


def skill_of(worker: LearnerScorer) -> SkillLearner:
    learner = worker.learner("skill")
    assert isinstance(learner, SkillLearner)
    return learner


def fast(consumer: str, claim_idle_ms: int = 60_000) -> LearnerConfig:
    """Tight timings so the tests run in well under a second each; one snapshot per batch."""
    return LearnerConfig(
        consumer=consumer,
        block_ms=50,
        snapshot_every=1,
        standby_poll_s=0.05,
        lock_ttl_ms=3000,
        claim_idle_ms=claim_idle_ms,
    )


async def until(check: Callable[[], Awaitable[object]], within: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


async def version_at_least(redis: aioredis.Redis, v: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return await snapshot.current_version(redis) >= v

    return check


async def labels_reach(redis: aioredis.Redis, worker: LearnerScorer, name: str, n: int) -> None:
    async def check() -> bool:
        await worker.refresh(redis)
        return bool(worker.health()[name]["labels_seen"] >= n)

    await until(check)


async def test_outcome_event_changes_the_next_prediction(redis: aioredis.Redis) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(run_learner(redis, stop=stop, config=fast("l1")))
    try:
        for text, skill in bitext(50, seed=11):
            await publish_outcome(
                redis,
                Outcome(
                    conversation_id="c", kind="resolved", text=text, final_skill=skill, mood="neutral", urgency=0.1
                ),
            )
        worker = LearnerScorer(min_labels=1)
        await labels_reach(redis, worker, "skill", 50)
        before = skill_of(worker).distribution(PROBE, SKILLS)["billing"]
        for _ in range(3):  # the agent corrects three misrouted conversations like the probe
            await publish_outcome(
                redis,
                Outcome(
                    conversation_id="c2",
                    kind="correction",
                    text=PROBE,
                    correction="misrouted: really billing",
                    urgency=0.9,
                    predicted={"skill": {"orders": 0.7, "billing": 0.3}},
                ),
            )
        await publish_outcome(redis, Outcome(conversation_id="c3", kind="automation_handoff", text=PROBE))
        await labels_reach(redis, worker, "automation", 1)
        after = skill_of(worker).distribution("charged twice on my invoice", SKILLS)["billing"]
        assert after > before + 0.05, (before, after)
        health = worker.health()
        assert health["skill"]["labels_seen"] == 53 and health["urgency"]["labels_seen"] == 53
        pending = await redis.xpending(OUTCOMES_STREAM, GROUP)
        assert pending["pending"] == 0  # every learned entry was acknowledged
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def test_standby_never_writes_and_takes_over_a_dead_consumers_entries(redis: aioredis.Redis) -> None:
    # A crashed learner read two entries and died before acknowledging them.
    await redis.xgroup_create(OUTCOMES_STREAM, GROUP, id="0", mkstream=True)
    for text, skill in bitext(2, seed=2):
        await publish_outcome(redis, Outcome(conversation_id="d", kind="resolved", text=text, final_skill=skill))
    await redis.xreadgroup(GROUP, "dead", {OUTCOMES_STREAM: ">"}, count=10)

    stop_a, stop_b = asyncio.Event(), asyncio.Event()
    a = asyncio.create_task(run_learner(redis, stop=stop_a, config=fast("a", claim_idle_ms=0)))
    await until(lambda: redis.exists(snapshot.LOCK_KEY))
    b = asyncio.create_task(run_learner(redis, stop=stop_b, config=fast("b", claim_idle_ms=0)))
    try:
        await until(await version_at_least(redis, 1))
        for text, skill in bitext(3, seed=3):
            await publish_outcome(redis, Outcome(conversation_id="d", kind="resolved", text=text, final_skill=skill))
        await asyncio.sleep(0.5)
        consumers = {c["name"].decode(): c for c in await redis.xinfo_consumers(OUTCOMES_STREAM, GROUP)}
        assert "b" not in consumers  # the standby never even read from the group
        assert (await redis.xpending(OUTCOMES_STREAM, GROUP))["pending"] == 0  # dead's entries reclaimed + acked
        worker = LearnerScorer()
        await worker.refresh(redis)
        assert worker.health()["skill"]["labels_seen"] == 5

        stop_a.set()  # the leader goes away; the standby resumes from its snapshot
        await asyncio.wait_for(a, 10)
        await until(lambda: redis.exists(snapshot.LOCK_KEY))
        await publish_outcome(redis, Outcome(conversation_id="d", kind="resolved", text=PROBE, final_skill="billing"))
        v = await snapshot.current_version(redis)
        await until(await version_at_least(redis, v + 1))
        await worker.refresh(redis)
        assert worker.health()["skill"]["labels_seen"] == 6
    finally:
        stop_a.set()
        stop_b.set()
        await asyncio.wait_for(asyncio.gather(a, b), 10)


def slice_csv(path: Path, rows: list[tuple[str, str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["text", "category"])
        w.writerows(rows)
    return path


def test_evaluate_cli_prints_holdout_last(tmp_path: Path) -> None:
    rows = [(r["text"], r["category"]) for r in read("banking77/train.csv")]
    train = slice_csv(tmp_path / "train.csv", rows[::5])  # 2,000 rows across all 77 intents
    test = slice_csv(tmp_path / "test.csv", rows[2::25])
    report = tmp_path / "report.html"
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "learners.commands",
            "evaluate",
            str(train),
            "--test",
            str(test),
            "--text-column",
            "text",
            "--label-column",
            "category",
            "--shuffle",
            "--seed",
            "1",
            "--report",
            str(report),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    lines = out.stdout.strip().splitlines()
    assert lines[-1].startswith("holdout_accuracy=")
    assert float(lines[-1].split("=")[1]) > 0.4
    assert any(line.startswith("after 500: accuracy=") for line in lines)
    assert any(line.startswith("after 1000: accuracy=") for line in lines)
    assert "<svg" in report.read_text() and "polyline" in report.read_text()
    assert "evaluate [" in out.stderr  # progress bar


async def test_train_cli_publishes_a_warm_snapshot(redis: aioredis.Redis, redis_url: str, tmp_path: Path) -> None:
    rows = sorted(read("airline_tweets/tweets.csv"), key=lambda r: r["tweet_created"])[:600]
    path = tmp_path / "tickets.csv"
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["body", "mood"])
        w.writerows((r["text"], r["airline_sentiment"]) for r in rows)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "learners.commands",
        "train",
        str(path),
        "--text-column",
        "body",
        "--label-column",
        "mood",
        "--learner",
        "sentiment",
        "--redis-url",
        redis_url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, stderr.decode()
    assert "published snapshot version=1" in stdout.decode()
    worker = LearnerScorer()
    assert await worker.refresh(redis)
    assert worker.health()["sentiment"]["labels_seen"] == 600
    assert DATA.exists()


async def test_unreadable_outcome_is_logged_acked_and_skipped(redis: aioredis.Redis) -> None:
    await redis.xadd(OUTCOMES_STREAM, {"data": "{not json"})
    await publish_outcome(redis, Outcome(conversation_id="e", kind="resolved", text=PROBE, final_skill="billing"))
    stop = asyncio.Event()
    task = asyncio.create_task(run_learner(redis, stop=stop, config=fast("l2")))
    try:
        worker = LearnerScorer()
        await labels_reach(redis, worker, "skill", 1)
        assert (await redis.xpending(OUTCOMES_STREAM, GROUP))["pending"] == 0
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


def test_labels_of_each_outcome_kind() -> None:
    corr = labels_of(Outcome(conversation_id="c", kind="correction", text="hi", correction="misrouted: really billing"))
    assert corr.pairs == {"skill": ("hi", "billing")}
    bot = labels_of(Outcome(conversation_id="c", kind="automation_resolved", text="hi", mood="positive", csat=5))
    assert bot.pairs["automation"][1] is True and bot.pairs["sentiment"] == ("hi", "positive")
    handoff = labels_of(
        Outcome(conversation_id="c", kind="automation_handoff", text="hi", predicted={"skill": {"a": 0.8, "b": 0.2}})
    )
    assert handoff.pairs["automation"] == (
        {"text": "hi", "sentiment": 0.0, "urgency": 0.0, "skill_confidence": 0.8},
        False,
    )
    human = labels_of(
        Outcome(
            conversation_id="c", kind="resolved", text="hi", final_skill="orders", urgency=0.7, automation_failed=False
        )
    )
    assert human.pairs == {"skill": ("hi", "orders"), "urgency": ("hi", 0.7)}  # the form's level, not "urgent"
    assert labels_of(Outcome(conversation_id="c", kind="resolved", text="", final_skill="orders")).pairs == {}
    bot_then_human = labels_of(Outcome(conversation_id="c", kind="resolved", text="hi", automation_failed=True))
    assert bot_then_human.pairs == {
        "automation": ({"text": "hi", "sentiment": 0.0, "urgency": 0.0, "skill_confidence": 0.0}, False)
    }
