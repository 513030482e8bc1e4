"""An agent's thread reply on its way to the customer: every reply is sent, or the agent is told why not.

Through signed requests to the real gateway and the Slack emulator, as `tests/test_desk.py`; each test is a
way a reply used to vanish with no ✅, no ❌ and no word to the agent.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from gateway import keys
from gateway.domain import MAX_TEXT, ChannelKind, Conversation, Message
from gateway.ports import Delivery
from tests.conftest import Callback
from tests.harness import Gateway, eventually, make_settings, start_gateway
from tests.test_desk import new_card, sender


@pytest.fixture
async def gw(redis: aioredis.Redis, redis_url: str, tmp_path: Path, callback: Callback) -> AsyncIterator[Gateway]:
    g = await start_gateway(make_settings(redis_url, tmp_path, api_callback_url=callback.url,
                                          agents_raw="U0ALICE,U0BOB", aliases_raw="U0BOB=Bob from Support"))
    yield g
    await g.close()


async def claimed_card(gw: Gateway, user: str = "U0ALICE") -> tuple[str, dict[str, Any], str]:
    conv_id, card, channel = await new_card(gw)
    await sender(gw).click(user, channel, card, {"type": "button", "action_id": "sb_claim", "value": conv_id})
    await eventually(lambda: gw.rt.ops.holder(conv_id))
    return conv_id, card, channel


def told(gw: Gateway, user: str, card: dict[str, Any], *words: str) -> list[str]:
    """The ephemeral lines `user` was shown in the card's thread that contain every one of `words`."""
    return [e["text"] for e in gw.slack.ephemerals_for(user)
            if e["thread_ts"] == card["ts"] and all(w in e["text"] for w in words)]


def thread_event(channel: str, card: dict[str, Any], text: str, user: str = "U0ALICE", **extra: Any) -> dict[str, Any]:
    ts = f"{time.time():.6f}"
    return {"type": "message", "channel": channel, "user": user, "text": text, "ts": ts, "event_ts": ts,
            "thread_ts": card["ts"], "channel_type": "channel", **extra}


async def queued_replies(redis: aioredis.Redis) -> list[dict[bytes, bytes]]:
    replies = []
    for p in range(4):
        rows: Any = await redis.xrange(keys.inbound_stream(p))
        replies += [f for _, f in rows if f.get(b"kind") == b"agent_reply"]
    return replies


# ---- 1. a reply longer than the customer's channels take -------------------------------------------------


async def test_a_reply_over_the_limit_is_refused_before_it_is_queued(
    gw: Gateway, callback: Callback, redis: aioredis.Redis
) -> None:
    _, card, channel = await claimed_card(gw)
    long = ("Here are the steps. " * 211).strip()
    assert len(long) == 4219 > MAX_TEXT
    await sender(gw).message("U0ALICE", channel, long, thread_ts=card["ts"])
    (line,) = await eventually(lambda: told(gw, "U0ALICE", card, "Not sent"))
    assert "4,219 characters" in line and "4,000" in line and "split" in line
    assert await queued_replies(redis) == [] and await redis.xlen(keys.DEAD) == 0
    exactly = "x" * MAX_TEXT  # the limit itself is fine
    await sender(gw).message("U0ALICE", channel, exactly, thread_ts=card["ts"])
    received = await eventually(lambda: callback.received)
    assert [r["text"] for r in received] == [exactly]


@dataclass
class BrokenChannel:
    """A customer channel whose adapter raises (a bug, not an outage): the worker parks the reply."""

    kind: ChannelKind = ChannelKind.API
    sent: list[str] = field(default_factory=list)

    async def send(self, conversation: Conversation, message: Message) -> Delivery:
        self.sent.append(message.text)
        raise KeyError("provider_message_id")


@pytest.fixture
async def fast_gw(gw: Gateway) -> AsyncIterator[Gateway]:
    """The same gateway, retrying a failing entry at once, so it is parked after its 10 attempts quickly."""
    await gw.stop_worker()
    gw.start_worker(backoff=(0.01, 0.01))
    yield gw


