"""Canaries: deterministic arms, the candidate routes its share of real conversations, stats compare the
arms, promote makes it live (audited), drop ends it."""

from __future__ import annotations

import json

from gateway.policy_store import CANDIDATE, CONTROL, arm_of
from tests.harness import Gateway, cards, eventually
from tests.test_commands_support import Slash, cmd_gw

__all__ = ["cmd_gw"]


def test_split_is_deterministic_and_close_to_the_share() -> None:
    ids = [f"conv_{i:06d}" for i in range(10_000)]
    arms = [arm_of(i, 10) for i in ids]
    assert arms == [arm_of(i, 10) for i in ids]  # same id, same arm, every time
    share = arms.count(CANDIDATE) / len(ids)
    assert 0.09 <= share <= 0.11, share
    # A bigger share only ever moves conversations into the candidate arm (buckets are nested).
    assert all(arm_of(i, 25) == CANDIDATE for i, a in zip(ids, arms, strict=True) if a == CANDIDATE)
    assert {arm_of(i, 50) for i in ids} == {CANDIDATE, CONTROL}


async def test_canary_routes_its_arm_and_stats_compare(cmd_gw: Gateway) -> None:
    slash = Slash(cmd_gw)
    started = await slash.text("route billing #support-payments --canary 50%")
    assert started.startswith("🐤 Canary started: route billing → #support-payments on 50%"), started
    live = await cmd_gw.rt.policies.current(force=True)
    assert live.version == 1 and live.skills["billing"].channel == "support-billing"
    assert "Canary running" in await slash.text("policy")
    await cmd_gw.rt.desk.ensure_channels(["support-payments"])
    ids = []
    for i in range(8):
        status, body = await cmd_gw.post_message(
            {"customer_id": f"c-{i}", "message_id": f"m-{i}",
             "text": f"I was charged twice on invoice {i}, I want a human"})
        assert status == 202
        ids.append(body["conversation_id"])
    await eventually(lambda: len(cards(cmd_gw.slack, "support-billing")) + len(cards(cmd_gw.slack, "support-payments"))
                     == 8, timeout=20)
    canary = await cmd_gw.rt.policies.canary(force=True)
    assert canary is not None
    arms = await cmd_gw.rt.policies.arms(canary.id)
    assert arms == {cid: arm_of(cid, 50) for cid in ids}
    for cid in ids:
        conv = await cmd_gw.rt.store.load(cid)
        assert conv is not None and conv.decision is not None
        expected = "support-payments" if arms[cid] == CANDIDATE else "support-billing"
        assert conv.decision.channel == expected
    stats = await slash.text("stats 24h")
    assert "Canary running" in stats and "Conversations: *8*" in stats
    for arm in set(arms.values()):
        n = sum(1 for a in arms.values() if a == arm)
        assert f"*{arm}* ({n} conversations)" in stats
    assert "Canary running" in await slash.text("canary status")
    promoted = await slash.text("canary promote")
    assert promoted.startswith("✅ Canary promoted: policy is now v2"), promoted
    policy = await cmd_gw.rt.policies.current(force=True)
    assert policy.skills["billing"].channel == "support-payments"
    assert await cmd_gw.rt.policies.canary(force=True) is None
    history = await slash.text("history")
    assert "promote canary" in history and "canary 50%" in history
    # Undo reverts the promotion like any change.
    assert "undo: promote canary" in await slash.text("undo")
    assert (await cmd_gw.rt.policies.current(force=True)).skills["billing"].channel == "support-billing"


async def test_canary_preview_apply_and_drop(cmd_gw: Gateway) -> None:
    slash = Slash(cmd_gw)
    preview = await slash("automation pause --dry-run --canary 10%")
    assert "as a 10% canary" in json.dumps(preview, ensure_ascii=False)
    assert (await slash.text("apply")).startswith("🐤 Canary started")
    again = await slash.text("threshold urgent 0.9 --canary 5%")
    assert "a canary is already running" in again
    assert "drop canary: automation pause everywhere" in await slash.text("canary drop")
    assert await cmd_gw.rt.policies.canary(force=True) is None
    assert (await cmd_gw.rt.policies.current(force=True)).automation_paused is False
