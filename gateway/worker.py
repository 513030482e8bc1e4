"""The worker loop: lease partitions, read in order, run the pipeline, acknowledge only after success."""

from __future__ import annotations

import asyncio
import os
import socket
import time
import uuid
from typing import Any

import redis.asyncio as aioredis
import structlog
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from gateway import keys
from gateway.pipeline import Pipeline
from gateway.streams import Entry, PartitionLeases, PartitionReader, ensure_groups

log = structlog.get_logger(__name__)

MAX_ATTEMPTS = 5
DEAD_LETTER = f"{keys.PREFIX}dead"
ATTEMPTS = f"{keys.PREFIX}attempts"


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

    async def run(self, stop: asyncio.Event) -> None:
        await ensure_groups(self.redis, self.partitions)
        log.info("worker_started", worker=self.name, partitions=self.partitions)
        next_beat = 0.0
        owned: set[int] = set()
        try:
            while not stop.is_set():
                try:
                    if time.monotonic() >= next_beat:
                        owned, acquired = await self.leases.heartbeat()
                        for p in sorted(acquired):
                            await self.reader.take_over(p, min(self.reclaim_idle_ms, self.lease_ms))
                        next_beat = time.monotonic() + self.lease_ms / 3000
                    if not owned:
                        await asyncio.wait_for(stop.wait(), timeout=self.lease_ms / 3000)
                        continue
                    batches = await self.reader.read(owned, block_ms=200)
                    await asyncio.gather(*(self._run_batch(p, entries) for p, entries in batches.items()))
                except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
                    log.warning("worker_redis_unavailable", error=str(exc))
                    await asyncio.sleep(1.0)
                except TimeoutError:
                    continue
        finally:
            try:
                await self.leases.release_all()
            except (RedisConnectionError, RedisTimeoutError, OSError):
                pass
            log.info("worker_stopped", worker=self.name, processed=self.processed)

    async def _run_batch(self, partition: int, entries: list[Entry]) -> None:
        """Sequential within a partition: stop at the first failure so order is kept on retry."""
        for entry_id, fields in entries:
            try:
                await self.pipeline.handle(fields)
            except (RedisConnectionError, RedisTimeoutError):
                raise
            except Exception as exc:
                await self._failed(partition, entry_id, fields, exc)
                return
            await self.reader.ack(partition, entry_id)
            self.processed += 1

    async def _failed(self, partition: int, entry_id: str, fields: dict[str, str], exc: Exception) -> None:
        attempts = int(await self.redis.hincrby(ATTEMPTS, entry_id, 1))
        log.error(
            "pipeline_failed",
            conversation_id=fields.get("conv"),
            entry=entry_id,
            attempt=attempts,
            error=repr(exc),
            exc_info=exc,
        )
        if attempts >= MAX_ATTEMPTS:
            dead: dict[Any, Any] = {**fields, "entry": entry_id, "error": repr(exc)[:500]}
            await self.redis.xadd(DEAD_LETTER, dead)
            await self.reader.ack(partition, entry_id)
            await self.redis.hdel(ATTEMPTS, entry_id)
            log.error("entry_dead_lettered", conversation_id=fields.get("conv"), entry=entry_id)
            return
        self.reader.backlog.add(partition)
        await asyncio.sleep(min(2.0**attempts * 0.1, 5.0))
