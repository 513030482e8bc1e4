"""The model watcher posts each drift alarm, fallback and recovery to the leads channel once: not again
when a worker restarts (its untrained models are no baseline), and not once per worker.

Real Redis, real published snapshots, real `LearnerScorer`s hot-swapping them as each worker process does
(`gateway/cli.py`: the watcher starts, then the refresh task loads the snapshot)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import redis.asyncio as aioredis

from integrations.slack.commands import watch_models
from learners.service import LearnerScorer
from learners.snapshot import RedisLock, TextLearner, new_learners, publish
from tests.conftest import free_port
from tests.harness import eventually

TICK = 0.05
QUIET = 0.4
"""Long enough for several watcher reads after a snapshot is loaded."""


class Leads:
    """The leads channel as every worker's Slack client reaches it."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    async def chat_postMessage(self, **kw: Any) -> dict[str, Any]:
        self.texts.append(str(kw["text"]))
        return {"ok": True}


@dataclass
class WorkerProcess:
    scorer: LearnerScorer
    client: aioredis.Redis
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def close(self) -> None:
        self.stop.set()
        await asyncio.wait_for(asyncio.gather(*self.tasks), 5)
        await self.client.aclose()


async def start_worker(redis_url: str, leads: Leads, shared: bool) -> WorkerProcess:
    proc = WorkerProcess(LearnerScorer(), aioredis.from_url(redis_url))

    async def refresh() -> None:
        while not proc.stop.is_set():
            await proc.scorer.refresh(proc.client)
            await asyncio.sleep(TICK)

    extra = {"redis": proc.client} if shared else {}
    proc.tasks.append(asyncio.create_task(
        watch_models(proc.scorer, leads, "C0LEADS", proc.stop, interval=TICK, **extra)))  # type: ignore[arg-type]
    await asyncio.sleep(TICK / 5)  # the watcher reads the untrained models before the first refresh lands
    proc.tasks.append(asyncio.create_task(refresh()))
    return proc


def learners(alarms: int, fallback: bool) -> dict[str, TextLearner]:
    out = new_learners()
    tracker = out["skill"].tracker
    for _ in range(60):  # judged and right (or wrong) often enough for the floor to count
        tracker.record("billing", "shipping" if fallback else "billing")
    tracker.drift_alarms = alarms
    return out


async def loaded(*procs: WorkerProcess, version: int) -> None:
    await eventually(lambda: all(p.scorer.health()["skill"]["snapshot_version"] == version for p in procs))
    await asyncio.sleep(QUIET)


@pytest.fixture
async def lock(redis: aioredis.Redis) -> AsyncIterator[RedisLock]:
    held = RedisLock(redis)
    assert await held.acquire()
    yield held
    await held.release()


async def test_a_restarted_worker_posts_nothing_old(redis: aioredis.Redis, redis_url: str, lock: RedisLock) -> None:
    await publish(redis, learners(alarms=3, fallback=True), lock)  # alarms from before the restart
    leads = Leads()
    worker = await start_worker(redis_url, leads, shared=False)
    try:
        await loaded(worker, version=1)
        assert leads.texts == []
        await publish(redis, learners(alarms=4, fallback=True), lock)
        await eventually(lambda: leads.texts)
        await asyncio.sleep(QUIET)
        assert len(leads.texts) == 1 and leads.texts[0].startswith("📉 Drift alarm on the *skill* model (1 new"), \
            leads.texts
    finally:
        await worker.close()


async def test_several_workers_post_each_alarm_once(redis: aioredis.Redis, redis_url: str, lock: RedisLock) -> None:
    await publish(redis, learners(alarms=3, fallback=True), lock)
    leads = Leads()
    a = await start_worker(redis_url, leads, shared=True)
    b = await start_worker(redis_url, leads, shared=True)
    c = None
    try:
        await loaded(a, b, version=1)
        assert leads.texts == []
        await publish(redis, learners(alarms=5, fallback=False), lock)
        await eventually(lambda: len(leads.texts) >= 2)
        await loaded(a, b, version=2)
        assert len(leads.texts) == 2, leads.texts
        assert leads.texts[0].startswith("📉 Drift alarm on the *skill* model (2 new"), leads.texts
        assert leads.texts[1].startswith("✅ The *skill* model recovered"), leads.texts
        # A worker restarting now loads the same snapshot: already announced, nothing to say.
        await a.close()
        c = await start_worker(redis_url, leads, shared=True)
        await loaded(c, version=2)
        assert len(leads.texts) == 2, leads.texts
    finally:
        for proc in (a, b, c):
            if proc is not None and not proc.stop.is_set():
                await proc.close()


async def test_redis_down_does_not_end_the_watcher() -> None:
    leads = Leads()
    down = aioredis.from_url(f"redis://127.0.0.1:{free_port()}/0")
    stop = asyncio.Event()
    snapshots = [{"skill": {"drift_alarms": 0, "snapshot_version": 1}}]
    task = asyncio.create_task(watch_models(None, leads, "C0LEADS", stop, interval=TICK,  # type: ignore[arg-type]
                                            health=lambda: snapshots[0], redis=down))
    await asyncio.sleep(QUIET)
    assert not task.done()
    stop.set()
    await asyncio.wait_for(task, 5)
    await down.aclose()
    assert leads.texts == []
