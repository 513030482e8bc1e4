"""Partitioned Redis Streams with leases, so one conversation is never worked on by two workers at once.

Consumer groups alone spread entries of one stream over all consumers, which would reorder a
customer's messages. Instead each partition is leased to one worker (SET NX PX, renewed by a
heartbeat) and workers split partitions fairly among the live ones. A worker that takes over a
partition first claims the entries its dead predecessor left pending, then replays its own pending
list in order before reading new entries.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
import structlog
from redis.asyncio.client import Pipeline as RedisPipeline
from redis.exceptions import ResponseError

from gateway import keys
from gateway.domain import new_id
from gateway.redis_conn import as_str
from gateway.settings import MAX_PARTITIONS, ConfigError

log = structlog.get_logger(__name__)

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

Entry = tuple[str, dict[str, str]]


def _decode(entries: Any) -> list[Entry]:
    """redis-py's stream replies are loosely typed; normalise to str once, here."""
    def s(x: bytes | str) -> str:
        return x.decode() if isinstance(x, bytes) else x

    return [(s(eid), {s(k): s(v) for k, v in fields.items()}) for eid, fields in entries if fields is not None]


async def ensure_groups(redis: aioredis.Redis, partitions: int) -> list[int]:
    """Create what is missing; returns the partitions whose group had to be created.

    From id 0, not `$`: when a Redis comes back empty, the web may have queued messages into a new
    stream before any worker noticed, and those must be read, not skipped."""
    created: list[int] = []
    for p in range(partitions):
        try:
            await redis.xgroup_create(keys.inbound_stream(p), keys.INBOUND_GROUP, id="0", mkstream=True)
            created.append(p)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
    return created


PARTITIONS_KEY = f"{keys.PREFIX}partitions"
"""How many partitions this Redis's streams are split into, set by the first process to start."""


async def agree_on_partitions(redis: aioredis.Redis, partitions: int) -> None:
    """Refuse to start with another `SWITCHBOARD_PARTITIONS` than the processes already on this Redis.

    A customer's partition is a hash modulo the count: a web process set to 16 beside workers set to 8
    queued a third of its messages on partitions no worker reads, answered 202 for each, and nothing said
    so anywhere. The first process records its count; one that differs stops with the way to change it."""
    stored_raw = await redis.get(PARTITIONS_KEY)
    if stored_raw is None:
        # Nothing recorded: a Redis the release before ran on, or one that came back empty. The streams its
        # workers created (one per partition) say what the deployment runs with; a misconfigured process that
        # happened to start first must not record its own count and lock the others out.
        await redis.set(PARTITIONS_KEY, await partitions_in_use(redis) or partitions, nx=True)
        stored_raw = await redis.get(PARTITIONS_KEY)
    stored = int(as_str(stored_raw) or partitions)
    if stored != partitions:
        raise ConfigError(
            f"configuration error: SWITCHBOARD_PARTITIONS: this Redis's streams are split into {stored} partitions "
            f"and this process is set to {partitions}: run every web and worker with {stored}. To change it, stop "
            f"every web, let the workers empty the streams, stop them, then `SET {PARTITIONS_KEY} <new count>` and "
            "start them all with the new count"
        )


async def partitions_in_use(redis: aioredis.Redis, most: int = MAX_PARTITIONS) -> int:
    """How many partitions this Redis's streams show (the highest with a stream, plus one); 0 for none."""
    async with redis.pipeline(transaction=False) as pipe:
        for p in range(most):
            pipe.exists(keys.inbound_stream(p))
        there = await pipe.execute()
    return max((p + 1 for p, n in enumerate(there) if n), default=0)


STATE_LOST = ("NOGROUP", "UNBLOCKED")
"""How Redis says a stream or its consumer group is gone: NOGROUP for a command on one that does not
exist, UNBLOCKED for a blocked XREADGROUP whose stream was deleted under it (FLUSHALL)."""


def state_lost(exc: BaseException) -> bool:
    """Whether `exc` means the streams were wiped (a Redis restarted without persistence, or flushed)
    rather than a bug: the worker then recreates the groups and carries on instead of exiting."""
    return isinstance(exc, ResponseError) and str(exc).startswith(STATE_LOST)


async def groups_ready(redis: aioredis.Redis, partitions: int) -> bool:
    for p in range(partitions):
        try:
            groups = await redis.xinfo_groups(keys.inbound_stream(p))
        except ResponseError:
            return False
        names = {(g["name"].decode() if isinstance(g["name"], bytes) else g["name"]) for g in groups}
        if keys.INBOUND_GROUP not in names:
            return False
    return True


