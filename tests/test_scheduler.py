"""SlaScheduler against a real redis-server with a ManualClock: no sleeps, exact firing."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest
import redis.asyncio as aioredis

from gateway.scheduler import LEASE_MARGIN_S, LEASE_S, Deadline, ManualClock, SlaScheduler, SystemClock
from router.policy import load_policy
from router.sla import ActionKind, SlaState, SlaStep, actions_due

DEFAULT = load_policy()
POLICY = DEFAULT.with_changes(escalation={**DEFAULT.escalation.model_dump(mode="json"), "clock": "calendar"})
"""Around the clock: these tests are about the scheduler, not business hours."""


async def test_schedule_due_cancel(redis: aioredis.Redis) -> None:
    clock = ManualClock(1000.0)
    s = SlaScheduler(redis)
    await s.schedule("conv_a", "warn", 1010)
    await s.schedule("conv_a", "escalate", 1020)
    await s.schedule("conv_b", "warn", 1015)
    await s.schedule("conv_a", "warn", 1012)  # re-schedule moves, does not duplicate
    assert await s.count() == 3
    assert await s.next_due() == 1012
    assert await s.poll(clock) == []
    clock.advance(15)
    handed = await s.poll(clock)
    assert handed == [Deadline("conv_a", "warn", 1012.0), Deadline("conv_b", "warn", 1015.0)]
    assert await s.poll(clock) == []  # leased: not handed out twice
    assert all([await s.done(d) for d in handed])
    assert await s.pending("conv_a") == [Deadline("conv_a", "escalate", 1020.0)]
    assert await s.cancel("conv_a") == 1
    clock.advance(LEASE_S + 100)
    assert await s.poll(clock) == []
    assert await s.redis.keys("sb:sla:kinds:*") == []  # index cleaned up as deadlines go


async def test_a_deadline_whose_handler_died_comes_back_when_its_lease_runs_out(redis: aioredis.Redis) -> None:
    """Popped outright, a step whose handler failed (or a worker killed mid-batch) was lost with every deadline
    after it in the batch: a ladder's last step, a bot's silence check. Now each is leased to its caller."""
    s = SlaScheduler(redis)
    await s.schedule("conv_a", "leads", 100)
    await s.schedule("conv_b", "leads", 101)
    first = await s.due(200)
    assert [d.conversation_id for d in first] == ["conv_a", "conv_b"]
    assert await s.done(first[0])  # conv_a handled; conv_b's handler died
    assert await s.due(200 + LEASE_S - 1) == []
    again = await s.due(200 + LEASE_S)
    assert again == [Deadline("conv_b", "leads", 200 + LEASE_S)]
    # A deadline its handler re-planned is the new one: giving the old lease back leaves it.
    await s.schedule("conv_b", "leads", 10_000)
    assert not await s.done(again[0])
    assert await s.pending("conv_b") == [Deadline("conv_b", "leads", 10_000.0)]


async def test_cancel_one_kind_and_limit(redis: aioredis.Redis) -> None:
    s = SlaScheduler(redis, key_prefix="t:sla")
    for i in range(5):
        await s.schedule(f"conv_{i}", "warn", 10 + i)
        await s.schedule(f"conv_{i}", "leads", 100 + i)
    assert await s.cancel("conv_0", "leads") == 1
    assert [d.conversation_id for d in await s.due(50, limit=3)] == ["conv_0", "conv_1", "conv_2"]
    assert len(await s.due(50 + LEASE_S - 1)) == 2 + 4  # not the three leased until 50 + LEASE_S
    with pytest.raises(ValueError):
        await s.schedule("bad|id", "warn", 1)


async def test_two_concurrent_pollers_fire_each_deadline_once(redis: aioredis.Redis, redis_url: str) -> None:
    second = aioredis.from_url(redis_url)
    try:
        a, b = SlaScheduler(redis), SlaScheduler(second)
        n = 2000
        pipe = redis.pipeline(transaction=False)
        for i in range(n):
            pipe.zadd("sb:sla:due", {f"conv_{i}|warn": float(i % 100)})
        await pipe.execute()
        got: list[Deadline] = []

        async def worker(s: SlaScheduler) -> None:
            while batch := await s.due(1000.0, limit=37):
                got.extend(batch)

        await asyncio.gather(worker(a), worker(b), worker(a), worker(b))
        assert len(got) == n
        assert len({d.conversation_id for d in got}) == n
    finally:
        await second.aclose()


async def test_unclaimed_conversation_escalates_when_deadline_passes(redis: aioredis.Redis) -> None:
    """End to end without sleeps: plan deadlines, move the clock, pop, decide, record the escalation."""
    clock = ManualClock(1_767_225_600.0)
    s = SlaScheduler(redis)
    state = SlaState("conv_esc", "billing", waiting_since=clock.now(), channel="support-billing")
    planned = await s.plan(state, POLICY)
    assert [d.kind for d in planned] == ["warn", "escalate", "leads"]

    fired: list[tuple[str, str]] = []
    for minutes in (5, 8, 11):  # 450 s warn, 600 s escalate
        clock.set(state.waiting_since + minutes * 60)
        for deadline in await s.poll(clock):
            for action in actions_due(state, POLICY, clock.now()):
                await s.record(action, clock.now())
                state = replace(state, done=state.done | {action.step.value})
                fired.append((deadline.kind, action.kind.value))
    assert fired == [("warn", "reping"), ("escalate", "move")]
    log = await s.escalations("conv_esc")
    assert [e["step"] for e in log] == ["escalate", "warn"]  # newest first
    assert log[0]["channel"] == "support-leads"
    assert log[0]["reason"] == "first-response SLA 10m breached: unclaimed for 11m → support-leads"
    # The customer gets an answer: re-planning drops the rest of the ladder.
    answered = SlaState("conv_esc", "billing", waiting_since=state.waiting_since, answered=True)
    assert await s.plan(answered, POLICY) == []
    assert await s.pending("conv_esc") == []


async def test_stale_deadline_does_nothing(redis: aioredis.Redis) -> None:
    clock = ManualClock(0.0)
    s = SlaScheduler(redis)
    await s.schedule("conv_x", SlaStep.ESCALATE.value, 600)
    clock.advance(601)
    (d,) = await s.poll(clock)
    resolved = SlaState(d.conversation_id, "billing", waiting_since=0.0, resolved=True)
    assert actions_due(resolved, POLICY, clock.now()) == []
    assert ActionKind.MOVE.value == "move"


def test_clocks() -> None:
    c = ManualClock(10)
    assert c.advance(5) == 15 and c.now() == 15
    c.set(3)
    assert c.now() == 3
    assert SystemClock().now() > 1_700_000_000


async def test_stage_replace_swaps_a_ladder_and_an_empty_one_cancels(redis: aioredis.Redis) -> None:
    s = SlaScheduler(redis)
    await s.schedule("c1", "warn", 100.0)
    await s.schedule("c1", "breach", 200.0)
    await s.schedule("c2", "warn", 150.0)
    async with redis.pipeline(transaction=True) as pipe:
        s.stage_replace(pipe, "c1", [Deadline("c1", "escalate", 300.0)])
        await pipe.execute()
    assert [(d.kind, d.due) for d in await s.pending("c1")] == [("escalate", 300.0)]
    assert len(await s.pending("c2")) == 1, "other conversations untouched"
    async with redis.pipeline(transaction=False) as pipe:
        s.stage_replace(pipe, "c1", [])
        await pipe.execute()
    assert await s.pending("c1") == [] and await s.count() == 1


async def test_a_fresh_ladder_is_written_as_the_script_writes_it(redis: aioredis.Redis) -> None:
    """A conversation never saved has no ladder: its first is two plain commands, with the script's result."""
    s = SlaScheduler(redis)
    ladder = [Deadline("c1", "warn", 100.25), Deadline("c1", "escalate", 200.0), Deadline("c1", "leads", 1e9 + 0.5)]
    written = []
    for fresh in (False, True):
        await redis.flushdb()
        async with redis.pipeline(transaction=True) as pipe:
            s.stage_replace(pipe, "c1", ladder, fresh=fresh)
            await pipe.execute()
        written.append((await redis.zrange(s.key, 0, -1, withscores=True),
                        sorted(await redis.smembers(s.index_prefix + "c1"))))
    assert written[0] == written[1] and len(written[0][0]) == 3
    async with redis.pipeline(transaction=True) as pipe:
        s.stage_replace(pipe, "c2", [], fresh=True)  # nothing planned, nothing written
        await pipe.execute()
    assert await s.pending("c2") == []


def test_a_lease_running_out_is_left_to_its_next_holder() -> None:
    """A hundred steps paced at one Slack post a second outlast the lease: the rest of the batch is left to run
    out and be handed out again, not raced against the worker it goes to (two pings for one step)."""
    d = Deadline("conv_a", "warn", 0.0, leased_until=1000.0)
    assert not d.running_out(1000.0 - LEASE_MARGIN_S - 0.1)
    assert d.running_out(1000.0 - LEASE_MARGIN_S)
