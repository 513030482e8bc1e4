"""The learner process: consume outcomes, learn online, publish snapshots.

Only the holder of `sb:learners:lock` consumes and writes. A second learner process is a hot
standby: it waits for the lock to expire (its holder died or hung), resumes from the newest
snapshot, reclaims what the dead consumer had read but not acknowledged (XAUTOCLAIM) and carries on.
Splitting the stream between two live learners would instead give two half-trained models that
overwrite each other's snapshots, which is why the group has one active reader at a time.

An entry is acknowledged by the same Lua script that publishes the snapshot including it, so a crash
leaves it either pending and absent from the snapshot (the next leader learns it) or acknowledged and
in it, never learned twice. `snapshot_every` and `snapshot_interval_s` bound how much is relearned.
Entries that teach nothing are acknowledged at once; one that cannot be learned (not an outcome, or
data a learner raises on) is parked in `sb:outcomes:parked` with the error and acknowledged: one poison
outcome must not stop all learning, and parked it can be XADDed back to `sb:outcomes` once fixed.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
import structlog
from redis.exceptions import RedisError, ResponseError

from gateway import metrics
from gateway.policy_store import PolicyStore
from gateway.redis_conn import as_str
from learners import snapshot
from learners.outcomes import FIELD, OUTCOMES_STREAM, labels_of, parse_outcome
from learners.text import TextLearner

log = structlog.get_logger("learners.process")

GROUP = "learners"
PARKED_STREAM = f"{OUTCOMES_STREAM}:parked"
PARKED_MAXLEN = 10_000
"""Parked outcomes are a bug's evidence, not a queue: a bounded tail is enough to find and replay them."""


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
    """Also how often a held model (refused snapshot) is checked for release by an operator."""
    standby_poll_s: float = 1.0


class _Learning:
    """The leader's mutable state: current learners and what has not been snapshotted yet."""

    def __init__(self) -> None:
        self.learners: dict[str, TextLearner] = snapshot.new_learners()
        self.held: dict[str, str] = {}
        """Learners whose stored blob this build refused: neither learned nor published (see `snapshot`)."""
        self.dirty: set[str] = set()
        """Learners changed since the last snapshot; only these are written, the others' blobs stay as they are."""
        self.version = 0
        self.pending_updates = 0
        self.last_snapshot = time.monotonic()
        self.last_claim = 0.0
        self.unacked: list[Any] = []
        """Learned but not yet in a published snapshot: acknowledged only once they are, so a learner
        killed mid-update leaves them pending and the next leader learns them again onto the snapshot."""
        self.seen: set[str] = set()
        self.skills: frozenset[str] | None = None
        """Skills a correction may name (live policy + canary); None while no policy is readable."""
        self.policy_missing = False
        self.ignored_fields: set[str] = set()

    async def resume(self, redis: aioredis.Redis) -> None:
        """Continue from the newest snapshot so a new leader never starts from scratch."""
        restored = snapshot.restore(await snapshot.fetch(redis))
        self.learners, self.held = restored.learners, restored.held
        self.version = max(self.version, restored.version)
        for name, reason in self.held.items():
            log.error("learner_snapshot_held", learner=name, reason=reason, during="resume", action=snapshot.HOLD_HINT)
        log.info("learner_resumed", version=self.version, held=sorted(self.held))

    async def recheck_held(self, redis: aioredis.Redis) -> None:
        """An operator released a held model by deleting its blob: start that learner fresh."""
        if not self.held:
            return
        names = sorted(self.held)
        values = await redis.hmget(snapshot.SNAPSHOT_KEY, names)
        for name, value in zip(names, values, strict=True):
            if value is None:
                del self.held[name]
                self.learners[name] = snapshot.LEARNER_TYPES[name]()
                log.warning("learner_snapshot_released", learner=name, starting="fresh")

    def learn(self, entry_id: str, fields: dict[Any, Any]) -> int:
        """Learn every label one entry carries; returns how many learners were updated.

        Raises for an entry that cannot be learned (not an outcome, or data a learner cannot take):
        the caller parks it, so one bad entry never stops the others.
        """
        raw = fields.get(FIELD.encode()) or fields.get(FIELD)
        outcome, unknown = parse_outcome(raw or b"")
        if unknown and not self.ignored_fields.issuperset(unknown):
            self.ignored_fields.update(unknown)
            log.warning("outcome_fields_ignored", entry=entry_id, fields=unknown, hint="a newer producer is running")
        pairs = labels_of(outcome, self.skills).pairs
        if outcome.kind == "correction" and "skill" not in pairs and outcome.text.strip():
            log.info("outcome_correction_names_no_skill", conversation_id=outcome.conversation_id, entry=entry_id)
        learned = 0
        for name, (x, y) in pairs.items():
            if name in self.held:
                continue
            self.dirty.add(name)  # before learning: a learner that raises half-way may have changed
            self.learners[name].learn_one(x, y)
            learned += 1
        return learned


