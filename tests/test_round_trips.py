"""The worker's lean pool (`redis_conn.round_trip_client`): one deadline per round trip, and nothing owed.

It reads no reply under a per-reply timer, so these check what that timer used to give: a hung Redis is a
redis-py TimeoutError within the deadline (the worker's outage handling), the connection it hung on is not
handed to the next caller with the late replies still owed, and a connection Redis dropped is retried.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from gateway.redis_conn import execute, round_trip_client


async def _read(client: aioredis.Redis, *names: str, seconds: float = 5.0) -> list[Any]:
    async with client.pipeline(transaction=False) as pipe:
        for name in names:
            pipe.get(name)
        return await execute(pipe, seconds)


async def _burst(admin: aioredis.Redis, lean: aioredis.Redis, n: int) -> tuple[list[Any], int]:
    """`n` reads at once on `lean`, and the most connections the server saw open for them meanwhile."""
    before = len(await admin.client_list())
    most = 0
    done = asyncio.Event()

    async def count() -> None:
        nonlocal most
        while not done.is_set():
            most = max(most, len(await admin.client_list()) - before)
            await asyncio.sleep(0)

    counting = asyncio.create_task(count())
    results = await asyncio.gather(*(_read(lean, "a") for _ in range(n)))
    done.set()
    await counting
    return results, max(most, len(await admin.client_list()) - before)


async def test_a_hung_redis_is_a_redis_timeout_and_the_late_replies_are_not_read_by_the_next_caller(
    redis: aioredis.Redis, redis_url: str
) -> None:
    await redis.mset({"a": "1", "b": "2"})
    lean = round_trip_client(redis_url)
    try:
        assert await _read(lean, "a") == [b"1"]  # a connection in the pool, then Redis stops answering
        await redis.execute_command("CLIENT", "PAUSE", "800", "ALL")
        started = time.monotonic()
        with pytest.raises(RedisTimeoutError, match=r"within 0\.3 s"):
            await _read(lean, "a", seconds=0.3)
        assert time.monotonic() - started < 0.7
        await asyncio.sleep(0.8)  # the pause ends and the server sends the reply it owed
        # Same pool, other keys: a reused connection would hand this caller "1" (the hung call's reply).
        assert await _read(lean, "b", "a") == [b"2", b"1"]
        assert await _read(lean, "a", "b") == [b"1", b"2"]
    finally:
        await lean.aclose()


async def test_a_connection_redis_dropped_is_retried_on_a_fresh_one(redis: aioredis.Redis, redis_url: str) -> None:
    await redis.set("a", "1")
    lean = round_trip_client(redis_url)
    try:
        await lean.client_setname("lean")
        assert await _read(lean, "a") == [b"1"]
        killed = await redis.execute_command("CLIENT", "KILL", "SKIPME", "yes", "TYPE", "normal")
        assert killed >= 1
        assert await _read(lean, "a") == [b"1"]  # what a restarted Redis does to every pooled connection
    finally:
        await lean.aclose()


async def test_a_burst_wider_than_the_cap_queues_on_the_cap_connections(redis: aioredis.Redis, redis_url: str) -> None:
    """A web process takes a connection per request in flight: a burst of 300 must not open 300 (nor fail)."""
    from gateway.redis_conn import ROUND_TRIP_CONNECTIONS

    await redis.set("a", "1")
    lean = round_trip_client(redis_url)
    try:
        results, most = await _burst(redis, lean, 300)
        assert results == [[b"1"]] * 300
        assert 1 <= most <= ROUND_TRIP_CONNECTIONS
        cancelled = asyncio.create_task(_read(lean, "a"))  # a caller cancelled while it waits gives its slot back
        cancelled.cancel()
        assert await asyncio.gather(*(_read(lean, "a") for _ in range(ROUND_TRIP_CONNECTIONS))) == [[b"1"]] * 64
    finally:
        await lean.aclose()


async def test_the_gateway_routes_through_its_lean_pool_to_the_same_server(gateway: Any) -> None:
    pipeline = gateway.rt.pipeline
    assert pipeline.round_trips is not None
    await pipeline.redis.set("probe", "main")
    assert await pipeline.round_trips.get("probe") == b"main"


async def test_hiredis_packing_writes_what_redis_py_writes_and_leaves_the_rest_to_it(redis_url: str) -> None:
    """Both pools pack with hiredis in one call; every other argument keeps redis-py's packing and errors."""
    from redis.asyncio.connection import Connection
    from redis.exceptions import DataError

    from gateway.redis_conn import redis_client

    plain = Connection()
    for client in (redis_client(redis_url), round_trip_client(redis_url)):
        try:
            await client.flushdb()
            conn = client.connection_pool.make_connection()
            assert type(conn).__name__ == "PackedConnection"
            cases: list[tuple[Any, ...]] = [
                ("SET", "k", "v"), ("SET", "k", "日本 é"), ("ZADD", "z", 1796627475.5, "m"),
                ("ZADD", "z", float("inf"), "m"), ("HSET", "h", "f", -3, "g", 2**70), ("SET", b"k", b"\x00"),
            ]
            for args in cases:
                assert conn.pack_command(*args) == [b"".join(plain.pack_command(*args))]
            # redis-py's own spelling: a multi-word command name split, a memoryview as bytes
            others: list[tuple[Any, ...]] = [("CLIENT KILL", "ID", 1), ("SET", "k", memoryview(b"v"))]
            for args in others:
                assert b"".join(conn.pack_command(*args)) == b"".join(plain.pack_command(*args))
            with pytest.raises(DataError):
                conn.pack_command("SET", "k", True)
            # and over a real round trip, commands and replies as ever
            await client.zadd("z", {"m": 1.5, "n": 2**53})
            async with client.pipeline(transaction=True) as pipe:
                pipe.set("k", "日本")
                pipe.get("k")
                pipe.zrange("z", 0, -1, withscores=True)
                assert await pipe.execute() == [True, "日本".encode(), [(b"m", 1.5), (b"n", float(2**53))]]
        finally:
            await client.flushdb()
            await client.aclose()


