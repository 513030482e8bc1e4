"""Canaries: deterministic arms, the candidate routes its share of real conversations, stats compare the
arms, promote makes it live (audited), drop ends it."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from gateway.domain import BOT_AUTHOR
from gateway.policy_store import CANDIDATE, CONTROL, arm_of
from tests.conftest import Callback
from tests.harness import Gateway, cards, eventually
from tests.test_commands_support import Slash, cmd_gw, commands_gateway

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


async def test_live_changes_reach_a_running_canary_and_promote_still_works(cmd_gw: Gateway) -> None:
    slash = Slash(cmd_gw)
    assert (await slash.text("threshold urgent 0.9 --canary 50%")).startswith("🐤")
    paused = await slash.text("automation pause")
    assert paused == "✅ automation pause everywhere (policy v2; the running canary took it too).", paused
    assert (await slash.text("route billing #support-payments")).startswith("✅")
    announced = await eventually(lambda: [m["text"] for m in cmd_gw.slack.messages("support-leads")
                                          if "route billing" in m.get("text", "")])
    assert "the running canary took it too" in announced[0]
    candidate_id = next(f"conv_{i:020x}" for i in range(1000) if arm_of(f"conv_{i:020x}", 50) == CANDIDATE)
    candidate = await cmd_gw.rt.policies.for_conversation(candidate_id)
    assert candidate.automation_paused and candidate.skills["billing"].channel == "support-payments"
    assert candidate.thresholds.urgent == 0.9
    promoted = await slash.text("canary promote")
    assert promoted.startswith("✅ Canary promoted: policy is now v4"), promoted
    live = await cmd_gw.rt.policies.current(force=True)
    assert live.thresholds.urgent == 0.9 and live.automation_paused
    assert live.skills["billing"].channel == "support-payments"


async def test_whole_policy_changes_merge_into_the_canary_or_are_refused(cmd_gw: Gateway) -> None:
    slash = Slash(cmd_gw)
    await slash.text("threshold urgent 0.85")
    await slash.text("threshold sentiment_floor -0.5 --canary 20%")
    refused = await slash.text("threshold urgent 0.95 --canary 20%")
    assert "a canary is already running" in refused
    assert (await slash.text("undo")).startswith("↩️ undo: threshold urgent = 0.85")  # merged into the candidate
    canary = await cmd_gw.rt.policies.canary(force=True)
    live = await cmd_gw.rt.policies.current(force=True)
    assert canary is not None and canary.base_version == live.version == 3
    assert canary.policy.thresholds.urgent == live.thresholds.urgent
    assert canary.policy.thresholds.sentiment_floor == -0.5
    await slash.text("canary drop")
    await slash.text("threshold urgent 0.85")
    await slash.text("threshold urgent 0.95 --canary 20%")
    conflict = await slash.text("undo")
    assert conflict.startswith("⚠️ a canary is running (“threshold urgent = 0.95”) and this sets thresholds.urgent"), \
        conflict
    assert "`canary promote` or `canary drop` it first" in conflict
    assert (await cmd_gw.rt.policies.current(force=True)).thresholds.urgent == 0.85


async def test_changes_the_canary_cannot_split_are_refused_as_canaries(cmd_gw: Gateway) -> None:
    slash = Slash(cmd_gw)
    sla = await slash.text("sla billing first=5m --canary 10%")
    assert sla.startswith("⚠️ `sla` cannot run as a canary: SLA timers always follow the live policy"), sla
    capacity = await slash.text("capacity <@U0JANE> 3 --canary 10%")
    assert capacity.startswith("⚠️ `capacity` cannot run as a canary: claim capacity always follows"), capacity
    assert "cannot run as a canary" in await slash.text("sla billing first=5m --dry-run --canary 10%")
    assert await cmd_gw.rt.policies.canary(force=True) is None
    assert (await cmd_gw.rt.policies.current(force=True)).version == 1


@pytest.fixture
async def bot_gw(redis: aioredis.Redis, redis_url: str, tmp_path: Path, callback: Callback) -> AsyncIterator[Gateway]:
    """With the API channel's callback as the customer, so the bot's answers are delivered."""
    gw = await commands_gateway(redis_url, tmp_path, api_callback_url=callback.url)
    yield gw
    await gw.close()


async def test_a_canary_routes_new_conversations_only(bot_gw: Gateway) -> None:
    """README: a canary routes "a deterministic share of new conversations". Before: a conversation with the bot
    when it started was put in an arm at its next message and switched policy mid-conversation (here: handed to
    people by a paused bot), and the arms' stats counted conversations routed under the live policy."""
    cmd_gw = bot_gw
    status, body = await cmd_gw.post_message(
        {"customer_id": "before", "message_id": "b-1", "text": "How long does shipping usually take?"})
    assert status == 202
    earlier = str(body["conversation_id"])

    async def with_bot(conv_id: str) -> bool:
        conv = await cmd_gw.rt.store.load(conv_id)
        return conv is not None and conv.state.value == "automated"

    await eventually(lambda: with_bot(earlier))
    slash = Slash(cmd_gw)
    assert (await slash.text("automation pause --canary 99%")).startswith("🐤")
    canary = await cmd_gw.rt.policies.canary(force=True)
    assert canary is not None

    await cmd_gw.post_message({"customer_id": "before", "message_id": "b-2", "text": "How do I reset my password?"})
    _, fresh = await cmd_gw.post_message(
        {"customer_id": "after", "message_id": "a-1", "text": "How do I reset my password?"})
    new = str(fresh["conversation_id"])
    bot_turns = await eventually(lambda: _bot_answers(cmd_gw, earlier, 2))
    assert len(bot_turns) == 2  # the earlier one stays with the live policy's bot (99%: in the candidate's share)
    arms = await eventually(lambda: cmd_gw.rt.policies.arms(canary.id))
    assert arms == {new: arm_of(new, 99)}


async def _bot_answers(gw: Gateway, conv_id: str, n: int) -> list[str] | None:
    conv = await gw.rt.store.load(conv_id)
    answers = [m.text for m in conv.messages if m.author == BOT_AUTHOR] if conv else []
    return answers if len(answers) >= n else None
