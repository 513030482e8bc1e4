"""`gateway.lean_exec` reads a pipeline's replies itself: its results and errors must be redis-py's, exactly.

Each case stages the same commands twice against the same data, once run by redis-py (`pipe.execute`) and once
by `lean_exec.execute`, and compares what comes back, errors by type and text.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline as RedisPipeline
from redis.exceptions import ResponseError, WatchError

from gateway import lean_exec
from gateway.redis_conn import redis_client, round_trip_client
from tests.conftest import free_port, start_redis

Stage = Callable[[RedisPipeline], None]


def reads_and_writes(pipe: RedisPipeline) -> None:
    """The shapes of the worker's commit and first read: hash, list, set, sorted set, script, misses."""
    pipe.hset("c", mapping={"state": '"waiting"', "n": "1"})
    pipe.hincrby("c", "version", 1)
    pipe.rpush("l", "a", "b")
    pipe.lrange("l", 0, -1)
    pipe.sadd("s", "x")
    pipe.smembers("s")
    pipe.zadd("z", {"m1": 1.5, "m2": 2.0})
    pipe.zrevrange("z", 0, -1)
    pipe.zrevrange("z", 0, -1, withscores=True)
    pipe.hgetall("c")
    pipe.hgetall("missing")
    pipe.get("missing")
    pipe.eval("return {KEYS[1], ARGV[1], 3}", 1, "k", "v")
    pipe.set("flag", "1", ex=60, nx=True)
    pipe.exists("c", "l", "nope")
    pipe.delete("s")


def with_a_wrong_type(pipe: RedisPipeline) -> None:
    """An error at run time (WRONGTYPE): the others still run, the error stands at its place."""
    pipe.set("str", "v")
    pipe.hgetall("str")
    pipe.incr("counter")
    pipe.lpush("str", "x")
    pipe.get("str")


def with_a_bad_command(pipe: RedisPipeline) -> None:
    """An error when queued (wrong arity): in a MULTI, Redis runs none of it (EXECABORT)."""
    pipe.set("a", "1")
    pipe.execute_command("GET", "a", "b")
    pipe.incr("counter")


def with_a_failing_script(pipe: RedisPipeline) -> None:
    pipe.set("a", "1")
    pipe.eval("return redis.call('HGET', KEYS[1], 'f')", 1, "a")
    pipe.get("a")


CASES = {"reads_and_writes": reads_and_writes, "wrong_type": with_a_wrong_type, "bad_command": with_a_bad_command,
         "failing_script": with_a_failing_script}


def shown(result: Any) -> Any:
    if isinstance(result, BaseException):
        return (type(result).__name__, str(result))
    if isinstance(result, list):
        return [shown(r) for r in result]
    return result


async def outcome(client: aioredis.Redis, stage: Stage, transaction: bool, raise_on_error: bool, lean: bool) -> Any:
    await client.flushdb()
    async with client.pipeline(transaction=transaction) as pipe:
        stage(pipe)
        assert lean_exec.leanable(pipe)
        try:
            run = lean_exec.execute(pipe, raise_on_error) if lean else pipe.execute(raise_on_error=raise_on_error)
            return shown(await run)
        except Exception as exc:  # compared, not hidden: both must raise the same
            return ("raised", *shown(exc))


@pytest.fixture
async def clients(redis_url: str) -> AsyncIterator[list[aioredis.Redis]]:
    """The lean pool and the main one, and the lean pool on RESP2 (redis-py 8 speaks RESP3 unless told)."""
    every = [round_trip_client(redis_url), redis_client(redis_url), round_trip_client(f"{redis_url}?protocol=2")]
    yield every
    for client in every:
        await client.flushdb()
        await client.aclose()


@pytest.fixture
async def refuses_hello() -> AsyncIterator[aioredis.Redis]:
    """A server (or proxy) that does not know HELLO: redis-py 8 falls back to RESP2 on each connection, and its
    replies then take RESP2's callbacks."""
    port, folder = free_port(), Path(tempfile.mkdtemp(prefix="sb-lean-"))
    server = start_redis(port, folder, "--save", "", "--appendonly", "no", "--rename-command", "HELLO", "")
    client = round_trip_client(f"redis://127.0.0.1:{port}/0")
    yield client
    await client.aclose()
    server.terminate()
    server.wait(timeout=10)
    shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("transaction", [True, False], ids=["multi", "pipeline"])
@pytest.mark.parametrize("raise_on_error", [True, False], ids=["raising", "collecting"])
async def test_the_same_results_and_errors_as_redis_py(clients: list[aioredis.Redis], case: str, transaction: bool,
                                                       raise_on_error: bool) -> None:
    for client in clients:  # the lean pool and the main one
        plain = await outcome(client, CASES[case], transaction, raise_on_error, lean=False)
        lean = await outcome(client, CASES[case], transaction, raise_on_error, lean=True)
        assert lean == plain
        # and after it the connection is in step: the next command reads its own reply
        assert await client.echo("next") == b"next"


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("transaction", [True, False], ids=["multi", "pipeline"])
async def test_a_connection_fallen_back_to_resp2_reads_as_redis_py_reads_it(refuses_hello: aioredis.Redis, case: str,
                                                                            transaction: bool) -> None:
    plain = await outcome(refuses_hello, CASES[case], transaction, False, lean=False)
    assert await outcome(refuses_hello, CASES[case], transaction, False, lean=True) == plain


