"""PolicyAdmin against a real Redis: optimistic versioning under contention, history, undo, stale
previews, canary lifecycle, and what other processes see."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis.asyncio as aioredis

from gateway.policy_admin import HISTORY, Change, ChangeError, PolicyAdmin, build_checked
from gateway.policy_store import CANDIDATE, PolicyStore, arm_of, arms_key
from router.policy import Policy, load_policy


async def admin_for(redis_url: str) -> tuple[PolicyAdmin, aioredis.Redis]:
    """A separate connection pool per admin, like separate gateway processes."""
    client = aioredis.from_url(redis_url)
    return PolicyAdmin(client, PolicyStore(client)), client


@pytest.fixture
async def admin(redis: aioredis.Redis) -> PolicyAdmin:
    store = PolicyStore(redis)
    await store.bootstrap(load_policy())
    return PolicyAdmin(redis, store)


def cap(agent: str, n: int) -> Change:
    return Change(f"capacity {agent} = {n}", lambda p: p.with_changes(capacity={**p.capacity, agent: n}))


async def test_forty_concurrent_changes_from_four_processes_lose_nothing(admin: PolicyAdmin, redis_url: str) -> None:
    others = [await admin_for(redis_url) for _ in range(4)]
    try:
        changes = [others[i % 4][0].apply(cap(f"U{i:03d}", i % 7), f"U0LEAD{i % 4}") for i in range(40)]
        applied = await asyncio.gather(*changes)
    finally:
        for _, client in others:
            await client.aclose()
    policy = await admin.policies.current(force=True)
    assert policy.version == 41
    assert policy.capacity == {f"U{i:03d}": i % 7 for i in range(40)}
    assert sorted(a.after.version for a in applied) == list(range(2, 42))
    assert await admin.redis.xlen(HISTORY) == 40


async def test_invalid_change_is_refused_with_the_model_message(admin: PolicyAdmin) -> None:
    bad = Change("urgent 3", lambda p: p.with_changes(thresholds={**p.thresholds.model_dump(), "urgent": 3}))
    with pytest.raises(ChangeError, match=r"thresholds.urgent: Input should be less than or equal to 1"):
        await admin.apply(bad, "U0LEAD")
    assert (await admin.policies.current(force=True)).version == 1
    assert await admin.redis.xlen(HISTORY) == 0


async def test_history_records_who_what_before_after(admin: PolicyAdmin) -> None:
    await admin.apply(cap("U0JANE", 2), "U0LEAD")
    row = (await admin.history())[0]
    assert row["user"] == "U0LEAD" and row["summary"] == "capacity U0JANE = 2" and row["action"] == "change"
    assert (row["before_version"], row["after_version"]) == ("1", "2") and float(row["at"]) > 0
    rows: Any = await admin.redis.xrevrange(HISTORY)
    _, raw = rows[0]
    assert Policy.from_json(raw[b"after"]).capacity == {"U0JANE": 2}
    assert Policy.from_json(raw[b"before"]).capacity == {}


async def test_undo_walks_back_and_refuses_after_outside_edits(admin: PolicyAdmin) -> None:
    await admin.apply(cap("U0A", 1), "U0LEAD")
    await admin.apply(cap("U0B", 2), "U0LEAD")
    first = await admin.undo("U0LEAD")
    assert first.after.capacity == {"U0A": 1} and first.after.version == 4
    second = await admin.undo("U0LEAD")
    assert second.after.capacity == {} and second.after.version == 5
    with pytest.raises(ChangeError, match="nothing to undo"):
        await admin.undo("U0LEAD")
    await admin.apply(cap("U0C", 3), "U0LEAD")
    live = await admin.policies.current(force=True)
    await admin.redis.set("sb:policy", live.with_changes(default_capacity=9).to_json())  # edited by hand
    with pytest.raises(ChangeError, match="was changed since"):
        await admin.undo("U0LEAD")


async def test_preview_is_stale_once_another_change_lands(admin: PolicyAdmin) -> None:
    live = await admin.policies.current(force=True)
    change = cap("U0A", 1)
    pending = await admin.stash("U0LEAD", change.summary, live.version, build_checked(change, live))
    await admin.apply(cap("U0B", 2), "U0OTHER")
    with pytest.raises(ChangeError, match="stale preview"):
        await admin.apply_pending(pending, "U0LEAD")
    assert await admin.pending(token=pending.token) is not None  # not consumed by a failed apply
    fresh_live = await admin.policies.current(force=True)
    fresh = await admin.stash("U0LEAD", change.summary, fresh_live.version, build_checked(change, fresh_live))
    assert (await admin.pending(user="U0LEAD")) == fresh
    applied = await admin.apply_pending(fresh, "U0LEAD")
    assert applied.after.capacity == {"U0A": 1, "U0B": 2}
    assert await admin.pending(token=fresh.token) is None
    assert 0 < await admin.redis.ttl("sb:policy:pending:user:U0LEAD") <= 15 * 60


async def test_canary_arms_seen_by_another_process(admin: PolicyAdmin, redis_url: str) -> None:
    pause = Change("automation pause", lambda p: p.with_changes(automation_paused=True))
    await admin.start_canary(pause, 30, "U0LEAD")
    worker_redis = aioredis.from_url(redis_url)
    try:
        worker_store = PolicyStore(worker_redis)
        ids = [f"conv_{i}" for i in range(200)]
        policies = [await worker_store.for_conversation(i) for i in ids]
        for cid, p in zip(ids, policies, strict=True):
            assert p.automation_paused is (arm_of(cid, 30) == CANDIDATE)
        canary = await worker_store.canary()
        assert canary is not None
        recorded: Any = await worker_redis.hgetall(arms_key(canary.id))
        assert {k.decode(): v.decode() for k, v in recorded.items()} == {i: arm_of(i, 30) for i in ids}
        await admin.drop_canary("U0LEAD")
        await asyncio.sleep(1.05)  # the store's one-second cache
        assert not (await worker_store.for_conversation("conv_0")).automation_paused
    finally:
        await worker_redis.aclose()
    actions = [r["action"] for r in await admin.history()]
    assert actions == ["canary_drop", "canary_start"]


async def test_promote_refuses_when_live_policy_moved(admin: PolicyAdmin) -> None:
    await admin.start_canary(cap("U0A", 1), 10, "U0LEAD")
    await admin.apply(cap("U0B", 2), "U0LEAD")
    with pytest.raises(ChangeError, match=r"changed .* while the canary ran"):
        await admin.promote_canary("U0LEAD")
