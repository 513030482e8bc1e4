"""PolicyAdmin against a real Redis: optimistic versioning under contention, history, undo, stale
previews, canary lifecycle, and what other processes see."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis.asyncio as aioredis

from gateway.policy_admin import HISTORY, Change, ChangeError, PolicyAdmin, build_checked
from gateway.policy_store import CANDIDATE, PolicyStore, arm_of, arms_key
from integrations.slack.commands.previews import Previews
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
    previews = Previews(admin.redis, admin)
    live = await admin.policies.current(force=True)
    change = cap("U0A", 1)
    pending = await previews.stash("U0LEAD", change.summary, live.version, build_checked(change, live))
    await admin.apply(cap("U0B", 2), "U0OTHER")
    with pytest.raises(ChangeError, match="stale preview"):
        await previews.apply(pending, "U0LEAD")
    assert await previews.get(token=pending.token) is not None  # not consumed by a failed apply
    fresh_live = await admin.policies.current(force=True)
    fresh = await previews.stash("U0LEAD", change.summary, fresh_live.version, build_checked(change, fresh_live))
    assert (await previews.get(user="U0LEAD")) == fresh
    applied = await previews.apply(fresh, "U0LEAD")
    assert applied.after.capacity == {"U0A": 1, "U0B": 2}
    assert await previews.get(token=fresh.token) is None
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


async def test_promote_refuses_when_live_policy_moved_outside_the_admin(admin: PolicyAdmin) -> None:
    await admin.start_canary(cap("U0A", 1), 10, "U0LEAD")
    live = await admin.policies.current(force=True)
    # Edited by hand, not through the admin: the canary could not follow.
    await admin.redis.set("sb:policy", live.with_changes(default_capacity=9).to_json())
    with pytest.raises(ChangeError, match=r"changed .* while the canary ran"):
        await admin.promote_canary("U0LEAD")


async def test_no_op_changes_are_refused_and_old_no_op_entries_skipped_by_undo(admin: PolicyAdmin) -> None:
    await admin.apply(cap("U0A", 1), "U0LEAD")
    with pytest.raises(ChangeError, match=r"nothing to change: the policy already has capacity U0A = 1 \(v2\)"):
        await admin.apply(cap("U0A", 1), "U0OTHER")
    live = await admin.policies.current(force=True)
    with pytest.raises(ChangeError, match="nothing to change"):
        await admin.apply_exact(live.with_changes(), live.version, "U0OTHER", "same again")
    assert await admin.redis.xlen(HISTORY) == 1
    # A no-op recorded by an older version (v2 → v3, same content) is not what `undo` takes back.
    await admin.redis.set("sb:policy", live.with_changes().to_json())
    await admin.redis.xadd(HISTORY, {"action": "change", "user": "U0LEAD", "at": "1", "summary": "capacity U0A = 1",
                                     "before_version": "2", "after_version": "3", "before": live.to_json(),
                                     "after": live.with_changes().to_json(), "detail": "{}"})
    undone = await admin.undo("U0LEAD")
    assert undone.summary == "undo: capacity U0A = 1" and undone.after.capacity == {}


async def test_undo_is_the_callers_own_change_or_one_named_by_id(admin: PolicyAdmin) -> None:
    mine = await admin.apply(cap("U0A", 1), "U0LEAD")
    theirs = await admin.apply(cap("U0B", 2), "U0OTHER")
    with pytest.raises(ChangeError, match=rf"newest change is <@U0OTHER>'s “capacity U0B = 2” \(`{theirs.entry_id}`"):
        await admin.undo("U0LEAD")
    with pytest.raises(ChangeError, match=rf"cannot undo `{mine.entry_id}`: only the newest change"):
        await admin.undo("U0LEAD", mine.entry_id)
    assert (await admin.undo("U0LEAD", theirs.entry_id)).after.capacity == {"U0A": 1}
    assert (await admin.undo("U0LEAD")).after.capacity == {}


async def test_undo_picks_its_target_in_the_transaction(
    admin: PolicyAdmin, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another lead's change landing while an undo starts is reported as such, not as an outside edit."""
    from redis.asyncio.client import Pipeline

    await admin.apply(cap("U0A", 1), "U0LEAD")
    other, client = await admin_for(redis_url)
    real_watch = Pipeline.watch
    landed: list[bool] = []

    async def watch_after_a_change(self: Pipeline, *names: Any) -> Any:
        if not landed:
            landed.append(True)
            await other.apply(cap("U0B", 2), "U0OTHER")
        return await real_watch(self, *names)

    monkeypatch.setattr(Pipeline, "watch", watch_after_a_change)
    try:
        with pytest.raises(ChangeError, match=r"newest change is <@U0OTHER>'s “capacity U0B = 2”"):
            await admin.undo("U0LEAD")
    finally:
        await client.aclose()


async def test_a_running_canary_follows_live_changes_and_can_still_be_promoted(admin: PolicyAdmin) -> None:
    urgent = Change("threshold urgent = 0.9",
                    lambda p: p.with_changes(thresholds={**p.thresholds.model_dump(), "urgent": 0.9}))
    await admin.start_canary(urgent, 50, "U0LEAD")
    pause = Change("automation pause", lambda p: p.with_changes(automation_paused=True))
    applied = await admin.apply(pause, "U0OTHER")
    assert applied.canary_followed
    canary = await admin.policies.canary(force=True)
    assert canary is not None and canary.base_version == applied.after.version
    assert canary.policy.automation_paused and canary.policy.thresholds.urgent == 0.9
    # A whole-policy change (an undo) is merged into the candidate too.
    await admin.undo("U0OTHER")
    canary = await admin.policies.canary(force=True)
    assert canary is not None and not canary.policy.automation_paused and canary.policy.thresholds.urgent == 0.9
    promoted = await admin.promote_canary("U0LEAD")
    assert promoted.after.thresholds.urgent == 0.9 and not promoted.after.automation_paused


async def test_live_changes_the_canary_cannot_take_are_refused(admin: PolicyAdmin) -> None:
    def urgent(v: float) -> Change:
        return Change(f"threshold urgent = {v}",
                      lambda p: p.with_changes(thresholds={**p.thresholds.model_dump(), "urgent": v}))

    await admin.apply(urgent(0.85), "U0LEAD")
    await admin.start_canary(urgent(0.95), 20, "U0LEAD")
    with pytest.raises(ChangeError, match=r"sets thresholds.urgent, which the canary changes too; `canary promote`"):
        await admin.undo("U0LEAD")

    def drop_shipping(p: Policy) -> Policy:
        return p.with_changes(skills={k: v for k, v in p.model_dump(mode="json")["skills"].items() if k != "shipping"})

    await admin.drop_canary("U0LEAD")
    await admin.start_canary(Change("skill shipping: remove", drop_shipping), 20, "U0LEAD")
    reroute = Change("route shipping", lambda p: p.with_skill_changes("shipping", channel="support-x"))
    with pytest.raises(ChangeError, match=r"the running canary .* cannot take this change"):
        await admin.apply(reroute, "U0LEAD")
    assert (await admin.policies.current(force=True)).version == 2