async def test_multi_on_a_plain_pipeline_stays_a_transaction(clients: list[aioredis.Redis]) -> None:
    """`pipe.multi()` on a `transaction=False` pipeline: redis-py sends MULTI … EXEC, and so must this."""
    client = clients[0]
    answers = []
    for lean in (False, True):
        await client.flushdb()
        async with client.pipeline(transaction=False) as pipe:
            pipe.multi()
            pipe.set("a", "1")
            pipe.execute_command("GET", "a", "b")  # refused when queued: in a MULTI, nothing runs
            try:
                await (lean_exec.execute(pipe) if lean else pipe.execute())
            except ResponseError as exc:
                answers.append((str(exc), await client.get("a")))
    assert answers[0] == answers[1] and answers[0][1] is None


async def test_the_data_written_is_the_same(clients: list[aioredis.Redis]) -> None:
    client = clients[0]
    dumps = []
    for lean in (False, True):
        await outcome(client, reads_and_writes, True, True, lean)
        dumps.append({key: await client.dump(key) for key in sorted(await client.keys("*"))})
    assert dumps[0] == dumps[1] and dumps[0]


async def test_what_it_does_not_take_runs_as_redis_py_runs_it(redis: aioredis.Redis, redis_url: str) -> None:
    """A WATCH (and a registered script, which must be loaded first) are redis-py's to handle."""
    client = round_trip_client(redis_url)
    try:
        await client.set("watched", "1")
        async with client.pipeline(transaction=True) as pipe:
            await pipe.watch("watched")
            pipe.multi()
            pipe.set("watched", "2")
            assert not lean_exec.leanable(pipe)
            await redis.set("watched", "changed")  # another writer: the transaction must fail
            with pytest.raises(WatchError):
                await lean_exec.execute(pipe)
        script = client.register_script("return ARGV[1]")
        async with client.pipeline(transaction=True) as pipe:
            await script(args=["hi"], client=pipe)
            assert not lean_exec.leanable(pipe)
            assert await lean_exec.execute(pipe) == [b"hi"]
    finally:
        await client.aclose()


async def test_a_connection_redis_dropped_is_replaced_and_the_pipeline_sent_again() -> None:
    """A Redis restart closes every pooled connection: the next round trip goes out on a fresh one, as redis-py's
    pool does it (`retry_on_error`), instead of failing once per pooled connection."""
    port, folder = free_port(), Path(tempfile.mkdtemp(prefix="sb-lean-"))
    server = start_redis(port, folder, "--save", "", "--appendonly", "no")
    client = round_trip_client(f"redis://127.0.0.1:{port}/0")
    try:
        async with client.pipeline(transaction=True) as pipe:
            pipe.incr("n")
            assert await lean_exec.execute(pipe) == [1]
        server.terminate()
        server.wait(timeout=10)
        server = start_redis(port, folder, "--save", "", "--appendonly", "no")
        async with client.pipeline(transaction=True) as pipe:
            pipe.incr("n")
            pipe.get("n")
            assert await lean_exec.execute(pipe) == [1, b"1"]  # the new server starts empty
        # and a script: on a dropped connection once more, to a server that has not loaded it
        script = client.register_script(SCRIPT)
        assert await lean_exec.run_script(script, ["k"], ["a"]) == [1, b"k", b"a"]
        server.terminate()
        server.wait(timeout=10)
        server = start_redis(port, folder, "--save", "", "--appendonly", "no")
        assert await lean_exec.run_script(script, ["k"], ["b"]) == [1, b"k", b"b"]
    finally:
        await client.aclose()
        server.terminate()
        server.wait(timeout=10)
        shutil.rmtree(folder, ignore_errors=True)


async def test_a_failed_command_is_annotated_as_redis_py_annotates_it(clients: list[aioredis.Redis]) -> None:
    client = clients[0]
    await client.set("str", "v")
    async with client.pipeline(transaction=True) as pipe:
        pipe.get("str")
        pipe.hgetall("str")
        with pytest.raises(ResponseError, match=r"Command # 2 \(HGETALL str\) of pipeline caused error: WRONGTYPE"):
            await lean_exec.execute(pipe)


SCRIPT = """
if ARGV[1] == 'fail' then return redis.error_reply('NOPE the script said no') end
return {redis.call('INCR', 'calls'), KEYS[1], ARGV[1]}
"""


@pytest.mark.parametrize("arg", ["ok", "fail"])
async def test_a_script_answers_as_redis_pys_call_answers(clients: list[aioredis.Redis], arg: str) -> None:
    for client in clients:
        script = client.register_script(SCRIPT)
        answers = []
        for run in (script(keys=["k"], args=[arg]), lean_exec.run_script(script, ["k"], [arg])):
            await client.set("calls", 0)
            try:
                answers.append(shown(await run))
            except Exception as exc:
                answers.append(("raised", *shown(exc)))
        assert answers[0] == answers[1]
        assert await client.echo("next") == b"next"


async def test_a_script_redis_forgot_is_loaded_again(clients: list[aioredis.Redis]) -> None:
    client = clients[0]
    script = client.register_script(SCRIPT)
    assert await lean_exec.run_script(script, ["k"], ["a"]) == [1, b"k", b"a"]
    await client.script_flush()
    assert await lean_exec.run_script(script, ["k"], ["b"]) == [2, b"k", b"b"]
