"""Versioned learner snapshots in Redis, and the lock that makes the learner process the only writer.

Layout: one hash `sb:learners:snapshot` holding `version`, `created_at` and one blob per learner,
written by a single Lua call that first checks the writer still holds `sb:learners:lock`. A writer
whose lock expired (paused, partitioned) therefore cannot overwrite its successor: the check and the
write are one atomic step, not two round trips.

A blob is `MAGIC + header JSON + pickle`. The header carries the learner's name, the River version,
our own code `SCHEMA` and a SHA-256 of the pickle, so a truncated, corrupted or incompatible snapshot
is refused before unpickling. Pickle is only safe because Redis is inside the trust boundary (same as
the queues).

A refused blob is never overwritten by the learner process (`restore` reports it as held): it may be
months of learning that another build can still read, so a learner that cannot read it stops
publishing that one model and logs how to release it, instead of replacing it with a fresh model.
A blob of an older schema this build knows how to convert (`READABLE_SCHEMAS`) is not refused: it is
converted on load (`learners.upgrade`), so an upgrade keeps the learned models.
"""

from __future__ import annotations

import functools
import hashlib
import json
import pickle
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
import river
import structlog

from learners.automation import AutomationLearner
from learners.sentiment import SentimentLearner
from learners.skill import SkillLearner
from learners.text import TextLearner
from learners.upgrade import upgrade
from learners.urgency import UrgencyLearner

log = structlog.get_logger("learners.snapshot")

SNAPSHOT_KEY = "sb:learners:snapshot"
SEQ_KEY = "sb:learners:snapshot:seq"
LOCK_KEY = "sb:learners:lock"
MAGIC = b"SBLEARN1\n"
FORMAT = 1
"""The blob layout (magic, header, pickle)."""
SCHEMA = 3
"""Our learner classes' pickled state. Bump it whenever a learner, its features or its `Tracker` gain,
lose or change the meaning of an attribute: a pickle from another schema can load and then fail (or
mispredict) much later, e.g. an old `Tracker` without `log_drift` crashing at its first drift alarm.
Blobs written before the header had this field read as schema 1, which is their layout.
2: weights on the float32 grid, packed as arrays (`learners.compact`); buckets fold past `budget`.
3: `Tracker.class_labels`, labels seen per class."""
READABLE_SCHEMAS = frozenset({1, 2, SCHEMA})
"""Older schemas this build converts on load (`learners.upgrade`) instead of holding their models."""
HOLD_HINT = (
    f"kept as is and not overwritten; run a build that reads it, or discard it with "
    f"`HDEL {SNAPSHOT_KEY} <learner>` and the learner process starts that model fresh within claim_every_s"
)

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


@dataclass(frozen=True)
class Ack:
    """Stream entries whose learning a snapshot includes: acknowledged by the same script that writes it."""

    stream: str
    group: str
    ids: Sequence[Any]


@dataclass
class Restored:
    """What a new writer starts from: readable learners (fresh where there was no blob) and held ones."""

    learners: dict[str, TextLearner]
    version: int = 0
    held: dict[str, str] = field(default_factory=dict)
    """learner -> why its stored blob was refused; the writer must neither learn nor publish it."""


def _river_series(v: str) -> str:
    return ".".join(v.split(".")[:2])


def dump(learner: TextLearner, version: int, created_at: float | None = None) -> bytes:
    payload = pickle.dumps(learner, protocol=pickle.HIGHEST_PROTOCOL)
    header = {
        "format": FORMAT,
        "schema": SCHEMA,
        "learner": learner.name,
        "version": version,
        "created_at": created_at if created_at is not None else time.time(),
        "river": river.__version__,
        "sha256": hashlib.sha256(payload).hexdigest(),
        "size": len(payload),
    }
    return MAGIC + json.dumps(header).encode() + b"\n" + payload


def _split(blob: bytes) -> tuple[dict[str, Any], bytes]:
    if not blob.startswith(MAGIC):
        raise SnapshotError("not a learner snapshot (bad magic)")
    head, sep, payload = blob[len(MAGIC) :].partition(b"\n")
    if not sep:
        raise SnapshotError("truncated header")
    try:
        header = json.loads(head)
    except ValueError as exc:
        raise SnapshotError(f"unreadable header: {exc}") from exc
    if not isinstance(header, dict):
        raise SnapshotError("unreadable header: not an object")
    return header, payload


def digest(blob: bytes) -> str | None:
    """The payload checksum the header claims, read without hashing or unpickling anything: a reader
    compares it with what it last loaded to skip unchanged models. None when there is no usable header."""
    try:
        sha = _split(blob)[0].get("sha256")
    except SnapshotError:
        return None
    return sha if isinstance(sha, str) else None


@functools.cache
def _expected_attributes(name: str) -> tuple[frozenset[str], frozenset[str]]:
    fresh = LEARNER_TYPES[name]()
    return frozenset(vars(fresh)), frozenset(vars(fresh.tracker))


