"""A real Redis that refuses writes, the two ways production sees it: a failover that left us talking to a
replica (READONLY) and memory full under `noeviction` (OOM). Both are error replies, not lost connections,
and handlers that caught only connection errors answered them with a 500."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import redis.asyncio as aioredis

from tests.conftest import free_port


@asynccontextmanager
async def read_only(redis: aioredis.Redis) -> AsyncIterator[None]:
    """The server becomes a replica of a primary that is not there: it keeps its data and refuses writes
    with READONLY, as an old primary does after a failover, until it is made a primary again."""
    await redis.execute_command("REPLICAOF", "127.0.0.1", str(free_port()))
    try:
        yield
    finally:
        await redis.execute_command("REPLICAOF", "NO", "ONE")


@asynccontextmanager
async def out_of_memory(redis: aioredis.Redis) -> AsyncIterator[None]:
    """maxmemory 1 byte under noeviction: every command that may grow memory is refused with OOM."""
    await redis.config_set("maxmemory", 1)
    try:
        yield
    finally:
        await redis.config_set("maxmemory", 0)


REFUSALS: dict[str, Callable[[aioredis.Redis], AbstractAsyncContextManager[None]]] = {
    "readonly": read_only, "oom": out_of_memory,
}