async def _policy_skills(policies: PolicyStore, state: _Learning) -> frozenset[str] | None:
    """The live policy's skills plus a running canary's: a correction naming either is a real label."""
    try:
        skills = await policies.skills()
    except (RuntimeError, ValueError) as exc:  # no policy stored yet, or one this build cannot read
        if not state.policy_missing:
            log.warning("learner_policy_unavailable", error=str(exc).splitlines()[0], corrections="skill-shaped word")
        state.policy_missing = True
        return None
    state.policy_missing = False
    return frozenset(skills)


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


def _conversation_of(fields: dict[Any, Any]) -> str | None:
    raw = fields.get(FIELD.encode()) or fields.get(FIELD)
    try:
        data = json.loads(raw or b"")
    except ValueError:
        return None
    cid = data.get("conversation_id") if isinstance(data, dict) else None
    return cid if isinstance(cid, str) else None


async def _consume(redis: aioredis.Redis, cfg: LearnerConfig, state: _Learning, entries: list[Any]) -> None:
    done, parked, learned = [], [], 0
    for entry_id, fields in entries:
        if as_str(entry_id) in state.seen:  # our own pending entry, reclaimed before its snapshot
            continue
        if fields is None:  # trimmed from the stream while pending
            done.append(entry_id)
            continue
        try:
            updated = state.learn(as_str(entry_id), fields)
        except Exception as exc:
            error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:500]
            log.error("outcome_parked", entry=as_str(entry_id), conversation_id=_conversation_of(fields), error=error)
            metrics.LEARNER_OUTCOMES.labels("parked").inc()
            parked.append((entry_id, fields, error))
            continue
        metrics.LEARNER_OUTCOMES.labels("learned" if updated else "nothing").inc()
        if updated:
            state.pending_updates += 1
            state.unacked.append(entry_id)
            state.seen.add(as_str(entry_id))
            learned += 1
        else:
            done.append(entry_id)  # nothing to learn from it: nothing to keep pending
    if parked:
        async with redis.pipeline(transaction=True) as pipe:
            for entry_id, fields, error in parked:
                raw = fields.get(FIELD.encode()) or fields.get(FIELD) or b""
                record = {FIELD: raw, "entry": as_str(entry_id), "error": error}
                pipe.xadd(PARKED_STREAM, record, maxlen=PARKED_MAXLEN, approximate=True)  # type: ignore[arg-type]
            pipe.xack(cfg.stream, cfg.group, *(e for e, _, _ in parked))
            await pipe.execute()
    if done:
        await redis.xack(cfg.stream, cfg.group, *done)
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
    """Publish the changed learners and acknowledge what they learned, in one atomic script."""
    changed = {name: state.learners[name] for name in sorted(state.dirty - state.held.keys())}
    ack = snapshot.Ack(cfg.stream, cfg.group, list(state.unacked))
    version = await snapshot.publish(redis, changed, lock, ack=ack)
    if version is None:
        return False
    state.version = version
    metrics.LEARNER_VERSION.set(version)
    metrics.LEARNER_PUBLISHED.set(time.time())
    state.pending_updates = 0
    state.last_snapshot = time.monotonic()
    state.dirty.clear()
    state.unacked.clear()
    state.seen.clear()
    return True


async def _step(
    redis: aioredis.Redis,
    cfg: LearnerConfig,
    lock: snapshot.RedisLock,
    state: _Learning | None,
    stop: asyncio.Event,
    policies: PolicyStore,
) -> _Learning | None:
    """One turn of the loop; returns the leader state, or None while standing by."""
    if state is None:
        if not await lock.acquire():
            await _wait(stop, cfg.standby_poll_s)
            return None
        log.info("learner_leader", consumer=cfg.consumer)
        metrics.LEARNER_LEADER.set(1)
        state = _Learning()
        await state.resume(redis)
        state.skills = await _policy_skills(policies, state)
        await _claim(redis, cfg, state, min_idle_ms=0)  # we hold the lock: every pending entry is orphaned
    elif not await lock.renew():
        log.warning("learner_lock_lost", consumer=cfg.consumer)
        metrics.LEARNER_LEADER.set(0)
        return await _after_emptied(redis, cfg, state, lock)
    state.skills = await _policy_skills(policies, state)  # cached by the store: one read a second at most
    if time.monotonic() - state.last_claim >= cfg.claim_every_s:
        await state.recheck_held(redis)
        await _claim(redis, cfg, state)
    reply: Any = await redis.xreadgroup(cfg.group, cfg.consumer, {cfg.stream: ">"}, count=cfg.batch, block=cfg.block_ms)
    for _stream, entries in reply or []:
        await _consume(redis, cfg, state, entries)
    due = time.monotonic() - state.last_snapshot >= cfg.snapshot_interval_s
    if state.pending_updates and (state.pending_updates >= cfg.snapshot_every or due):
        if not await _snapshot(redis, cfg, state, lock):
            metrics.LEARNER_LEADER.set(0)
            # Someone else holds the lock now (back to standby), or Redis was emptied under us.
            return await _after_emptied(redis, cfg, state, lock)
    return state