def _missing_attributes(learner: TextLearner, name: str) -> list[str]:
    """Attributes a fresh learner has and the unpickled one lacks: the net under a forgotten `SCHEMA` bump."""
    own, tracker = _expected_attributes(name)
    missing = sorted(own - set(vars(learner)))
    t = getattr(learner, "tracker", None)
    missing += sorted(f"tracker.{a}" for a in tracker - set(vars(t) if t is not None else ()))
    return missing


def load(blob: bytes, expected: str) -> Loaded:
    """Decode one blob or raise `SnapshotError`; nothing is unpickled before the checksum matches.

    A blob of an older readable schema is converted after unpickling (`learners.upgrade`), so a deployment
    keeps its models across the upgrade; the learner process rewrites it in this schema when it next learns.
    """
    header, payload = _split(blob)
    if header.get("format") != FORMAT:
        raise SnapshotError(f"format {header.get('format')!r}, this build reads {FORMAT}")
    schema = header.get("schema", 1)
    if schema not in READABLE_SCHEMAS:
        raise SnapshotError(f"learner schema {schema!r}, this build reads {sorted(READABLE_SCHEMAS)}")
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
    if schema != SCHEMA:
        try:
            learner = upgrade(learner, schema, SCHEMA)
        except Exception as exc:
            raise SnapshotError(f"converting schema {schema} failed: {type(exc).__name__}: {exc}") from exc
    missing = _missing_attributes(learner, expected)
    if missing:
        raise SnapshotError(f"learner schema mismatch: pickle lacks {', '.join(missing)} (written by an older build)")
    return Loaded(learner, int(header["version"]), float(header["created_at"]))


def restore(blobs: Mapping[str, bytes]) -> Restored:
    """Start a writer from stored blobs; a blob this build refuses is held, never replaced by a fresh model."""
    out = Restored(new_learners())
    for name in LEARNER_TYPES:
        if name not in blobs:
            continue
        try:
            loaded = load(blobs[name], name)
        except SnapshotError as exc:
            out.held[name] = str(exc)
            continue
        out.learners[name] = loaded.learner
        out.version = max(out.version, loaded.version)
    return out


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

    async def take(self) -> None:
        """Hold the lock whoever holds it now: only for a leader that knows the holder has nothing worth keeping
        (`learners.process._after_emptied`)."""
        await self.redis.set(self.key, self.token, px=self.ttl_ms)

    async def renew(self) -> bool:
        return bool(await self.redis.eval(self._RENEW, 1, self.key, self.token, self.ttl_ms))

    async def release(self) -> None:
        await self.redis.eval(self._RELEASE, 1, self.key, self.token)

    async def held(self) -> bool:
        value = await self.redis.get(self.key)
        return value is not None and (value.decode() if isinstance(value, bytes) else value) == self.token


_WRITE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
local last = 3 + tonumber(ARGV[2])
redis.call('HSET', KEYS[2], unpack(ARGV, 4, last))
local i = last + 1
while i <= #ARGV do
  local j = math.min(i + 999, #ARGV)
  redis.call('XACK', KEYS[3], ARGV[3], unpack(ARGV, i, j))
  i = j + 1
end
return 1
"""
"""ARGV: lock token, number of hash arguments, consumer group, the hash's field/value pairs, then the entry
ids to acknowledge (in chunks: Lua's `unpack` has a stack limit of a few thousand values)."""


async def publish(
    redis: aioredis.Redis, learners: Mapping[str, TextLearner], lock: RedisLock, ack: Ack | None = None
) -> int | None:
    """Write `learners` under one new version; None (and nothing written) if `lock` is not ours.

    Learners not in `learners` keep their stored blob. `ack`'s entries are acknowledged in the same
    atomic script as the write: acknowledged separately, a crash in between left them pending, and the
    next leader learned them a second time on top of a snapshot that already included them.
    """
    version = int(await redis.incr(SEQ_KEY))
    created = time.time()
    started = time.perf_counter()
    fields: list[Any] = ["version", version, "created_at", created]
    sizes = {}
    for name, learner in learners.items():
        blob = dump(learner, version, created)
        sizes[name] = len(blob)
        fields += [name, blob]
    # Without entries the third key is never touched; the snapshot key stands in for the stream.
    stream, group, ids = (ack.stream, ack.group, list(ack.ids)) if ack else (SNAPSHOT_KEY, "", [])
    ok = await redis.eval(
        _WRITE, 3, lock.key, SNAPSHOT_KEY, stream, lock.token, len(fields), group, *fields, *ids
    )
    if not ok:
        log.warning("learner_snapshot_refused_lock_not_held", version=version, lock=lock.key)
        return None
    log.info(
        "learner_snapshot_published",
        version=version,
        bytes=sizes,
        acked=len(ids),
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
