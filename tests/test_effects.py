"""Exactly-once effects on a real Redis: markers, first deliveries, redeliveries and deferred results."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from gateway.effects import Effects

KEY = "sb:conv:c1:effects"


class Outside:
    """Stands in for Slack: counts what was really done and can be searched afterwards."""

    def __init__(self) -> None:
        self.done: list[str] = []
        self.searched: list[float] = []

    async def do(self) -> str:
        self.done.append("card")
        return f"C1|{len(self.done)}"

    async def find(self, since: float) -> str | None:
        self.searched.append(since)
        return f"C1|{len(self.done)}" if self.done else None


async def test_a_redelivery_finds_what_a_fresh_attempt_did_before_crashing(redis: aioredis.Redis) -> None:
    outside = Outside()
    first = Effects(redis, KEY, {}, fresh=True)

    async def crash_after() -> str:
        await outside.do()
        raise RuntimeError("worker died right after the call")

    with pytest.raises(RuntimeError):
        await first.once("card", crash_after, outside.find, deferred=True)
    assert await redis.hgetall(KEY) == {}, "a first delivery writes no pending marker"

    again = Effects(redis, KEY, {}, since=1_700_000_000.0)
    result, performed = await again.once("card", outside.do, outside.find)
    assert (result, performed) == ("C1|1", False)
    assert outside.done == ["card"] and outside.searched == [1_700_000_000.0]
    assert await redis.hget(KEY, "card") == b"C1|1"


async def test_a_redelivery_does_the_effect_when_nothing_was_done(redis: aioredis.Redis) -> None:
    outside = Outside()
    result, performed = await Effects(redis, KEY, {}, since=5.0).once("card", outside.do, outside.find)
    assert (result, performed) == ("C1|1", True)
    assert outside.searched == [5.0]


async def test_deferred_result_is_written_only_with_the_callers_transaction(redis: aioredis.Redis) -> None:
    outside = Outside()
    effects = Effects(redis, KEY, {}, fresh=True)
    await effects.once("card", outside.do, outside.find, deferred=True)
    assert await redis.hget(KEY, "card") is None
    assert (await effects.once("card", outside.do, outside.find)) == ("C1|1", False), "known in memory"
    async with redis.pipeline(transaction=True) as pipe:
        effects.stage(pipe)
        await pipe.execute()
    assert await redis.hget(KEY, "card") == b"C1|1"
    assert outside.done == ["card"]


async def test_without_delivery_information_a_marker_guards_the_call(redis: aioredis.Redis) -> None:
    outside = Outside()
    seen: list[bytes | str | None] = []

    async def do() -> str:
        seen.append(await redis.hget(KEY, "card"))
        return await outside.do()

    result, performed = await Effects(redis, KEY).once("card", do, outside.find)
    assert performed and result == "C1|1"
    assert isinstance(seen[0], bytes) and seen[0].startswith(b"pending:")
    assert await redis.hget(KEY, "card") == b"C1|1"