async def test_closing_a_client_closes_its_pool_and_lenient_encodings_keep_redis_py_packing(
    redis: aioredis.Redis, redis_url: str
) -> None:
    from gateway.redis_conn import redis_client

    async def clients() -> int:
        return len(await redis.client_list())

    before = await clients()
    for client in (redis_client(redis_url), round_trip_client(redis_url)):
        await asyncio.gather(*(_read(client, "a") for _ in range(3)))  # several pooled connections
        await client.aclose()
    assert await clients() == before  # closed, not left for the garbage collector (a ResourceWarning each)
    lenient = redis_client(redis_url + "?encoding_errors=replace")
    try:
        conn = lenient.connection_pool.make_connection()
        assert type(conn).__name__ == "Connection"  # hiredis would refuse what redis-py replaces
    finally:
        await lenient.aclose()


async def test_refused_connects_do_not_widen_the_cap_and_a_unix_socket_works(tmp_path: Path) -> None:
    """Found in review: a refused connect gave its slot back twice (redis-py releases it too), so every one
    during an outage let one more connection out afterwards; and the keepalive options broke a unix:// URL."""
    from tests.conftest import free_port, start_redis

    port = free_port()
    lean = round_trip_client(f"redis://127.0.0.1:{port}/0", cap=2)
    proc = None
    try:
        for _ in range(5):  # Redis not there yet: each read is refused
            with pytest.raises(RedisConnectionError):
                await _read(lean, "a")
        sock = tmp_path / "redis.sock"
        proc = start_redis(port, tmp_path, "--save", "", "--appendonly", "no", "--unixsocket", str(sock))
        admin = aioredis.from_url(f"redis://127.0.0.1:{port}/0")
        results, most = await _burst(admin, lean, 40)
        assert results == [[None]] * 40
        assert most <= 2
        over_unix = round_trip_client(f"unix://{sock}")
        try:
            await over_unix.set("u", "1")
            assert await _read(over_unix, "u") == [b"1"]
        finally:
            await over_unix.aclose()
        await admin.aclose()
    finally:
        await lean.aclose()
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=10)