async def test_a_parked_agent_reply_is_told_in_the_thread_without_its_text(
    fast_gw: Gateway, redis: aioredis.Redis
) -> None:
    gw = fast_gw
    _, card, channel = await claimed_card(gw)
    gw.rt.pipeline.channels = {**gw.rt.pipeline.channels, ChannelKind.API: BrokenChannel()}
    reply_ts = await sender(gw).message("U0ALICE", channel, "secret voucher 123-456", thread_ts=card["ts"])

    def notes() -> list[str]:
        return [m.get("text", "") for m in gw.slack.replies(channel, card["ts"]) if "parked" in m.get("text", "")]

    (note,) = await eventually(notes, timeout=40)
    assert "reply" in note and "not reach the customer" in note and "dead replay" in note
    assert "123-456" not in note and "provider_message_id" in note
    assert await eventually(lambda: [c for c in gw.slack.calls_to("reactions.add")
                                     if c.params.get("timestamp") == reply_ts and c.params.get("name") == "x"])
    rows: Any = await redis.xrange(keys.DEAD)
    (parked,) = rows
    assert b"123-456" not in parked[1][b"error"]


async def test_an_over_long_reply_already_queued_is_parked_at_once_and_holds_nothing_up(
    gw: Gateway, callback: Callback, redis: aioredis.Redis
) -> None:
    """One queued before the edge refused them (or put back by `dead replay`): no retry can make it shorter,
    so it is parked on the spot instead of holding the customer's partition for ten attempts."""
    conv_id, card, channel = await claimed_card(gw)
    conv = await gw.rt.store.load(conv_id)
    assert conv is not None
    await gw.rt.store.enqueue_reply(conv, {"kind": "agent_reply", "text": "y" * (MAX_TEXT + 1), "author": "Alice",
                                           "ref": "1700000000.000001", "slack_channel": channel,
                                           "slack_ts": card["ts"]})
    await sender(gw).message("U0ALICE", channel, "and a short one", thread_ts=card["ts"])
    received = await eventually(lambda: callback.received, timeout=5)
    assert [r["text"] for r in received] == ["and a short one"]
    rows: Any = await redis.xrange(keys.DEAD)
    (parked,) = rows
    assert b"4,001 characters" in parked[1][b"error"] and b"yyy" not in parked[1][b"error"]
    assert await eventually(lambda: [m for m in gw.slack.replies(channel, card["ts"])
                                     if "parked" in m.get("text", "") and "4,001" in m.get("text", "")])


# ---- 2. "Also send to #channel" and replies with a file --------------------------------------------------


async def test_a_reply_also_sent_to_the_channel_reaches_the_customer(gw: Gateway, callback: Callback) -> None:
    _, card, channel = await claimed_card(gw)
    event = thread_event(channel, card, "Refund issued, you'll see it in 3 days", subtype="thread_broadcast",
                         root={"ts": card["ts"], "text": "card"})
    assert (await sender(gw).event(event))[0] == 200
    received = await eventually(lambda: callback.received)
    assert [r["text"] for r in received] == ["Refund issued, you'll see it in 3 days"]
    assert await eventually(lambda: [c for c in gw.slack.calls_to("reactions.add")
                                     if c.params.get("timestamp") == event["ts"]
                                     and c.params.get("name") == "white_check_mark"])


FILE = {"id": "F0SCREEN", "name": "screenshot.png", "mimetype": "image/png", "url_private": "https://files.x/F0"}


async def test_a_reply_with_a_file_sends_its_text_and_says_the_file_was_not(gw: Gateway, callback: Callback) -> None:
    _, card, channel = await claimed_card(gw)
    event = thread_event(channel, card, "This is where to click", subtype="file_share", files=[FILE], upload=True)
    assert (await sender(gw).event(event))[0] == 200
    received = await eventually(lambda: callback.received)
    assert [r["text"] for r in received] == ["This is where to click"]
    (line,) = await eventually(lambda: told(gw, "U0ALICE", card, "file"))
    assert "not sent" in line and "text" in line

    only_file = thread_event(channel, card, "", subtype="file_share", files=[FILE], upload=True)
    assert (await sender(gw).event(only_file))[0] == 200
    assert await eventually(lambda: told(gw, "U0ALICE", card, "Nothing was sent"))
    await asyncio.sleep(0.3)
    assert len(callback.received) == 1


