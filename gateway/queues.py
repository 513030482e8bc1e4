"""How far behind each partition is, read from Redis itself: `/metrics` and `switchboard status` both ask here.

Depth and lag are never counted by hand: every process (and the operator's shell) reads the same truth about
the shared streams, and a dead worker cannot leave a stale count behind.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from gateway import keys
from gateway.redis_conn import as_str


@dataclass(frozen=True, slots=True)
class QueueState:
    partition: int
    depth: int
    """Entries not yet acknowledged: never read (the group's lag) plus read and pending."""
    pending: int
    lag_s: float
    """Age of the oldest entry not acknowledged (0 when there is none)."""


def _id_ms(entry_id: Any) -> int | None:
    try:
        return int(as_str(entry_id).split("-", 1)[0])
    except (ValueError, AttributeError):
        return None


async def read_queue(redis: aioredis.Redis, partition: int, now_ms: int) -> QueueState | None:
    """One partition's state; None when its stream or consumer group does not exist (yet)."""
    stream = keys.inbound_stream(partition)
    try:
        groups = await redis.xinfo_groups(stream)
    except ResponseError:
        return None
    group = next((g for g in groups if as_str(g["name"]) == keys.INBOUND_GROUP), None)
    if group is None:
        return None
    pending = int(group.get("pending") or 0)
    undelivered = group.get("lag")
    last = as_str(group.get("last-delivered-id") or "0-0")
    if undelivered is None:  # Redis < 7 or a trimmed stream: count what is after last-delivered
        undelivered = len(await redis.xrange(stream, min=f"({last}", max="+", count=10_000) or [])
    oldest: int | None = None
    if pending:
        summary = await redis.xpending(stream, keys.INBOUND_GROUP)
        oldest = _id_ms(summary.get("min"))
    elif int(undelivered):
        first = await redis.xrange(stream, min=f"({last}", max="+", count=1)
        oldest = _id_ms(first[0][0]) if first else None
    lag = max(0.0, (now_ms - oldest) / 1000) if oldest is not None else 0.0
    return QueueState(partition, pending + int(undelivered), pending, lag)


async def read_queues(redis: aioredis.Redis, partitions: int, now_ms: int | None = None) -> list[QueueState]:
    """Every partition that has a stream, in order."""
    now = int(time.time() * 1000) if now_ms is None else now_ms
    found = [await read_queue(redis, p, now) for p in range(partitions)]
    return [q for q in found if q is not None]
