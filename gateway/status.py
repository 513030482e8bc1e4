"""`switchboard status`: a running deployment's state, read from its Redis, for an operator's shell or a script.

Everything it shows was already in `/metrics` of some process or behind a Slack command (`/switchboard stats`,
`models`, `dead`), so nothing could be scripted against a split deployment without a Prometheus or a Slack
login. It reads only Redis: which workers are alive and which partitions they hold, how far behind each
partition is, parked entries, the live policy and canary, and whether a learner leads and when it last
published. Exit code 0 when nothing needs a person, 1 when something does (listed), 2 when it cannot look.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from gateway import keys
from gateway.durability import persistence
from gateway.embedded_redis import URL_FILE
from gateway.policy_store import CANARY
from gateway.queues import QueueState, read_queues
from gateway.redis_conn import as_str, shown
from gateway.serve_lock import lock_holder
from gateway.settings import ConfigError, load_settings
from gateway.streams import PARTITIONS_KEY
from learners.snapshot import LOCK_KEY, SNAPSHOT_KEY

BEHIND_S = 60.0
"""A partition whose oldest unacknowledged entry is older than this needs a look (`--behind`)."""


@dataclass
class Status:
    redis: str
    persistence: str | None
    partitions: int
    workers: dict[str, float] = field(default_factory=dict)
    """Live worker -> seconds since its last heartbeat."""
    leases: dict[int, str | None] = field(default_factory=dict)
    queues: list[QueueState] = field(default_factory=list)
    dead_letters: int = 0
    policy_version: int | None = None
    canary: str | None = None
    learner_leading: bool = False
    snapshot_version: int = 0
    snapshot_age_s: float | None = None


async def read_status(redis: aioredis.Redis, shown: str, partitions: int, lease_s: float) -> Status:
    now = time.time()
    recorded = await redis.get(PARTITIONS_KEY)
    count = int(as_str(recorded)) if recorded else partitions
    async with redis.pipeline(transaction=False) as pipe:
        pipe.zrangebyscore(keys.WORKERS, now - lease_s, "+inf", withscores=True)
        pipe.mget([keys.lease(p) for p in range(count)])
        pipe.xlen(keys.DEAD)
        pipe.get(keys.POLICY)
        pipe.get(CANARY)
        pipe.exists(LOCK_KEY)
        pipe.hmget(SNAPSHOT_KEY, ["version", "created_at"])
        workers, leases, dead, policy, canary, leading, (version, created) = await pipe.execute()
    status = Status(shown, await persistence(redis), count)
    status.workers = {as_str(w): round(now - float(at), 1) for w, at in workers}
    status.leases = {p: as_str(owner) if owner else None for p, owner in enumerate(leases)}
    status.queues = await read_queues(redis, count)
    status.dead_letters = int(dead)
    status.policy_version = json.loads(policy).get("version") if policy else None
    if canary:
        c = json.loads(canary)
        status.canary = f"{c.get('id')} at {c.get('share')}%: {c.get('summary')}"
    status.learner_leading = bool(leading)
    status.snapshot_version = int(as_str(version)) if version else 0
    status.snapshot_age_s = round(now - float(as_str(created)), 1) if created else None
    return status


def problems(status: Status, behind_s: float = BEHIND_S) -> list[str]:
    """What needs a person, in the words an operator would search the README for."""
    found: list[str] = []
    if not status.workers:
        found.append("no live worker: nothing is being routed")
    orphaned = [p for p, owner in status.leases.items() if owner is None or owner not in status.workers]
    if status.workers and orphaned:
        found.append(f"partitions without a live worker: {spans(orphaned)} (taken over within a lease)")
    found += [f"partition {q.partition} is {q.lag_s:.0f} s behind ({q.depth} waiting)"
              for q in status.queues if q.lag_s > behind_s]
    if status.dead_letters:
        found.append(f"{status.dead_letters} parked in sb:dead (`/switchboard dead`)")
    if status.policy_version is None:
        found.append("no policy stored: no web or serve process has started on this Redis")
    if not status.learner_leading:
        found.append("no learner holds the snapshot lock: outcomes wait, models do not improve")
    if status.persistence == "none":
        found.append("Redis keeps no append-only file: a restart loses what was acknowledged")
    return found


def spans(numbers: list[int]) -> str:
    """Partition numbers as an operator reads them.

    >>> spans([0, 1, 2, 3, 5, 7, 8])
    '0-3, 5, 7-8'
    """
    out: list[str] = []
    for n in sorted(numbers):
        if out and "-" in out[-1] and int(out[-1].split("-")[1]) == n - 1:
            out[-1] = f"{out[-1].split('-')[0]}-{n}"
        elif out and "-" not in out[-1] and int(out[-1]) == n - 1:
            out[-1] = f"{out[-1]}-{n}"
        else:
            out.append(str(n))
    return ", ".join(out)


def render(status: Status, found: list[str]) -> str:
    waiting = sum(q.depth for q in status.queues)
    worst = max((q.lag_s for q in status.queues), default=0.0)
    owners: dict[str, list[int]] = {}
    for p, owner in status.leases.items():
        owners.setdefault(owner or "(none)", []).append(p)
    lines = [
        f"redis        {status.redis} ({status.persistence or 'persistence unknown'})",
        f"partitions   {status.partitions}",
        f"workers      {len(status.workers)} live: "
        + ("; ".join(f"{w} holds {spans(ps)}" for w, ps in sorted(owners.items())) or "-"),
        f"queues       {waiting} waiting, oldest {worst:.1f} s",
        *(f"  partition {q.partition:<3} {q.depth} waiting ({q.pending} being handled), oldest {q.lag_s:.1f} s"
          for q in status.queues if q.depth),
        f"dead letters {status.dead_letters}",
        f"policy       version {status.policy_version}" + (f"; canary {status.canary}" if status.canary else ""),
        f"learner      {'leading' if status.learner_leading else 'none leading'}; snapshot version "
        f"{status.snapshot_version}" + (f", {status.snapshot_age_s:.0f} s old" if status.snapshot_age_s is not None
                                        else ""),
    ]
    lines += [f"problem      {p}" for p in found] or ["problem      none"]
    return "\n".join(lines)


def target(explicit: str | None) -> tuple[str, str]:
    """(url, how it was found): --redis-url, REDIS_URL (environment or .env), or a running `serve`'s own Redis."""
    if explicit:
        return explicit, "--redis-url"
    settings = load_settings()
    if settings.redis_url:
        return settings.redis_url, "REDIS_URL"
    url_file = settings.data_dir / URL_FILE
    if lock_holder(settings.data_dir) is not None and url_file.exists():
        return url_file.read_text().strip(), f"{url_file}"
    raise ConfigError("configuration error: REDIS_URL: not set, and no `switchboard serve` is running on "
                      f"{settings.data_dir.resolve()}: nothing to look at")


