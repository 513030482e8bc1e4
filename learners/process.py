"""The learner process: consume outcomes, learn online, publish snapshots.

Only the holder of `sb:learners:lock` consumes and writes. A second learner process is a hot
standby: it waits for the lock to expire (its holder died or hung), resumes from the newest
snapshot, reclaims what the dead consumer had read but not acknowledged (XAUTOCLAIM) and carries on.
Splitting the stream between two live learners would instead give two half-trained models that
overwrite each other's snapshots, which is why the group has one active reader at a time.

Entries are acknowledged right after learning. Updates learned since the last snapshot are lost if
the process dies; `snapshot_every` and `snapshot_interval_s` bound that loss.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
import structlog
from pydantic import ValidationError
from redis.exceptions import RedisError, ResponseError

from gateway.domain import Outcome
from gateway.redis_conn import as_str
from learners import snapshot
from learners.outcomes import FIELD, OUTCOMES_STREAM, labels_of
from learners.text import TextLearner

log = structlog.get_logger("learners.process")

GROUP = "learners"


def _default_consumer() -> str:
    return f"learner-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


@dataclass
class LearnerConfig:
    consumer: str = field(default_factory=_default_consumer)
    group: str = GROUP
    stream: str = OUTCOMES_STREAM
    batch: int = 100
    block_ms: int = 1000
    snapshot_every: int = 500
    """Publish after this many learned outcomes ..."""
    snapshot_interval_s: float = 60.0
    """... or this long after the previous snapshot if anything was learned since."""
    lock_ttl_ms: int = 15_000
    claim_idle_ms: int = 60_000
    """An entry unacknowledged this long belonged to a dead consumer and is taken over."""
    claim_every_s: float = 30.0
    standby_poll_s: float = 1.0


class _Learning:
    """The leader's mutable state: current learners and what has not been snapshotted yet."""

    def __init__(self) -> None:
        self.learners: dict[str, TextLearner] = snapshot.new_learners()
        self.version = 0
        self.pending_updates = 0
        self.last_snapshot = time.monotonic()
        self.last_claim = 0.0
        self.unacked: list[Any] = []
        """Learned but not yet in a published snapshot: acknowledged only once they are, so a learner
        killed mid-update leaves them pending and the next leader learns them again onto the snapshot."""
        self.seen: set[str] = set()

    async def resume(self, redis: aioredis.Redis) -> None:
        """Continue from the newest snapshot so a new leader never starts from scratch."""
        blobs = await snapshot.fetch(redis)
        for name in snapshot.LEARNER_TYPES:
            if name not in blobs:
                continue
            try:
                loaded = snapshot.load(blobs[name], name)
            except snapshot.SnapshotError as exc:
                log.error("learner_snapshot_refused", learner=name, reason=str(exc), during="resume")
                continue
            self.learners[name] = loaded.learner
            self.version = max(self.version, loaded.version)
        log.info("learner_resumed", version=self.version)

    def learn(self, entry_id: str, fields: dict[Any, Any]) -> int:
        """Learn every label one entry carries; returns how many learners were updated."""
        raw = fields.get(FIELD.encode()) or fields.get(FIELD)
        try:
            outcome = Outcome.model_validate_json(raw or b"")
        except ValidationError as exc:
            log.error("outcome_unreadable", entry=entry_id, error=str(exc).splitlines()[0])
            return 0
        pairs = labels_of(outcome).pairs
        for name, (x, y) in pairs.items():
            self.learners[name].learn_one(x, y)
        return len(pairs)


