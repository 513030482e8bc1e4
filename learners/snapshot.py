"""Versioned learner snapshots in Redis, and the lock that makes the learner process the only writer.

Layout: one hash `sb:learners:snapshot` holding `version`, `created_at` and one blob per learner,
written by a single Lua call that first checks the writer still holds `sb:learners:lock`. A writer
whose lock expired (paused, partitioned) therefore cannot overwrite its successor: the check and the
write are one atomic step, not two round trips.

A blob is `MAGIC + header JSON + pickle`. The header carries the learner's name, the River version
and a SHA-256 of the pickle, so a truncated, corrupted or incompatible snapshot is refused before
unpickling. Pickle is only safe because Redis is inside the trust boundary (same as the queues).
"""

from __future__ import annotations

import hashlib
import json
import pickle
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
import river
import structlog

from learners.automation import AutomationLearner
from learners.sentiment import SentimentLearner
from learners.skill import SkillLearner
from learners.text import TextLearner
from learners.urgency import UrgencyLearner

log = structlog.get_logger("learners.snapshot")

SNAPSHOT_KEY = "sb:learners:snapshot"
SEQ_KEY = "sb:learners:snapshot:seq"
LOCK_KEY = "sb:learners:lock"
MAGIC = b"SBLEARN1\n"
FORMAT = 1

LEARNER_TYPES: dict[str, type[TextLearner]] = {
    "skill": SkillLearner,
    "sentiment": SentimentLearner,
    "urgency": UrgencyLearner,
    "automation": AutomationLearner,
}


class SnapshotError(ValueError):
    """A snapshot we will not load; the message says why, for the log line."""


@dataclass(frozen=True)
class Loaded:
    learner: TextLearner
    version: int
    created_at: float


def _river_series(v: str) -> str:
    return ".".join(v.split(".")[:2])


def dump(learner: TextLearner, version: int, created_at: float | None = None) -> bytes:
    payload = pickle.dumps(learner, protocol=pickle.HIGHEST_PROTOCOL)
    header = {
        "format": FORMAT,
        "learner": learner.name,
        "version": version,
        "created_at": created_at if created_at is not None else time.time(),
        "river": river.__version__,
        "sha256": hashlib.sha256(payload).hexdigest(),
        "size": len(payload),
    }
    return MAGIC + json.dumps(header).encode() + b"\n" + payload


def load(blob: bytes, expected: str) -> Loaded:
    """Decode one blob or raise `SnapshotError`; nothing is unpickled before the checksum matches."""
    if not blob.startswith(MAGIC):
        raise SnapshotError("not a learner snapshot (bad magic)")
    head, sep, payload = blob[len(MAGIC) :].partition(b"\n")
    if not sep:
        raise SnapshotError("truncated header")
    try:
        header: dict[str, Any] = json.loads(head)
    except ValueError as exc:
        raise SnapshotError(f"unreadable header: {exc}") from exc
    if header.get("format") != FORMAT:
        raise SnapshotError(f"format {header.get('format')!r}, this build reads {FORMAT}")
    if header.get("learner") != expected:
        raise SnapshotError(f"blob is for learner {header.get('learner')!r}, expected {expected!r}")
    if _river_series(str(header.get("river"))) != _river_series(river.__version__):
        raise SnapshotError(f"written by river {header.get('river')}, running {river.__version__}")
    if hashlib.sha256(payload).hexdigest() != header.get("sha256"):
        raise SnapshotError(f"checksum mismatch ({len(payload)} bytes, header says {header.get('size')})")
    try:
        learner = pickle.loads(payload)
    except Exception as exc:
        raise SnapshotError(f"unpickling failed: {type(exc).__name__}: {exc}") from exc
    cls = LEARNER_TYPES.get(expected)
    if cls is None or not isinstance(learner, cls):
        raise SnapshotError(f"payload is a {type(learner).__name__}, expected {cls.__name__ if cls else expected}")
    return Loaded(learner, int(header["version"]), float(header["created_at"]))


class RedisLock:
    """`SET NX PX` lock with a random token; renew and release only if the token is still ours."""

    _RENEW = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 0"
    _RELEASE = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"

    def __init__(self, redis: aioredis.Redis, key: str = LOCK_KEY, ttl_ms: int = 15_000) -> None:
        self.redis = redis
        self.key = key
        self.ttl_ms = ttl_ms
        self.token = uuid.uuid4().hex

    async def acquire(self) -> bool:
        return bool(await self.redis.set(self.key, self.token, nx=True, px=self.ttl_ms))

    async def renew(self) -> bool:
        return bool(await self.redis.eval(self._RENEW, 1, self.key, self.token, self.ttl_ms))

    async def release(self) -> None:
        await self.redis.eval(self._RELEASE, 1, self.key, self.token)

    async def held(self) -> bool:
        value = await self.redis.get(self.key)
        return value is not None and (value.decode() if isinstance(value, bytes) else value) == self.token


_WRITE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[2], unpack(ARGV, 2))
return 1
"""


async def publish(redis: aioredis.Redis, learners: Mapping[str, TextLearner], lock: RedisLock) -> int | None:
    """Write every learner under one new version; None (and nothing written) if `lock` is not ours."""
    version = int(await redis.incr(SEQ_KEY))
    created = time.time()
    started = time.perf_counter()
    fields: list[Any] = ["version", version, "created_at", created]
    sizes = {}
    for name, learner in learners.items():
        blob = dump(learner, version, created)
        sizes[name] = len(blob)
        fields += [name, blob]
    ok = await redis.eval(_WRITE, 2, lock.key, SNAPSHOT_KEY, lock.token, *fields)
    if not ok:
        log.warning("learner_snapshot_refused_lock_not_held", version=version, lock=lock.key)
        return None
    log.info(
        "learner_snapshot_published",
        version=version,
        bytes=sizes,
        ms=round((time.perf_counter() - started) * 1000, 1),
    )
    return version


async def current_version(redis: aioredis.Redis) -> int:
    raw = await redis.hget(SNAPSHOT_KEY, "version")
    return int(raw) if raw else 0


async def fetch(redis: aioredis.Redis) -> dict[str, bytes]:
    raw = await redis.hgetall(SNAPSHOT_KEY)
    out: dict[str, bytes] = {}
    for k, v in raw.items():
        out[k.decode() if isinstance(k, bytes) else k] = v if isinstance(v, bytes) else v.encode()
    return out


def new_learners() -> dict[str, TextLearner]:
    return {name: cls() for name, cls in LEARNER_TYPES.items()}