async def _group_exists(redis: aioredis.Redis, cfg: LearnerConfig) -> bool:
    try:
        groups = await redis.xinfo_groups(cfg.stream)
    except ResponseError:  # no such key: the stream went with the flush
        return False
    return any(as_str(g.get("name") or b"") == cfg.group for g in groups)


async def _after_emptied(
    redis: aioredis.Redis, cfg: LearnerConfig, state: _Learning, lock: snapshot.RedisLock
) -> _Learning | None:
    """The lock is gone: keep leading with the models held if Redis was emptied, else stand by (None).

    A Redis that comes back empty (FLUSHALL, or restarted without persistence) takes the lock, the
    snapshot and the outcome stream with it. Standing by then dropped this state, and the next turn
    resumed from the empty snapshot with fresh models: workers swapped to near-empty ones, and the
    automation model, republished only once it learned again, stayed old in running workers and fresh in
    new ones. So when the store was emptied (the snapshot's count went back, or our consumer group is
    gone) and the lock is free, take it again and publish every model held, from version 1.

    A learner that took the lock since (a standby polls every second; this one first waits out its Redis
    error) resumed from the emptied store and holds nothing worth keeping: the lock is taken over, and the
    version goes on from whatever it published, so workers load ours. Yielding to it lost every model.

    Otherwise another leader took over (this one was paused past the lock's TTL): it resumed from the
    snapshot and reclaims what this one learned but did not publish, so this state must go.
    """
    stored = await snapshot.current_version(redis)
    if stored >= state.version and await _group_exists(redis, cfg):
        return None
    await lock.take()
    log.warning("learner_store_emptied", consumer=cfg.consumer, stored_version=stored, held_version=state.version,
                action="republishing the models held")
    metrics.LEARNER_LEADER.set(1)
    await _ensure_group(redis, cfg)
    # The entries learned but unacknowledged went with the stream; their learning is in the models held.
    state.unacked.clear()
    state.seen.clear()
    state.version = stored
    for name in list(state.held):  # a refused blob that is gone now is no longer anyone's to keep
        del state.held[name]
        state.learners[name] = snapshot.LEARNER_TYPES[name]()
        log.warning("learner_snapshot_released", learner=name, starting="fresh", reason="store emptied")
    state.dirty = set(state.learners)
    state.pending_updates = max(1, state.pending_updates)
    if not await _snapshot(redis, cfg, state, lock):
        metrics.LEARNER_LEADER.set(0)
        return None
    return state


async def run_learner(
    redis: aioredis.Redis,
    *,
    stop: asyncio.Event,
    config: LearnerConfig | None = None,
    policies: PolicyStore | None = None,
) -> None:
    """Run until `stop` is set; leader while holding the lock, standby otherwise.

    Redis errors do not end the process: it logs, backs off and retries, keeping what it has learned
    (the lock's expiry decides whether it is still the leader when Redis comes back). An entry that
    cannot be learned is parked, not fatal (see `_consume`).
    """
    cfg = config or LearnerConfig()
    policies = policies or PolicyStore(redis)
    lock = snapshot.RedisLock(redis, ttl_ms=cfg.lock_ttl_ms)
    await _ensure_group(redis, cfg)
    state: _Learning | None = None
    log.info("learner_started", consumer=cfg.consumer)
    try:
        standing_by = False
        while not stop.is_set():
            try:
                state = await _step(redis, cfg, lock, state, stop, policies)
                if state is None and not standing_by:  # said once: a standby was silent after `learner_started`
                    log.info("learner_standby", consumer=cfg.consumer,
                             detail="another learner holds the snapshot lock; this one takes over if it stops")
                standing_by = state is None
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