@pytest.mark.parametrize("subtype", ["message_changed", "message_deleted", "bot_message", "channel_join"])
async def test_other_subtypes_stay_ignored(gw: Gateway, callback: Callback, subtype: str) -> None:
    _, card, channel = await claimed_card(gw)
    event = thread_event(channel, card, "edited text", subtype=subtype)
    assert (await sender(gw).event(event))[0] == 200
    await asyncio.sleep(0.5)
    assert callback.received == [] and gw.slack.ephemerals_for("U0ALICE") == []


# ---- 3. after Resolve -------------------------------------------------------------------------------------


async def test_the_agent_who_worked_it_can_still_reply_after_resolve_and_it_stays_resolved(
    gw: Gateway, callback: Callback
) -> None:
    conv_id, card, channel = await claimed_card(gw)
    assert (await gw.rt.ops.resolve(conv_id, "U0ALICE", skill="billing", urgency=None, mood=None)).ok
    six_days_ago = int(time.time()) - 6 * 86400
    await gw.rt.redis.set(keys.closed(conv_id), six_days_ago)  # resolved on day 1, the afterthought on day 7
    await sender(gw).message("U0ALICE", channel, "Oh, and your tracking number is X123", thread_ts=card["ts"])
    received = await eventually(lambda: callback.received)
    assert [r["text"] for r in received] == ["Oh, and your tracking number is X123"]
    conv = await gw.rt.store.load(conv_id)
    assert conv is not None and conv.state.value == "resolved" and await gw.rt.ops.holder(conv_id) is None
    # The reopen window counts from the afterthought: the customer's answer to it on day 8 reopens this one.
    closed = await eventually(lambda: _closed_after(gw, conv_id, six_days_ago))
    assert closed is not None and closed >= time.time() - 60

    # Another agent is told the truth: Claim is refused on a resolved conversation, so "claim first" was not.
    await sender(gw).message("U0BOB", channel, "me too", thread_ts=card["ts"])
    (line,) = await eventually(lambda: told(gw, "U0BOB", card, "Not sent"))
    assert "resolved" in line and "<@U0ALICE>" in line and "Claim" not in line
    await asyncio.sleep(0.3)
    assert len(callback.received) == 1


async def _closed_after(gw: Gateway, conv_id: str, before: int) -> int | None:
    raw = await gw.rt.redis.get(keys.closed(conv_id))
    return int(raw) if raw is not None and int(raw) > before else None


async def test_with_anyone_can_reply_any_agent_may_reply_after_resolve(gw: Gateway, callback: Callback,
                                                                       redis: aioredis.Redis) -> None:
    policy = await gw.rt.policies.current()
    await redis.set("sb:policy", policy.with_changes(anyone_can_reply=True).to_json())
    await gw.rt.policies.current(force=True)
    conv_id, card, channel = await claimed_card(gw)
    assert (await gw.rt.ops.resolve(conv_id, "U0ALICE", skill="billing", urgency=None, mood=None)).ok
    await sender(gw).message("U0BOB", channel, "One more thing from Bob", thread_ts=card["ts"])
    received = await eventually(lambda: callback.received)
    assert received[0]["text"] == "One more thing from Bob" and received[0]["author"] == "Bob from Support"