@dataclass
class PartitionLeases:
    redis: aioredis.Redis
    worker_id: str
    partitions: int
    lease_ms: int
    owned: set[int] = field(default_factory=set)
    """Partitions this worker reads."""
    claiming: set[int] = field(default_factory=set)
    """Leases taken whose predecessor's pending entries are not claimed yet (`claimed` makes them read). Read
    from the moment the lease was taken, a customer's new message went before the older ones still to be claimed,
    and a take-over that failed left those for the idle reclaim (30 s) while new ones were read."""
    fair: int = 0
    """This worker's share of the partitions at the last heartbeat."""
    live: int = 0
    """Live workers counted at the last heartbeat."""
    leaving: set[int] = field(default_factory=set)
    """Owned partitions beyond this worker's share: no longer read, their leases still renewed until the read loop,
    done with what it read of them, gives them up (`release`). Released by the heartbeat itself, a partition went
    while an entry of it was in hand, and the next owner claimed that entry and worked it a second time."""

    def __post_init__(self) -> None:
        self._renew = self.redis.register_script(_RENEW)
        self._release = self.redis.register_script(_RELEASE)

    async def _live_workers(self) -> int:
        now = time.time()
        await self.redis.zadd(keys.WORKERS, {self.worker_id: now})
        await self.redis.zremrangebyscore(keys.WORKERS, 0, now - self.lease_ms / 1000)
        return max(1, int(await self.redis.zcard(keys.WORKERS)))

    async def membership_changed(self) -> bool:
        """A worker joined or left since the last heartbeat: one ZCOUNT, cheap enough to ask often, so
        partitions move within a poll instead of waiting up to a third of a lease for the heartbeat."""
        since = time.time() - self.lease_ms / 1000
        return max(1, int(await self.redis.zcount(keys.WORKERS, since, "+inf"))) != self.live

    async def heartbeat(self) -> tuple[set[int], set[int]]:
        """Renew, rebalance and acquire; returns (owned, claiming): the leases taken now or before whose pending
        entries the caller is to claim (idle 0) before it calls `claimed`."""
        for p in sorted(self.owned | self.claiming):
            if not await self._renew(keys=[keys.lease(p)], args=[self.worker_id, self.lease_ms]):
                log.warning("partition_lease_lost", partition=p, worker=self.worker_id)
                self._drop(p)
        self.live = await self._live_workers()
        fair = self.fair = math.ceil(self.partitions / self.live)
        while len((self.owned | self.claiming) - self.leaving) > fair:
            p = max((self.owned | self.claiming) - self.leaving)
            if p in self.claiming:  # never read: nothing of it in hand
                await self.release(p)
                continue
            self.leaving.add(p)
            log.info("partition_leaving", partition=p, worker=self.worker_id)
        acquired: set[int] = set()
        for p in range(self.partitions):
            if len(self.owned | self.claiming) >= fair:
                break
            if p in self.owned or p in self.claiming:
                continue
            if await self.redis.set(keys.lease(p), self.worker_id, nx=True, px=self.lease_ms):
                self.claiming.add(p)
                acquired.add(p)
        if acquired:
            log.info("partitions_acquired", partitions=sorted(acquired), worker=self.worker_id)
        return set(self.owned), set(self.claiming)

    def claimed(self, partition: int) -> None:
        """The partition's pending entries are ours (and replayed first): it is read from now on."""
        if partition in self.claiming:
            self.claiming.discard(partition)
            self.owned.add(partition)

    async def release(self, partition: int) -> None:
        """Give a partition up (its lease, if still ours): for its next owner to claim what is pending."""
        await self._release(keys=[keys.lease(partition)], args=[self.worker_id])
        self._drop(partition)
        log.info("partition_released", partition=partition, worker=self.worker_id)

    def _drop(self, partition: int) -> None:
        self.owned.discard(partition)
        self.leaving.discard(partition)
        self.claiming.discard(partition)

    def forget(self) -> None:
        """Hold nothing any more, at once (the leases lapse on their own)."""
        self.owned.clear()
        self.leaving.clear()
        self.claiming.clear()

    async def release_all(self) -> None:
        for p in list(self.owned | self.claiming):
            await self._release(keys=[keys.lease(p)], args=[self.worker_id])
        self.forget()
        await self.redis.zrem(keys.WORKERS, self.worker_id)