async def _ensure_group(redis: aioredis.Redis, cfg: LearnerConfig) -> None:
    try:
        await redis.xgroup_create(cfg.stream, cfg.group, id="0", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except TimeoutError:
        pass


async def _consume(redis: aioredis.Redis, cfg: LearnerConfig, state: _Learning, entries: list[Any]) -> None:
    trimmed, learned = [], 0
    for entry_id, fields in entries:
        if as_str(entry_id) in state.seen:  # our own pending entry, reclaimed before its snapshot
            continue
        if fields is None:  # trimmed from the stream while pending
            trimmed.append(entry_id)
            continue
        if state.learn(as_str(entry_id), fields):
            state.pending_updates += 1
            state.unacked.append(entry_id)
            state.seen.add(as_str(entry_id))
            learned += 1
        else:
            trimmed.append(entry_id)  # nothing to learn from it: nothing to keep pending
    if trimmed:
        await redis.xack(cfg.stream, cfg.group, *trimmed)
    if learned:
        log.debug("outcomes_learned", count=learned, pending_updates=state.pending_updates)


async def _claim(redis: aioredis.Redis, cfg: LearnerConfig, state: _Learning, min_idle_ms: int | None = None) -> None:
    """Take over entries another (dead) leader learned but never got into a snapshot."""
    start = "0-0"
    idle = cfg.claim_idle_ms if min_idle_ms is None else min_idle_ms
    while True:
        reply = await redis.xautoclaim(
            cfg.stream, cfg.group, cfg.consumer, min_idle_time=idle, start_id=start, count=cfg.batch
        )
        start, claimed = as_str(reply[0]), reply[1]
        if claimed:
            log.info("outcomes_reclaimed", count=len(claimed), consumer=cfg.consumer)
            await _consume(redis, cfg, state, claimed)
        if start == "0-0" or not claimed:
            break
    state.last_claim = time.monotonic()


async def _snapshot(redis: aioredis.Redis, cfg: LearnerConfig, state: _Learning, lock: snapshot.RedisLock) -> bool:
    version = await snapshot.publish(redis, state.learners, lock)
    if version is None:
        return False
    state.version = version
    state.pending_updates = 0
    state.last_snapshot = time.monotonic()
    if state.unacked:
        await redis.xack(cfg.stream, cfg.group, *state.unacked)
        state.unacked.clear()
        state.seen.clear()
    return True


async def _step(
    redis: aioredis.Redis, cfg: LearnerConfig, lock: snapshot.RedisLock, state: _Learning | None, stop: asyncio.Event
) -> _Learning | None:
    """One turn of the loop; returns the leader state, or None while standing by."""
    if state is None:
        if not await lock.acquire():
            await _wait(stop, cfg.standby_poll_s)
            return None
        log.info("learner_leader", consumer=cfg.consumer)
        state = _Learning()
        await state.resume(redis)
        await _claim(redis, cfg, state, min_idle_ms=0)  # we hold the lock: every pending entry is orphaned
    elif not await lock.renew():
        log.warning("learner_lock_lost", consumer=cfg.consumer)
        return None
    if time.monotonic() - state.last_claim >= cfg.claim_every_s:
        await _claim(redis, cfg, state)
    reply: Any = await redis.xreadgroup(cfg.group, cfg.consumer, {cfg.stream: ">"}, count=cfg.batch, block=cfg.block_ms)
    for _stream, entries in reply or []:
        await _consume(redis, cfg, state, entries)
    due = time.monotonic() - state.last_snapshot >= cfg.snapshot_interval_s
    if state.pending_updates and (state.pending_updates >= cfg.snapshot_every or due):
        if not await _snapshot(redis, cfg, state, lock):
            return None  # someone else holds the lock now; back to standby
    return state


async def run_learner(redis: aioredis.Redis, *, stop: asyncio.Event, config: LearnerConfig | None = None) -> None:
    """Run until `stop` is set; leader while holding the lock, standby otherwise.

    Redis errors do not end the process: it logs, backs off and retries, keeping what it has learned
    (the lock's expiry decides whether it is still the leader when Redis comes back).
    """
    cfg = config or LearnerConfig()
    lock = snapshot.RedisLock(redis, ttl_ms=cfg.lock_ttl_ms)
    await _ensure_group(redis, cfg)
    state: _Learning | None = None
    log.info("learner_started", consumer=cfg.consumer)
    try:
        while not stop.is_set():
            try:
                state = await _step(redis, cfg, lock, state, stop)
            except RedisError as exc:
                log.error("learner_redis_error", error=f"{type(exc).__name__}: {exc}", leader=state is not None)
                await _wait(stop, 1.0)
                if "NOGROUP" in str(exc):
                    await _ensure_group(redis, cfg)
    finally:
        if state is not None:
            try:
                if state.pending_updates:
                    await _snapshot(redis, cfg, state, lock)
                await lock.release()
            except RedisError as exc:
                log.error("learner_final_snapshot_failed", error=str(exc), lost_updates=state.pending_updates)
        log.info("learner_stopped", consumer=cfg.consumer)