async def _status(args: argparse.Namespace) -> int:
    try:
        url, source = target(args.redis_url)
        settings = load_settings()
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    redis = aioredis.from_url(url)
    try:
        status = await read_status(redis, f"{shown(url)} ({source})", settings.partitions, settings.lease_ms / 1000)
    except (RedisError, OSError) as exc:
        print(f"configuration error: REDIS_URL: cannot reach {shown(url)} ({exc})", file=sys.stderr)
        return 2
    finally:
        await redis.aclose()
    found = problems(status, args.behind)
    if args.json:
        body: dict[str, Any] = asdict(status)
        body["problems"] = found
        print(json.dumps(body, default=str))
    else:
        print(render(status, found))
    return 1 if found else 0


def status(args: argparse.Namespace) -> int:
    return asyncio.run(_status(args))


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg,unused-ignore]
    p = sub.add_parser("status", help="a running deployment's workers, queues, parked work, policy and learner")
    p.add_argument("--redis-url", default=None,
                   help="default: REDIS_URL (environment or .env), else a running `serve`'s own Redis")
    p.add_argument("--json", action="store_true", help="one JSON object instead of lines")
    p.add_argument("--behind", type=float, default=BEHIND_S,
                   help="seconds a partition may lag before it counts as a problem")
    p.set_defaults(func=status)