@dataclass
class PartitionReader:
    """Reads a worker's partitions in order: recovered backlog first, then new entries."""

    redis: aioredis.Redis
    consumer: str
    count: int = 64
    backlog: set[int] = field(default_factory=set)

    async def take_over(self, partition: int, min_idle_ms: int) -> None:
        """Move entries a dead consumer left pending into our own pending list, keeping their order."""
        stream = keys.inbound_stream(partition)
        start = "0-0"
        moved = 0
        while True:
            resp = await self.redis.xautoclaim(
                stream, keys.INBOUND_GROUP, self.consumer, min_idle_ms, start_id=start, count=500
            )
            start = resp[0].decode() if isinstance(resp[0], bytes) else resp[0]
            moved += len(resp[1])
            if start == "0-0":
                break
        if moved:
            log.info("pending_entries_reclaimed", partition=partition, entries=moved)
        if moved or min_idle_ms == 0:
            self.backlog.add(partition)

    async def read(self, partitions: set[int], block_ms: int) -> tuple[dict[int, list[Entry]], bool]:
        """Entries per partition, and whether they were read before (by us or a consumer that died),
        so the pipeline knows when to look for effects already done. One read is all replays or all
        new entries: the backlog is replayed before anything new is read."""
        out: dict[int, list[Entry]] = {}
        for p in sorted(self.backlog & partitions):
            resp: Any = await self.redis.xreadgroup(
                keys.INBOUND_GROUP, self.consumer, {keys.inbound_stream(p): "0"}, count=self.count
            )
            gone = [eid for eid, fields in (resp[0][1] if resp else []) if fields is None]
            if gone:  # deleted while pending (an erasure): nothing left to do, and trimming waits on them
                await self.redis.xack(keys.inbound_stream(p), keys.INBOUND_GROUP, *gone)
            entries = _decode(resp[0][1]) if resp else []
            if entries:
                out[p] = entries
            elif not gone:  # a page of deleted ones may hide live ones behind it: read again
                self.backlog.discard(p)
        if out:
            return out, True
        fresh = sorted(partitions - self.backlog)
        if not fresh:
            return out, True
        resp = await self.redis.xreadgroup(
            keys.INBOUND_GROUP,
            self.consumer,
            {keys.inbound_stream(p): ">" for p in fresh},
            count=self.count,
            block=block_ms,
        )
        for stream, raw in resp or []:
            name = stream.decode() if isinstance(stream, bytes) else str(stream)
            out[int(name.rsplit(":", 1)[1])] = _decode(raw)
        return out, False

    async def ack(self, partition: int, entry_id: str) -> None:
        await self.redis.xack(keys.inbound_stream(partition), keys.INBOUND_GROUP, entry_id)


REPLAYED_FROM = "replayed_from"
"""Field of an entry replayed from the dead-letter stream (`gateway.dead_letters`): the id it had when it
failed. Its effects may have happened then, so they are looked up as for a redelivery."""


def delivery(ack: Ack | None, fields: Mapping[str, str]) -> tuple[bool, float | None]:
    """(first delivery, look effects up since): nothing can have happened yet for a first delivery; for a
    redelivery or a replay, anything may have since the entry was first queued."""
    replayed = fields.get(REPLAYED_FROM)
    if replayed:
        return False, int(replayed.split("-", 1)[0]) / 1000
    if ack is None:
        return False, None
    if ack.redelivered:
        return False, ack.queued_at
    return True, None


@dataclass
class Ack:
    """One entry's XACK, for the handler to put on its final MULTI: acknowledged in the same atomic
    write as the state it produced, and one round trip fewer per message. The worker acks on its own
    when the handler did not (`done` false), e.g. for entries that need no write."""

    partition: int
    entry_id: str
    redelivered: bool = True
    """Read before (see `PartitionReader.read`); only a first delivery may skip effect markers."""
    done: bool = False
    then: Mapping[str, str] | None = None
    """The partition's next entry, when the worker has it in hand: its first read rides on this entry's final
    write (`Pipeline._commit`), one round trip fewer per message while a backlog is worked off."""
    read_ahead: Callable[[], Any] | None = None
    """What that read found for `then` (set by the final write); the worker gives it to `then`'s own Ack as
    `read_before`."""
    read_before: Callable[[], Any] | None = None
    """This entry's first read, made by the entry before it (`read_ahead`); None: the handler reads for itself."""

    @property
    def queued_at(self) -> float:
        """Unix seconds the entry was added (its id is milliseconds-sequence)."""
        return int(self.entry_id.split("-", 1)[0]) / 1000

    def stage(self, pipe: RedisPipeline) -> None:
        pipe.xack(keys.inbound_stream(self.partition), keys.INBOUND_GROUP, self.entry_id)


async def trim_handled(redis: aioredis.Redis, partition: int) -> int:
    """Drop the partition's entries every reader is done with; returns how many went.

    Acknowledged entries used to stay for ever: Redis grew with every message, and each entry keeps the
    customer's key and profile, which an erasure must not leave behind. Kept: everything pending (read,
    not yet acknowledged: a crashed worker's replay needs it) and everything not yet delivered."""
    stream = keys.inbound_stream(partition)
    groups: Any = await redis.xinfo_groups(stream)
    group = next((g for g in groups if as_str(g.get("name")) == keys.INBOUND_GROUP), None)
    if group is None:
        return 0
    pending: Any = await redis.xpending(stream, keys.INBOUND_GROUP)
    if int(pending.get("pending") or 0):
        floor = as_str(pending["min"])
    else:
        ms, seq = as_str(group.get("last-delivered-id") or "0-0").split("-")
        floor = f"{ms}-{int(seq) + 1}"
    return int(await redis.xtrim(stream, minid=floor, approximate=False))


def note_entry(text: str) -> dict[str, str]:
    """A thread line queued for a worker; its id makes the post findable, so a redelivery does not post twice."""
    return {"kind": "note", "text": text, "id": new_id("note")}
