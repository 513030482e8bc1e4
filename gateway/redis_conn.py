"""The one way every process connects to Redis."""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError


def redis_client(url: str, max_connections: int = 64) -> aioredis.Redis:
    """A bounded pool that waits for a free connection under bursts instead of failing at once."""
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=5,
        health_check_interval=10,
        socket_timeout=5,
        # A pooled connection that died with a Redis restart is retried on a fresh one. Ingest
        # de-duplicates and side effects sit behind effect markers, so a retried write cannot
        # double what a customer or agent sees.
        retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), retries=2),
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
    )
    return aioredis.Redis(connection_pool=pool)


def as_str(value: object) -> str:
    """redis-py answers bytes unless the client decodes; every reader of raw replies normalises here."""
    return value.decode() if isinstance(value, bytes) else str(value)


def stream_rows(raw: Any) -> list[tuple[str, dict[str, str]]]:
    """An XRANGE/XREVRANGE reply as (entry id, fields as text); an entry deleted meanwhile has no fields."""
    return [(as_str(i), {as_str(k): as_str(v) for k, v in (f or {}).items()}) for i, f in raw or []]


SCAN_CHUNK = 1000


async def xdel_where(
    redis: aioredis.Redis, stream: str, pick: Callable[[dict[str, str]], bool], chunk: int = SCAN_CHUNK
) -> list[tuple[str, dict[str, str]]]:
    """XDEL the entries `pick` chooses, reading the stream oldest first in chunks (it may be long); returns them."""
    dropped: list[tuple[str, dict[str, str]]] = []
    start = "-"
    while rows := stream_rows(await redis.xrange(stream, min=start, max="+", count=chunk)):
        doomed = [(entry_id, data) for entry_id, data in rows if pick(data)]
        if doomed:
            await redis.xdel(stream, *(entry_id for entry_id, _ in doomed))
            dropped += doomed
        ms, seq = rows[-1][0].split("-")
        start = f"{ms}-{int(seq) + 1}"
    return dropped


def shown(url: str) -> str:
    """A Redis URL fit for a terminal or a log: the password masked.

    >>> shown("redis://:hunter2@cache:6379/0"), shown("redis://cache:6379/0")
    ('redis://:***@cache:6379/0', 'redis://cache:6379/0')
    """
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))
