"""The one way every process connects to Redis."""

from __future__ import annotations

import asyncio
import socket
import urllib.parse
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import redis.asyncio as aioredis
from hiredis import pack_command
from redis.asyncio.client import Pipeline as RedisPipeline
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from gateway import lean_exec

T = TypeVar("T")

_PLAIN = frozenset({str, bytes, int, float})


class _HiredisPacking(AbstractConnection):
    """Commands packed by hiredis in one call where redis-py's packing gives the same bytes.

    redis-py encodes every argument in Python before hiredis packs them (and chunks the result), which was
    a third of the worker's commit round trip (~65 µs of ~215, measured). For arguments of exactly these
    types hiredis writes what redis-py writes (checked over 42,000 numbers and strings, `inf` and `nan`
    included); anything else (a multi-word command name, a bool or None that redis-py refuses with
    DataError, a memoryview, an enum or other subclass, which redis-py spells with `repr`) takes redis-py's
    own path, errors and all.
    """

    def pack_command(self, *args: Any) -> list[bytes]:
        head = args[0] if args else None
        if type(head) is str and " " not in head and _PLAIN.issuperset(map(type, args)):
            return [pack_command(args)]
        return super().pack_command(*args)

    def pack_commands(self, commands: Any) -> list[bytes]:
        return [b"".join(chunk for args in commands for chunk in self.pack_command(*args))]


_PACKED: dict[type, type] = {}


def _packed_by_hiredis(pool: aioredis.ConnectionPool) -> None:
    """Swap the pool's connection class (plain, TLS or unix socket, as the URL chose) for one that packs with
    hiredis. Only for strict UTF-8, which is how hiredis writes strings (redis-py honours `encoding_errors`)."""
    base = pool.connection_class
    kwargs = pool.connection_kwargs
    encoding = str(kwargs.get("encoding", "utf-8")).lower().replace("-", "").replace("_", "")
    if encoding != "utf8" or kwargs.get("encoding_errors", "strict") != "strict" or not issubclass(
            base, AbstractConnection):
        return
    if base not in _PACKED:
        _PACKED[base] = type(f"Packed{base.__name__}", (_HiredisPacking, base), {})
    pool.connection_class = _PACKED[base]


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
    _packed_by_hiredis(pool)
    return aioredis.Redis.from_pool(pool)  # the client owns its pool: `aclose()` closes its sockets too


ROUND_TRIP_S = 5.0
"""The deadline of one hot-path round trip: the main pool's per-reply `socket_timeout`, for the whole pipeline."""


_KEEPALIVE = {opt: value for name, value in (("TCP_KEEPIDLE", 30), ("TCP_KEEPINTVL", 10), ("TCP_KEEPCNT", 3))
              if (opt := getattr(socket, name, None)) is not None}
"""Probe after 30 s idle, every 10 s, give up after 3: a dead peer is found within a minute of quiet, and the
probes keep a NAT's entry for the flow alive (where the platform has the options; elsewhere its defaults)."""


ROUND_TRIP_CONNECTIONS = 64
"""The lean pool's most connections per process, as the main pool's: the web process takes one per request in
flight, so without a cap a burst of requests opened as many connections (and file descriptors)."""


class _CappedPool(aioredis.ConnectionPool):
    """At most `cap` connections out at once; more callers wait (within their round trip's deadline).

    redis-py's own blocking pool waits through a condition inside a timeout on every call, uncontended or not,
    which was ~9% of the web process's CPU per message; an uncontended semaphore costs nothing."""

    def __init__(self, *args: Any, cap: int = ROUND_TRIP_CONNECTIONS, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._slots = asyncio.Semaphore(cap)
        self._out: set[Any] = set()
        """Connections handed out: only their release frees a slot. A failed connect is released inside
        redis-py's own `get_connection` too, and counting that as well grew the cap by one per refused connect."""

    async def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        await self._slots.acquire()
        try:
            connection = await super().get_connection(*args, **kwargs)
        except BaseException:
            self._slots.release()
            raise
        self._out.add(connection)
        return connection

    async def release(self, connection: Any) -> None:
        try:
            await super().release(connection)
        finally:
            if connection in self._out:
                self._out.discard(connection)
                self._slots.release()


def round_trip_client(url: str, cap: int = ROUND_TRIP_CONNECTIONS) -> aioredis.Redis:
    """A second pool to the same server for the round trips every message costs: the web process's ingest, and
    the worker's read and commit.

    The main pool arms a timer for every reply it reads (`socket_timeout`), waits for a free connection
    through a condition and a `wait_for` task, and pings a connection idle for 10 s: with ~20 replies per
    routed message that was about a tenth of the worker's CPU (profiled). Here the deadline is one timer
    per round trip (`within`), the pool waits only when all its connections are out (`_CappedPool`: a worker's
    partition holds one at a time, a web process one per request in flight), and a connection that died with a
    Redis restart is retried on a fresh one. Idle connections send TCP keepalives every 30 s (`_KEEPALIVE`) in
    place of the pings: a NAT or firewall that forgets a quiet flow without closing it would otherwise leave
    the next round trip hanging until the deadline, read as a Redis outage.
    """
    pool = _CappedPool.from_url(
        url, cap=cap, max_connections=cap, socket_timeout=None, socket_connect_timeout=ROUND_TRIP_S,
        health_check_interval=0,
        retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), retries=2), retry_on_error=[RedisConnectionError],
    )
    if issubclass(pool.connection_class, aioredis.Connection):  # TCP (plain or TLS): a unix socket takes no keepalive
        pool.connection_kwargs.update(socket_keepalive=True, socket_keepalive_options=_KEEPALIVE)
    _packed_by_hiredis(pool)
    return aioredis.Redis.from_pool(pool)  # the client owns its pool: `aclose()` closes its sockets too


async def within(call: Awaitable[T], seconds: float = ROUND_TRIP_S) -> T:
    """`call` (a round trip on the lean pool) within one deadline; a miss is redis-py's TimeoutError, as the main
    pool's would be, so callers treat a hung Redis as the outage it is (a worker retries, the API answers 503).
    Cancelled mid-read, redis-py drops the connection (it disconnects on any BaseException while a reply is
    owed), so no later caller reads this one's replies."""
    try:
        async with asyncio.timeout(seconds):
            return await call
    except TimeoutError as exc:
        raise RedisTimeoutError(f"Redis did not answer within {seconds:g} s") from exc


async def execute(pipe: RedisPipeline, seconds: float = ROUND_TRIP_S, raise_on_error: bool = True) -> list[Any]:
    """`pipe.execute()` within one deadline (`within`), its replies read in one pass (`lean_exec`)."""
    return await within(lean_exec.execute(pipe, raise_on_error), seconds)


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