async def test_a_reply_after_the_reopen_window_is_refused_truthfully(
    redis: aioredis.Redis, redis_url: str, tmp_path: Path, callback: Callback
) -> None:
    gw = await start_gateway(make_settings(redis_url, tmp_path, api_callback_url=callback.url, reopen_window_s=1))
    try:
        conv_id, card, channel = await claimed_card(gw)
        assert (await gw.rt.ops.resolve(conv_id, "U0ALICE", skill="billing", urgency=None, mood=None)).ok
        await asyncio.sleep(2.1)
        await sender(gw).message("U0ALICE", channel, "late afterthought", thread_ts=card["ts"])
        (line,) = await eventually(lambda: told(gw, "U0ALICE", card, "Not sent"))
        assert "resolved" in line and "new conversation" in line and "Claim" not in line
        await asyncio.sleep(0.3)
        assert callback.received == []
    finally:
        await gw.close()


async def test_someone_who_is_not_an_agent_is_not_told_to_claim(gw: Gateway, callback: Callback) -> None:
    _, card, channel = await new_card(gw)
    await sender(gw).message("U0CAROL", channel, "hello?", thread_ts=card["ts"])
    (line,) = await eventually(lambda: told(gw, "U0CAROL", card, "Not sent"))
    assert "only support agents" in line and "Claim" not in line


# ---- 4. Slack's markup ------------------------------------------------------------------------------------


async def test_links_and_mentions_reach_the_customer_as_plain_text(gw: Gateway, callback: Callback) -> None:
    _, card, channel = await claimed_card(gw)
    text = ("Track it <https://shop.example/t?id=1&amp;k=2|here>, mail <mailto:help@shop.example|help@shop.example>"
            " or ask <@U0BOB> in <#C0BILLING|billing> <!here>")
    await sender(gw).message("U0ALICE", channel, text, thread_ts=card["ts"])
    received = await eventually(lambda: callback.received)
    assert received[0]["text"] == ("Track it here (https://shop.example/t?id=1&k=2), mail help@shop.example"
                                   " or ask Bob from Support in #billing")


# ---- 5. a failure between Slack's ack and the queue -------------------------------------------------------


async def test_a_reply_that_fails_before_it_is_queued_is_reported_and_slacks_retry_goes_through(
    gw: Gateway, callback: Callback
) -> None:
    _, card, channel = await claimed_card(gw)
    gw.slack.fail_next("users.info", 400)  # the agent's name is not cached yet
    event = thread_event(channel, card, "your refund is on its way")
    assert (await sender(gw).event(event, event_id="EvFAILS0001"))[0] == 200
    (line,) = await eventually(lambda: told(gw, "U0ALICE", card, "⚠️"))
    assert "not sent" in line and "Slack answered internal_error" in line and "send it again" in line
    assert callback.received == []
    # Slack sends the same event again (X-Slack-Retry-Num): it was not handled, so it is not a duplicate.
    assert (await sender(gw).event(event, event_id="EvFAILS0001", retry=1))[0] == 200
    received = await eventually(lambda: callback.received)
    assert [r["text"] for r in received] == ["your refund is on its way"]
    # Handled now: a further retry is the duplicate it looks like.
    assert (await sender(gw).event(event, event_id="EvFAILS0001", retry=2))[0] == 200
    await asyncio.sleep(0.5)
    assert len(callback.received) == 1


async def test_a_redis_write_refused_at_queue_time_is_reported(gw: Gateway, callback: Callback,
                                                               redis: aioredis.Redis) -> None:
    """A real Redis refusing the queue write (ACL here; a failover or OOM in life) reaches the agent."""
    _, card, channel = await claimed_card(gw)
    await sender(gw).message("U0ALICE", channel, "warm the name cache", thread_ts=card["ts"])
    await eventually(lambda: callback.received)
    await redis.execute_command("ACL", "SETUSER", "default", "-xadd")
    try:
        await sender(gw).message("U0ALICE", channel, "second reply", thread_ts=card["ts"])
        (line,) = await eventually(lambda: told(gw, "U0ALICE", card, "⚠️"))
    finally:
        await redis.execute_command("ACL", "SETUSER", "default", "+xadd")
    assert "not sent" in line and "send it again" in line
    assert json.dumps([r["text"] for r in callback.received]) == json.dumps(["warm the name cache"])
