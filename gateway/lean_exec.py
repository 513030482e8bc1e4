"""A pipeline's replies read in one pass, for the round trips every message costs.

redis-py reads each reply of a pipeline through three layers (the pipeline's `parse_response`, the client's, the
connection's), and in a `MULTI` once more for each "QUEUED"; since 8.x each execute also checks every command for
HIMPORT and records its duration. The worker's commit queues ~17 commands and its first read 6: that was ~23 µs of
client CPU per commit of the ~150 it cost (measured on a commit-shaped MULTI). Here the same bytes go out and
each reply is read with the connection's own `read_response`, then given redis-py's response callbacks, as redis-py
gives them. The results are redis-py's, errors included (`tests/test_lean_exec.py` compares them).

Used only where nothing else is asked of redis-py: no WATCH, no registered `Script` (it would need loading first),
no per-command options beyond those the callbacks take. Anything else runs `pipe.execute()`. RESP2 or RESP3 (redis-py
8's default): the replies are read by the connection and given the callbacks redis-py would give them.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from redis.asyncio.client import Pipeline as RedisPipeline
from redis.commands.core import AsyncScript
from redis.exceptions import ExecAbortError, NoScriptError, ResponseError, WatchError

_fallback_callback: Callable[..., Any] | None
try:  # redis-py 8's choice of callbacks for a connection that fell back to RESP2; before 8 there is no fallback
    from redis._parsers.response_callbacks import _get_response_callback

    _fallback_callback = _get_response_callback
except ImportError:  # pragma: no cover - older redis-py
    _fallback_callback = None

T = TypeVar("T")

_PLAIN_OPTIONS = frozenset({"keys", "withscores", "score_cast_func", "justid"})
"""Options redis-py's command methods put on the commands we pipeline; the callbacks take them. Any other (a
NEVER_DECODE, an EMPTY_RESPONSE) changes how redis-py reads the reply: such a pipeline takes redis-py's path."""


def leanable(pipe: RedisPipeline) -> bool:
    if pipe.watching or pipe.scripts or not pipe.command_stack:
        return False
    return all(_PLAIN_OPTIONS.issuperset(options) for _, options in pipe.command_stack)


def _callback(callbacks: Any, name: Any, conn: Any) -> Any:
    """The command's response callback, chosen as redis-py chooses it: a connection whose server refused RESP3's
    HELLO fell back to RESP2 (redis-py 8), and its replies take RESP2's callbacks."""
    if _fallback_callback is not None and getattr(conn, "_resp2_fallback", False):
        return _fallback_callback(callbacks, name, conn)
    return callbacks.get(name)


async def _connection(pool: Any, command: str) -> Any:
    try:
        return await pool.get_connection()
    except TypeError:  # redis-py before 5.1 names the command
        return await pool.get_connection(command)


async def execute(pipe: RedisPipeline, raise_on_error: bool = True) -> list[Any]:
    """`pipe.execute(raise_on_error)`, with the same results and errors."""
    if not leanable(pipe):
        return list(await pipe.execute(raise_on_error=raise_on_error))
    commands = pipe.command_stack
    transaction = pipe.is_transaction or pipe.explicit_transaction  # as redis-py tells them apart
    conn = await _connection(pipe.connection_pool, "MULTI" if transaction else "_")
    read = _transaction if transaction else _pipeline
    try:
        response = await conn.retry.call_with_retry(lambda: _in_step(conn, read(pipe, conn, commands)), _dropped)
    finally:
        await pipe.connection_pool.release(conn)
        await pipe.reset()
    if raise_on_error:
        pipe.raise_first_error(commands, response)
    return response


async def run_script(script: AsyncScript, keys: list[Any], args: list[Any]) -> Any:
    """`await script(keys=keys, args=args)` as one EVALSHA read directly: redis-py's call goes through the same layers
    (~13 µs of the web process's CPU per message, measured). A script Redis does not know (restarted, flushed) is
    loaded and run by redis-py's own call."""
    pool = getattr(script.registered_client, "connection_pool", None)  # a cluster client has none: redis-py's call
    if pool is None:
        return await script(keys=keys, args=args)
    conn = await _connection(pool, "EVALSHA")

    async def call() -> Any:
        await conn.send_packed_command(conn.pack_command("EVALSHA", script.sha, len(keys), *keys, *args))
        return await conn.read_response()

    try:
        return await conn.retry.call_with_retry(lambda: _in_step(conn, call()), _dropped)
    except NoScriptError:
        pass
    finally:
        await pool.release(conn)
    return await script(keys=keys, args=args)


async def _in_step(conn: Any, call: Awaitable[T]) -> T:
    """One attempt of a round trip. Anything but a Redis answer (a dead connection after a Redis restart, a
    cancellation mid-read) may leave replies on the socket: the connection is dropped, and the retry (redis-py's
    `retry_on_error` of the pool, as redis-py does it) sends again on a fresh one."""
    try:
        return await call
    except ResponseError:
        raise  # an answer, read whole: the connection is in step
    except BaseException:
        await conn.disconnect()
        raise


async def _dropped(error: Exception) -> None:
    """Between attempts: `_in_step` has already dropped the connection (the next send opens a fresh one)."""


async def _pipeline(pipe: RedisPipeline, conn: Any, commands: list[Any]) -> list[Any]:
    await conn.send_packed_command(conn.pack_commands([args for args, _ in commands]))
    callbacks = pipe.response_callbacks
    out: list[Any] = []
    for args, options in commands:
        try:
            reply = await conn.read_response()
        except ResponseError as err:
            out.append(err)
            continue
        callback = _callback(callbacks, args[0], conn)
        out.append(reply if callback is None else await _called(callback, reply, options))
    return out


async def _transaction(pipe: RedisPipeline, conn: Any, commands: list[Any]) -> list[Any]:
    await conn.send_packed_command(conn.pack_commands([("MULTI",), *(args for args, _ in commands), ("EXEC",)]))
    errors: list[tuple[int, ResponseError]] = []
    for i in range(len(commands) + 1):  # MULTI's OK, then QUEUED or an error for each command
        try:
            await conn.read_response()
        except ResponseError as err:
            if i:
                pipe.annotate_exception(err, i, commands[i - 1][0])
                errors.append((i - 1, err))
    try:
        response = await conn.read_response()
    except ExecAbortError as aborted:
        if errors:
            raise errors[0][1] from aborted
        raise
    if response is None:
        raise WatchError("Watched variable changed.")
    for i, error in errors:
        response.insert(i, error)
    if len(response) != len(commands):
        await conn.disconnect()
        raise ResponseError("Wrong number of response items from pipeline execution")
    callbacks = pipe.response_callbacks
    out: list[Any] = []
    for reply, (args, options) in zip(response, commands, strict=True):
        callback = None if isinstance(reply, Exception) else _callback(callbacks, args[0], conn)
        out.append(reply if callback is None else await _called(callback, reply, options))
    return out


async def _called(callback: Any, reply: Any, options: dict[str, Any]) -> Any:
    """The reply as redis-py gives it: through the command's callback, without `keys` (there for its client-side
    cache); a callback may be a coroutine function."""
    result = callback(reply, **{k: v for k, v in options.items() if k != "keys"})
    return await result if inspect.isawaitable(result) else result
