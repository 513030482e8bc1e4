"""The worker loop: lease partitions, read in order, run the pipeline, acknowledge only after success."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
import uuid
from collections.abc import Callable
from typing import Any

import aiohttp
import redis.asyncio as aioredis
import structlog
from pydantic import ValidationError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, OutOfMemoryError, ReadOnlyError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from gateway import dead_letters, keys, metrics, prefetch
from gateway.pipeline import Pipeline
from gateway.settings import ConfigError
from gateway.streams import (
    Ack,
    Entry,
    PartitionLeases,
    PartitionReader,
    agree_on_partitions,
    ensure_groups,
    state_lost,
    trim_handled,
)

log = structlog.get_logger(__name__)

MAX_ATTEMPTS = 10
"""An entry that fails this often for a reason of its own (a bug, data a handler cannot take) is parked in
`sb:dead`, so one bad entry cannot hold its partition for ever. Outages do not count (see `transient`)."""
BACKOFF_BASE_S = 0.2
BACKOFF_CAP_S = 30.0
HANDOVER_POLL_S = 0.25
ATTEMPTS = f"{keys.PREFIX}attempts"
TRIM_EVERY_S = 30.0
"""How often a worker drops the entries of its partitions that are done with (`streams.trim_handled`)."""
STATE_LOST_HELP = (
    "streams and consumer groups are gone: Redis restarted without persistence or was flushed; messages "
    "accepted before are lost unless Redis persists (appendonly yes)"
)


REDIS_AWAY = (RedisConnectionError, RedisTimeoutError, ReadOnlyError, OutOfMemoryError, NoScriptError)
"""Redis gone, hung, or unable to take writes (a failover's old primary answering READONLY, a full one OOM): an
outage the worker waits out. A READONLY met by a commit was the entry's own failure, and met again while counting
that failure, it stopped the worker. NOSCRIPT too: redis-py loads a script the server lacks and calls it again, and
a Redis that restarts empty between the two answers NOSCRIPT once more (seen in CI: it killed the heartbeat)."""


def transient(exc: BaseException) -> bool:
    """An outside system that is down or slow (Slack answering 5xx or 429, a timeout, a refused
    connection): retried with back-off for as long as it lasts, never parked. Parking after a fixed number
    of attempts turned a Slack outage of a few minutes into messages no agent would ever see."""
    if isinstance(exc, (TimeoutError, ConnectionError, aiohttp.ClientError)):  # not any OSError: a missing
        # file or a permission error is a bug, and would hold the partition for ever
        return True
    status = getattr(getattr(exc, "response", None), "status_code", 0)
    return isinstance(status, int) and (status >= 500 or status == 429)


def described(exc: BaseException) -> str:
    """The error for logs and `sb:dead`. A validation error's own text quotes the input (a customer's or
    an agent's words): only where and what is kept."""
    if isinstance(exc, ValidationError):
        return "ValidationError: " + "; ".join(
            f"{'.'.join(str(x) for x in e['loc']) or 'value'}: {e['msg']}" for e in exc.errors()[:3])
    return repr(exc)


def worker_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class Worker:
    def __init__(
        self,
        redis: aioredis.Redis,
        pipeline: Pipeline,
        partitions: int,
        lease_ms: int,
        reclaim_idle_ms: int,
        name: str | None = None,
        backoff: tuple[float, float] = (BACKOFF_BASE_S, BACKOFF_CAP_S),
    ) -> None:
        self.redis = redis
        self.pipeline = pipeline
        self.partitions = partitions
        self.name = name or worker_name()
        self.leases = PartitionLeases(redis, self.name, partitions, lease_ms)
        self.reader = PartitionReader(redis, self.name)
        self.lease_ms = lease_ms
        self.reclaim_idle_ms = reclaim_idle_ms
        self.processed = 0
        self.ready = asyncio.Event()
        self.backoff = backoff
        """(first, longest) pause in seconds between attempts at a failing entry, doubling in between."""
        self._failing: set[str] = set()
        """Entries that failed here, so their counts are dropped once they succeed."""
        self._outages: dict[str, int] = {}
        """Outage failures per entry: they lengthen the pause but spend none of the entry's budget."""
        self._paused: dict[int, float] = {}
        """Partition → when its failed entry is tried again (monotonic). Its pause keeps only that partition from
        being read: waited out inside the batch, it held every other partition's next read too (up to 30 s a try)."""
        self._recovering = asyncio.Lock()
        self._stopping = asyncio.Event()
        self.handed_back = 0
        """Entries read but left, at a stop or a partition given up, for the partition's next owner (`_run_batch`)."""

    async def _heartbeat(self, stop: asyncio.Event) -> None:
        """Leases are renewed on their own schedule, so a long batch never outlives its lease.

        Between renewals the worker polls membership: when a worker joins, the one holding every
        partition gives its surplus up within a poll, and the newcomer (below its share) takes it.

        A heartbeat that fails for a reason it cannot wait out gives up every partition at once (no entry runs on
        a lease nobody renews: another worker takes the partition when it lapses) and the read loop raises its error.
        It used to die unnoticed until the stop, while the loop read on as the owner of leases it no longer held."""
        try:
            await self._beat(stop)
        except Exception:
            self.leases.forget()
            raise

    async def _beat(self, stop: asyncio.Event) -> None:
        due, trim_due = 0.0, time.monotonic() + TRIM_EVERY_S
        while not stop.is_set():
            try:
                now = time.monotonic()
                below_share = len(self.leases.owned) < self.leases.fair
                if now >= due or below_share or await self.leases.membership_changed():
                    await self._renew_and_balance()
                    due = now + self.lease_ms / 3000
                self.ready.set()
                if now >= trim_due:
                    trim_due = now + TRIM_EVERY_S
                    await self._trim()
            except (*REDIS_AWAY, OSError) as exc:
                log.warning("worker_heartbeat_failed", error=str(exc))
            except ResponseError as exc:  # a lease taken over on a wiped Redis: XAUTOCLAIM finds no group
                if not state_lost(exc):
                    raise
                await self._recover_state(exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=min(self.lease_ms / 3000, HANDOVER_POLL_S))

    async def _trim(self) -> None:
        for p in sorted(self.leases.owned):
            try:
                await trim_handled(self.redis, p)
            except ResponseError as exc:  # a stream or group deleted under us: recreated by the next read
                log.warning("stream_trim_failed", partition=p, error=str(exc))

    async def _recover_state(self, exc: ResponseError) -> None:
        """Recreate the consumer groups of a Redis that came back empty, and say so loudly once.

        Without this the worker exited on the first read after such a restart, taking the process with it,
        though nothing was wrong that recreating the groups would not fix. Leases vanish too; the heartbeat
        finds them gone and takes the partitions again, as after any lost lease. Only the caller that
        actually recreated a group logs the error: the read loop and the heartbeat both run into it, and
        other workers may have recreated the groups first."""
        try:
            async with self._recovering:
                created = await ensure_groups(self.redis, self.partitions)
                # The recorded count went too: recorded again, so a process started next is still checked.
                await agree_on_partitions(self.redis, self.partitions)
                if created:
                    log.error("redis_state_lost", worker=self.name, detail=STATE_LOST_HELP, cause=str(exc),
                              missing=f"consumer group {keys.INBOUND_GROUP!r} of {len(created)} of "
                                      f"{self.partitions} inbound streams", recreated=created)
                # The policy went with the streams: stored again now rather than at the next message's
                # refresh, so the web, the learner and `policy show` find it even while no message comes.
                await self.pipeline.policies.current(force=True)
        except (*REDIS_AWAY, OSError) as down:  # gone again: retried on the next read
            log.warning("worker_redis_unavailable", error=str(down) or type(down).__name__)
            await asyncio.sleep(1.0)
        except ConfigError as disagree:  # another process recorded another count first: said, not fatal here
            log.error("partitions_disagree", worker=self.name, error=str(disagree))
        except RuntimeError as exc_policy:  # no policy held here to store again: the next message says so
            log.error("policy_not_restored", error=str(exc_policy))

    async def _renew_and_balance(self) -> None:
        owned, claiming = await self.leases.heartbeat()
        for p in sorted(claiming):
            # We hold the lease, so whatever another consumer left pending is ours now, however
            # recently it was read: an idle threshold here would strand entries read just
            # before that worker died. Read only once that is done (its backlog first); a take-over
            # that fails is tried again at the next beat, the lease held meanwhile.
            await self.reader.take_over(p, 0)
            self.leases.claimed(p)
        for p in sorted(owned - self.leases.leaving):
            await self.reader.take_over(p, self.reclaim_idle_ms)  # safety net for stragglers

    async def _give_up_leaving(self) -> None:
        """Release what the heartbeat marked as surplus (`PartitionLeases.leaving`), from the read loop between
        batches: nothing of those partitions is in hand then, and what was read of them but not done stays pending
        for the next owner, who claims it once it holds the lease."""
        for p in sorted(self.leases.leaving):
            await self._give_up(p)

    async def _give_up(self, partition: int) -> None:
        await self.leases.release(partition)
        self.reader.backlog.discard(partition)
        self._paused.pop(partition, None)

    async def run(self, stop: asyncio.Event) -> None:
        self._stopping = stop
        log.info("worker_started", worker=self.name, partitions=self.partitions)
        beat: asyncio.Task[None] | None = None
        retrier = self.pipeline.retries
        retry_loop = asyncio.create_task(retrier.run(self.pipeline.requeue, stop)) if retrier else None
        down_since: float | None = None
        groups = False
        try:
            while not stop.is_set():
                if beat is not None and beat.done():
                    beat.result()  # the heartbeat failed: its error stops the worker (it gave the partitions up)
                try:
                    if not groups:  # inside the loop: a Redis that is down at start is waited for like any
                        await ensure_groups(self.redis, self.partitions)  # outage (it exited the process,
                        groups = True  # and with honcho every process beside it)
                        # Leases only once the groups exist: a take-over before them met NOGROUP and logged
                        # "Redis state lost" on an ordinary first start.
                        beat = asyncio.create_task(self._heartbeat(stop))
                    if self.leases.leaving:
                        await self._give_up_leaving()
                    now = time.monotonic()
                    owned = {p for p in self.leases.owned - self.leases.leaving if self._paused.get(p, 0.0) <= now}
                    if not owned:
                        # Woken as often as the heartbeat polls: a partition it marks as leaving meanwhile is
                        # released at the next turn, not up to a third of a lease later.
                        resumes = [self._paused[p] - now for p in self.leases.owned if p in self._paused]
                        await asyncio.wait_for(stop.wait(), timeout=max(0.01, min(
                            [self.lease_ms / 3000, HANDOVER_POLL_S, *resumes])))
                        continue
                    batches, redelivered = await self.reader.read(owned, block_ms=200)
                    if down_since is not None:  # the warnings said it went; this says it is back, and for how long
                        outage = round(time.monotonic() - down_since, 1)
                        log.info("worker_redis_back", worker=self.name, outage_s=outage)
                        down_since = None
                    await self._run_batches(batches, redelivered)
                except TimeoutError:  # waiting for a partition; TimeoutError is an OSError, so it comes first
                    continue
                except (*REDIS_AWAY, OSError) as exc:
                    log.warning("worker_redis_unavailable", error=str(exc) or type(exc).__name__)
                    down_since = down_since if down_since is not None else time.monotonic()
                    # What was read but not acknowledged is replayed first once Redis is back, not
                    # after the reclaim threshold.
                    self.reader.backlog.update(self.leases.owned)
                    await asyncio.sleep(1.0)
                except ResponseError as exc:
                    if not state_lost(exc):
                        raise
                    await self._recover_state(exc)
        finally:
            for task in (beat, retry_loop):
                if task is not None:
                    task.cancel()
                    # A heartbeat's own failure was raised by the loop already; awaited again here it would
                    # replace that error and skip the rest of the stop.
                    with contextlib.suppress(asyncio.CancelledError, *((Exception,) if task is beat else ())):
                        await task
            try:
                await self.leases.release_all()
            except (*REDIS_AWAY, OSError):
                pass
            log.info("worker_stopped", worker=self.name, processed=self.processed, handed_back=self.handed_back)

    async def _run_batches(self, batches: dict[int, list[Entry]], redelivered: bool) -> None:
        """Every partition's batch at once, and all of them finished before the first failure is raised.

        A plain `gather` raised as soon as one partition met a Redis error and left the others running: the
        loop read the pending entries again after its pause and started a second run of an entry still in
        Slack's hands, beside the first (two cards, or a commit over a newer one)."""
        firsts = await prefetch.read_firsts(self.pipeline.round_trips or self.redis, self.pipeline.store,
                                            [entries[0][1] if entries else {} for entries in batches.values()])
        runs = (self._run_batch(p, entries, redelivered, first)
                for (p, entries), first in zip(batches.items(), firsts, strict=True))
        results = await asyncio.gather(*runs, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def _run_batch(self, partition: int, entries: list[Entry], redelivered: bool = True,
                         first_read: Callable[[], Any] | None = None) -> None:
        """Sequential within a partition: stop at the first failure so order is kept on retry, and stop
        as soon as the partition's lease is gone (fencing: its new owner replays the rest).

        A stop finishes the entry in hand and leaves the rest of the batch pending: the next owner claims
        it when the released lease is taken. Working through it first took up to a minute on Slack's
        one post per second per channel, and the process manager's kill came first, in mid-entry. A partition the
        heartbeat gives up on a rebalance (`leaving`) is left the same way, and its lease goes as soon as its own
        batch is: kept until every partition's batch of the read was done, it left that partition's customers
        with nobody for up to a minute of another partition's paced posts."""
        read_ahead = first_read  # made with the other partitions' first reads (`prefetch.read_firsts`)
        for done, (entry_id, fields) in enumerate(entries):
            if self._stopping.is_set() or partition in self.leases.leaving:
                self.handed_back += len(entries) - done
                log.info("worker_handing_back", worker=self.name, partition=partition, entries=len(entries) - done,
                         first=entry_id)
                break
            if partition not in self.leases.owned:
                log.warning("partition_lost_mid_batch", partition=partition, worker=self.name)
                return
            then = entries[done + 1][1] if done + 1 < len(entries) else None
            ack = Ack(partition, entry_id, redelivered, then=then, read_before=read_ahead)
            try:
                await self.pipeline.handle(fields, ack)
            except REDIS_AWAY:
                raise
            except Exception as exc:
                await self._failed(partition, entry_id, fields, exc)
                return
            read_ahead = ack.read_ahead
            if not ack.done:
                await self.reader.ack(partition, entry_id)
            if self._failing and f"{partition}:{entry_id}" in self._failing:
                self._failing.discard(f"{partition}:{entry_id}")
                self._outages.pop(f"{partition}:{entry_id}", None)
                await self.redis.hdel(ATTEMPTS, f"{partition}:{entry_id}")
            metrics.worker_entry("acked")
            self.processed += 1
        if partition in self.leases.leaving and not self._stopping.is_set():
            await self._give_up(partition)

    async def _failed(self, partition: int, entry_id: str, fields: dict[str, str], exc: Exception) -> None:
        metrics.worker_entry("failed")
        # What was read after this entry stays pending, parked or not: replayed before anything new is read. The park
        # below returned before this, and newer entries went ahead of the rest of the batch (back after 30 s).
        self.reader.backlog.add(partition)
        attempt_key = f"{partition}:{entry_id}"  # stream ids repeat across partitions
        self._failing.add(attempt_key)
        outage = transient(exc)
        if outage:
            # Outages spend no budget (an entry's own failures after a long outage must still get all 10);
            # they are counted here only to lengthen the pause.
            self._outages[attempt_key] = attempts = self._outages.get(attempt_key, 0) + 1
            log.warning("pipeline_waiting_for_outside_system", conversation_id=fields.get("conv"), entry=entry_id,
                        attempt=attempts, error=described(exc)[:300])
        else:
            attempts = int(await self.redis.hincrby(ATTEMPTS, attempt_key, 1))
            log.error("pipeline_failed", conversation_id=fields.get("conv"), entry=entry_id, attempt=attempts,
                      error=described(exc), exc_info=None if isinstance(exc, ValidationError) else exc)
        if (attempts >= MAX_ATTEMPTS or isinstance(exc, dead_letters.ParkNow)) and not outage:
            await dead_letters.park(self.redis, fields, described(exc), entry=entry_id, partition=partition)
            await self.reader.ack(partition, entry_id)
            await self.redis.hdel(ATTEMPTS, attempt_key)
            self._failing.discard(attempt_key)
            self._outages.pop(attempt_key, None)
            metrics.worker_entry("dead_lettered")
            log.error("entry_dead_lettered", conversation_id=fields.get("conv"), entry=entry_id)
            try:
                await dead_letters.tell(self.pipeline, fields, dead_letters.summary(exc))
            except Exception as told:  # parked and listed either way; the note is a courtesy
                log.warning("dead_letter_not_told", conversation_id=fields.get("conv"), error=described(told))
            return
        first, longest = self.backoff
        self._paused[partition] = time.monotonic() + min(first * 2 ** min(attempts - 1, 30), longest)
