"""Stats from stored conversations, outcomes and escalations with known numbers; the watcher's alerts."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import redis.asyncio as aioredis

from gateway import stats
from gateway.domain import ChannelKind, Direction, Message, Outcome, new_id
from gateway.store import ConversationStore
from integrations.slack.commands import model_alerts, watch_models
from learners.outcomes import publish_outcome
from router.policy import load_policy
from tests.harness import eventually
from tests.test_commands_support import scores, store_conversation


async def test_stats_over_known_conversations(redis: aioredis.Redis) -> None:
    store = ConversationStore(redis, 4)
    policy = load_policy()
    now = datetime.now(UTC)
    hour = now - timedelta(hours=1)
    # 4 human-routed billing conversations: first replies after 2, 4, 6, 8 minutes; 2 resolved.
    humans = []
    for i in range(4):
        humans.append(await store_conversation(
            store, f"invoice {i}: I want a human", scores("billing"), policy=policy, at=hour,
            reply_after=timedelta(minutes=2 * (i + 1)),
            resolved_after=timedelta(minutes=30 * (i + 1)) if i < 2 else None))
    # 2 shipping conversations the bot answered; one later needed a person (has a card).
    bots = []
    for i in range(2):
        conv = await store_conversation(store, f"where is parcel {i}", scores("shipping"), policy=policy, at=hour)
        await store.append(conv, Message(id=f"bot-{new_id('m')}", direction=Direction.OUTBOUND,
                                         channel=ChannelKind.API, text="It ships today", author="Switchboard bot",
                                         at=hour + timedelta(seconds=5)))
        bots.append(conv)
    await redis.hset(f"sb:conv:{bots[1].id}", "card_ts", '"1.0002"')
    # Resolved without an agent ever writing: our own notices are no first response.
    quiet = await store_conversation(store, "invoice: nobody answers", scores("billing"), policy=policy, at=hour)
    for mid, author in (("notice-resolve-1", "Support"), ("csat-m9", "Support")):
        await store.append(quiet, Message(id=mid, direction=Direction.OUTBOUND, channel=ChannelKind.API,
                                          text="Your conversation has been resolved", author=author,
                                          at=hour + timedelta(seconds=1)))
    # One conversation from last week: outside a 24h window, inside 7d.
    await store_conversation(store, "old invoice", scores("billing"), policy=policy, at=now - timedelta(days=3))
    for cid, csat in ((humans[0].id, 5), (humans[1].id, 3)):
        await publish_outcome(redis, Outcome(conversation_id=cid, kind="resolved", csat=csat))
    await publish_outcome(redis, Outcome(conversation_id=humans[2].id, kind="transferred"))
    for step in ("warn", "escalate", "leads"):
        await redis.xadd("sb:escalations", {"conversation_id": humans[3].id, "step": step, "kind": "move"})
    await redis.xadd("sb:escalations", {"conversation_id": humans[2].id, "step": "warn", "kind": "reping"})

    day = await stats.compute(redis, 86400)
    assert day.conversations == 7
    assert dict(day.by_skill) == {"billing": 5, "shipping": 2} and dict(day.by_channel) == {"api": 7}
    assert (day.automated, day.automation_kept) == (2, 1)
    assert day.automation_share == 2 / 7 and day.automation_success == 0.5
    assert sorted(day.first_response_s) == [120, 240, 360, 480]
    assert stats.percentile(day.first_response_s, 50) == 240 and stats.percentile(day.first_response_s, 90) == 480
    assert sorted(day.resolution_s) == [1800, 3600]
    assert day.breaches == 1 and day.transfers == 1 and day.csat == [5, 3] and day.csat_avg == 4.0
    week = await stats.compute(redis, 7 * 86400)
    assert week.conversations == 8 and week.by_skill["billing"] == 6
    only = await stats.compute(redis, 86400, only=[humans[0].id, humans[3].id])
    assert only.conversations == 2 and only.breaches == 1 and only.csat == [5] and only.transfers == 0
    arms = await stats.compare_arms(redis, 86400, {humans[0].id: "candidate", humans[1].id: "control",
                                                   bots[0].id: "control"})
    assert arms["candidate"].conversations == 1 and arms["control"].conversations == 2
    queue = await stats.queue(redis)
    assert queue == {"waiting": 2, "claimed": 0, "breaching": 1}  # humans[2], humans[3]


def test_percentile_edges() -> None:
    assert stats.percentile([], 50) is None
    assert stats.percentile([7.0], 90) == 7.0
    assert stats.percentile([float(i) for i in range(1, 11)], 90) == 9.0


def health(alarms: int = 0, fallback: bool = False, acc: float | None = 0.8) -> dict[str, dict[str, Any]]:
    return {"skill": {"drift_alarms": alarms, "fallback": fallback, "rolling_accuracy": acc}}


def test_model_alerts() -> None:
    assert model_alerts(health(), health()) == []
    assert model_alerts(health(), health(alarms=2))[0].startswith("📉 Drift alarm on the *skill* model (2 new")
    assert "fell back to the rules" in model_alerts(health(), health(fallback=True, acc=0.3))[0]
    assert "recovered" in model_alerts(health(fallback=True), health())[0]


class FakeClient:
    def __init__(self) -> None:
        self.posts: list[dict[str, Any]] = []

    async def chat_postMessage(self, **kw: Any) -> dict[str, Any]:
        self.posts.append(kw)
        return {"ok": True}


async def test_watch_models_posts_changes_to_leads() -> None:
    snapshots = [health(), health(alarms=1), health(alarms=1, fallback=True), health(alarms=1, fallback=True)]
    client = FakeClient()
    stop = asyncio.Event()

    class Scorer:
        def health(self) -> dict[str, dict[str, Any]]:
            return snapshots.pop(0) if len(snapshots) > 1 else snapshots[0]

    task = asyncio.create_task(watch_models(Scorer(), client, "C0LEADS", stop, interval=0.01))  # type: ignore[arg-type]
    await eventually(lambda: len(client.posts) >= 2, timeout=5)
    stop.set()
    await asyncio.wait_for(task, 2)
    assert [p["channel"] for p in client.posts] == ["C0LEADS", "C0LEADS"]
    assert "Drift alarm" in client.posts[0]["text"] and "fell back" in client.posts[1]["text"]


async def test_a_reply_after_the_resolve_is_no_first_response(redis: aioredis.Redis) -> None:
    """Found in review: a conversation resolved unanswered, then given an afterthought, counted as answered (late)."""
    store = ConversationStore(redis, 4)
    policy = load_policy()
    hour = datetime.now(UTC) - timedelta(hours=1)
    await store_conversation(store, "invoice: I want a human", scores("billing"), policy=policy, at=hour,
                             resolved_after=timedelta(minutes=1), reply_after=timedelta(minutes=20))
    await store_conversation(store, "invoice 2: I want a human", scores("billing"), policy=policy, at=hour,
                             reply_after=timedelta(minutes=2), resolved_after=timedelta(minutes=10))
    s = await stats.compute(redis, 86400)
    assert s.first_response_s == [120.0]
