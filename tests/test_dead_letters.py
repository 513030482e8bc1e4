"""Parked work is customers no agent has seen: a lead lists it and replays it, and it lands once."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from gateway import dead_letters, keys
from gateway.store import ConversationStore
from gateway.worker import MAX_ATTEMPTS
from tests.harness import Gateway, cards, eventually, stored_card
from tests.test_commands_support import Slash, commands_gateway


@pytest.fixture
async def gw(redis: aioredis.Redis, redis_url: str, tmp_path: Path) -> AsyncIterator[Gateway]:
    """Carol leads; a failing entry is retried at once, so it is parked after its 10 attempts in a moment."""
    gateway = await commands_gateway(redis_url, tmp_path, leads_raw="U0CAROL", automation="off",
                                     slack_channel_rate=100)
    await gateway.stop_worker()
    gateway.start_worker(backoff=(0.01, 0.01))
    yield gateway
    await gateway.close()


async def test_parked_message_is_listed_and_a_lead_replays_it_into_one_card(
    gw: Gateway, redis: aioredis.Redis
) -> None:
    # Slack refuses the card outright (a 400 is the entry's own problem, not an outage) until parked.
    gw.slack.fail_next("chat.postMessage", 400, count=MAX_ATTEMPTS)
    status, body = await gw.post_message({"customer_id": "dl-1", "message_id": "m1",
                                          "text": "I was charged twice on my invoice"})
    assert status == 202
    assert await eventually(lambda: redis.xlen(keys.DEAD), timeout=40) == 1
    assert cards(gw.slack, "support-billing") == []

    slash = Slash(gw)
    listed = await slash.text("dead", user="U0BOB")
    assert "*1 parked*" in listed and body["conversation_id"] in listed and "dead replay" in listed
    assert (await slash.text("dead replay", user="U0BOB")).startswith("🚫")
    assert await redis.xlen(keys.DEAD) == 1
    assert (await slash.text("dead replay", user="U0CAROL")).startswith("♻️ 1 parked entries queued again")

    card = await eventually(lambda: cards(gw.slack, "support-billing"))
    assert len(card) == 1 and body["conversation_id"] in json.dumps(card[0]["metadata"])
    assert await redis.xlen(keys.DEAD) == 0
    assert (await slash.text("dead", user="U0BOB")).startswith("Nothing is parked")
    rows: Any = await redis.xrange(keys.AUDIT)
    assert any(json.loads(f[b"data"])["action"] == "dead_replayed" for _, f in rows)


async def test_a_parked_transfer_or_follow_up_is_told_in_the_thread_and_the_transfer_can_be_made_again(
    gw: Gateway, redis: aioredis.Redis
) -> None:
    status, body = await gw.post_message({"customer_id": "dl-2", "message_id": "m1",
                                          "text": "I was charged twice on my invoice"})
    assert status == 202
    (card,) = await eventually(lambda: cards(gw.slack, "support-billing"))
    conv_id, billing = body["conversation_id"], gw.slack.channel_id("support-billing")

    def thread() -> str:
        return json.dumps([m.get("text", "") for m in gw.slack.replies(billing, card["ts"])])

    gw.slack.fail_next("chat.postMessage", 400, count=MAX_ATTEMPTS)  # the new card, refused for good
    assert (await gw.rt.ops.transfer(conv_id, "U0ALICE", "technical")).ok
    assert await eventually(lambda: "The transfer to technical failed" in thread(), timeout=40)
    assert await redis.xlen(keys.DEAD) == 1 and cards(gw.slack, "support-technical") == []

    def old_card() -> str:
        return json.dumps(next(m for m in gw.slack.messages("support-billing") if m["ts"] == card["ts"])["blocks"])

    assert await eventually(lambda: "failed; still here" in old_card())
    assert '"sb_claim"' in old_card()  # the click had dropped the claim: Claim is offered again
    conv = await gw.rt.store.load(conv_id)
    assert conv is not None and conv.moving_ref is None and conv.card_ts == card["ts"]
    assert (await gw.rt.ops.transfer(conv_id, "U0ALICE", "technical")).ok  # not "on its way" for ever
    (moved,) = await eventually(lambda: cards(gw.slack, "support-technical"))

    gw.slack.fail_next("chat.postMessage", 400, count=MAX_ATTEMPTS)  # the follow-up, refused for good
    await gw.post_message({"customer_id": "dl-2", "message_id": "m2", "text": "<!channel> any news?"})
    technical = gw.slack.channel_id("support-technical")

    def told() -> list[str]:
        return [m.get("text", "") for m in gw.slack.replies(technical, moved["ts"])
                if "could not be handled" in m.get("text", "")]

    (note,) = await eventually(told, timeout=40)
    assert "dead replay" in note and "Slack answered" in note
    assert await redis.xlen(keys.DEAD) == 2


async def test_a_parked_resolve_notice_is_told_in_the_thread(gw: Gateway, redis: aioredis.Redis) -> None:
    """Only agent replies, follow-ups and transfers were told: a notice that could not go out left the agent
    believing the customer had been told the conversation was resolved."""
    status, _ = await gw.post_message({"customer_id": "dl-3", "message_id": "m1",
                                          "text": "I was charged twice on my invoice"})
    assert status == 202
    card, conv_id = await stored_card(gw, "support-billing")
    conv = await gw.rt.store.load(conv_id)
    assert conv is not None
    await gw.rt.store.enqueue(conv, {"kind": "notify", "text": "x" * 5000, "author": "Support", "ref": "n-1"})
    billing = gw.slack.channel_id("support-billing")
    (note,) = await eventually(lambda: [m["text"] for m in gw.slack.replies(billing, card["ts"])[1:]
                                        if "Our notice to the customer" in m.get("text", "")])
    assert "5,000 characters" in note and "dead replay" in note
    assert await redis.xlen(keys.DEAD) == 1


def test_the_thread_line_escapes_whatever_the_error_quotes() -> None:
    line = dead_letters.told({"kind": "transfer", "skill": "billing"}, "KeyError('<!channel> & <@U1>')")
    assert line is not None and "<!channel>" not in line and "&lt;!channel&gt; &amp; &lt;@U1&gt;" in line
    assert dead_letters.told({"kind": "retire"}, "boom") is None  # an old card's retirement: nobody to tell


async def test_two_replays_at_once_queue_each_parked_entry_once(redis: aioredis.Redis) -> None:
    store = ConversationStore(redis, partitions=4)
    for i in range(20):
        await redis.xadd(keys.DEAD, {"conv": f"conv_{i}", "customer": f"api:c{i}", "mid": f"m{i}",
                                     "entry": f"1-{i}", "partition": "0", "error": "boom"})
    counts = await asyncio.gather(*(dead_letters.replay(redis, store, 4, lead) for lead in ("U0CAROL", "U0DAVE")))
    queued = sum([int(await redis.xlen(keys.inbound_stream(p))) for p in range(4)])
    assert sum(counts) == queued == 20 and await redis.xlen(keys.DEAD) == 0
