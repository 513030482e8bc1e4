"""A learner process under a Redis that comes back empty keeps its models and publishes them all again.

It used to lose the lock with the flush (`learner_lock_lost`), stand by, take the lock again and resume from
the now empty snapshot with fresh models (`learner_resumed version=0`): the next publish was three-label
models, and the automation model, not republished until it learned again, stayed old in running workers
and fresh in new ones. README: "The learner publishes again from the models it holds, counting from version 1".
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

import redis.asyncio as aioredis
from structlog.testing import capture_logs

from gateway.domain import Outcome
from learners import snapshot
from learners.outcomes import OUTCOMES_STREAM, publish_outcome
from learners.process import GROUP, run_learner
from learners.service import LearnerScorer
from tests.test_learners_models import bitext
from tests.test_learners_process import fast, until

N = 30


async def _teach(redis: aioredis.Redis, rows: list[tuple[str, str]]) -> None:
    for i, (text, skill) in enumerate(rows):
        await publish_outcome(redis, Outcome(conversation_id=f"c{i}", kind="resolved", text=text, final_skill=skill,
                                             mood="neutral", urgency=0.4))
        kind = "automation_resolved" if i % 2 else "automation_handoff"
        await publish_outcome(redis, Outcome(conversation_id=f"b{i}", kind=kind, text=text))


async def _labels(redis: aioredis.Redis) -> dict[str, int]:
    restored = snapshot.restore(await snapshot.fetch(redis))
    assert not restored.held
    return {name: learner.tracker.labels_seen for name, learner in restored.learners.items()}


async def test_flush_under_a_running_learner_republishes_every_model(redis: aioredis.Redis) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(run_learner(redis, stop=stop, config=fast("l1")))
    try:
        await _teach(redis, bitext(N, seed=4))

        async def all_learned() -> bool:
            return await snapshot.current_version(redis) > 0 and await _labels(redis) == dict.fromkeys(
                ["skill", "sentiment", "urgency", "automation"], N)

        await until(all_learned)
        worker = LearnerScorer()
        await worker.refresh(redis)
        with capture_logs() as logs:
            await redis.flushdb()  # FLUSHALL takes the same path: the lock, snapshot and stream are gone

            async def republished() -> bool:
                return await redis.exists(snapshot.SNAPSHOT_KEY) > 0

            await until(republished)
            await asyncio.sleep(0.2)  # nothing else is published meanwhile
        # Every model, as held, at version 1, without a single new outcome.
        assert await snapshot.current_version(redis) == 1
        assert await _labels(redis) == {"skill": N, "sentiment": N, "urgency": N, "automation": N}
        events = [e["event"] for e in logs]
        assert "learner_store_emptied" in events and "learner_resumed" not in events
        # Workers see the count go back and load it: nobody routes one text two ways.
        assert await worker.refresh(redis)
        assert worker.health()["automation"]["labels_seen"] == N and worker.health()["skill"]["snapshot_version"] == 1
        # And the learner carries on: its consumer group is back, new outcomes are learned on top.
        await _teach(redis, bitext(N + 2, seed=4)[N:])

        async def more() -> bool:
            return (await _labels(redis))["skill"] == N + 2

        await until(more)
        assert (await redis.xpending(OUTCOMES_STREAM, GROUP))["pending"] == 0
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def test_a_paused_leader_replaced_by_another_still_stands_down(redis: aioredis.Redis) -> None:
    """Not emptied: another learner took the lock (this one paused past its TTL) and resumed from the
    snapshot; the paused one must not publish over it."""
    stop = asyncio.Event()
    task = asyncio.create_task(run_learner(redis, stop=stop, config=fast("l1")))
    try:
        await _teach(redis, bitext(4, seed=6))
        await until(lambda: _has_version(redis))
        other = snapshot.RedisLock(redis)
        await redis.delete(snapshot.LOCK_KEY)  # its lock "expired" ...
        assert await other.acquire()  # ... and another learner took it
        with capture_logs() as logs:
            await until(lambda: _logged(logs, "learner_lock_lost"))
            await asyncio.sleep(0.2)
        assert "learner_store_emptied" not in [e["event"] for e in logs]
        assert await other.held()
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def _has_version(redis: aioredis.Redis) -> bool:
    return await snapshot.current_version(redis) > 0


async def _logged(logs: Sequence[Mapping[str, Any]], event: str) -> bool:
    return any(e["event"] == event for e in logs)


async def test_a_standby_quicker_to_the_lock_after_a_flush_does_not_cost_the_models(redis: aioredis.Redis) -> None:
    """With a standby learner, the lock went with the flush and the standby, polling every second, usually took it
    first while the leader waited out its Redis error; the leader then stood by and the models it held were lost
    (the standby resumed from the emptied store). The leader now takes the lock over: whoever holds it started
    from nothing."""
    stop = asyncio.Event()
    task = asyncio.create_task(run_learner(redis, stop=stop, config=fast("l1")))
    try:
        await _teach(redis, bitext(N, seed=5))

        async def all_learned() -> bool:
            return await snapshot.current_version(redis) > 0 and await _labels(redis) == dict.fromkeys(
                ["skill", "sentiment", "urgency", "automation"], N)

        await until(all_learned)
        with capture_logs() as logs:
            await redis.flushdb()
            quicker = snapshot.RedisLock(redis)
            assert await quicker.acquire()  # the standby, from the emptied store

            async def republished() -> bool:
                return await redis.exists(snapshot.SNAPSHOT_KEY) > 0

            await until(republished)
        assert await _labels(redis) == {"skill": N, "sentiment": N, "urgency": N, "automation": N}
        assert not await quicker.held()
        assert "learner_store_emptied" in [e["event"] for e in logs]
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
