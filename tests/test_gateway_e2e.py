"""End to end through the real HTTP API, real Redis, the real worker and the Slack emulator."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from gateway import keys
from integrations.webhook.signature import sign
from tests.conftest import Callback
from tests.harness import API_SECRET, Gateway, cards, eventually, make_settings, outcomes, start_gateway

ANGRY = {
    "customer_id": "cust-42",
    "message_id": "m-1",
    "text": "I was charged twice on my invoice. This is unacceptable! <!channel> <@U0ALICE> <http://evil.example|bank>",
    "customer": {"name": "Jane Doe", "email": "jane@example.com", "tier": "gold"},
}


def card_text(card: dict) -> str:
    return json.dumps(card["blocks"], ensure_ascii=False)


async def test_signed_message_becomes_card_in_right_channel(gateway: Gateway) -> None:
    status, body = await gateway.post_message(ANGRY)
    assert status == 202, body
    assert body["status"] == "accepted" and body["duplicate"] is False
    found = await eventually(lambda: cards(gateway.slack, "support-billing"))
    assert len(found) == 1
    text = card_text(found[0])
    assert "Jane Doe" in text and "jane@example.com" in text
    assert "keyword 'unacceptable'" in text
    assert "VIP tier gold" in text
    assert "skill billing" in text
    assert body["conversation_id"] in text
    # Customer markup is inert: no live mention or disguised link survives.
    assert "<!channel>" not in text and "<@U0ALICE>" not in text and "<http://evil" not in text
    assert "&lt;!channel&gt;" in text and "&lt;@U0ALICE&gt;" in text
    assert "<!channel>" not in found[0]["text"]
    for other in ("support-technical", "support-shipping", "support-account", "support-general"):
        assert cards(gateway.slack, other) == []


async def test_card_ts_is_stored_and_follow_up_goes_to_thread(gateway: Gateway) -> None:
    _, body = await gateway.post_message(ANGRY)
    [card] = await eventually(lambda: cards(gateway.slack, "support-billing"))
    conv = await eventually(lambda: gateway.rt.store.load(body["conversation_id"]))
    await eventually(lambda: _has_card(gateway, body["conversation_id"]))
    status, second = await gateway.post_message({**ANGRY, "message_id": "m-2", "text": "Hello?? anyone <!here>"})
    assert status == 202 and second["conversation_id"] == body["conversation_id"]
    replies = await eventually(lambda: gateway.slack.replies("support-billing", card["ts"])[1:])
    assert len(replies) == 1
    assert "&lt;!here&gt;" in replies[0]["text"] and "<!here>" not in replies[0]["text"]
    assert len(cards(gateway.slack, "support-billing")) == 1
    assert conv.customer.profile.name == "Jane Doe"


async def _has_card(gateway: Gateway, conversation_id: str) -> bool:
    conv = await gateway.rt.store.load(conversation_id)
    return bool(conv and conv.card_ts)


async def test_bad_signature_is_401_and_nothing_stored(gateway: Gateway, redis: aioredis.Redis) -> None:
    status, body = await gateway.post_message(ANGRY, secret="wrong-secret")
    assert status == 401 and body["error"] == "bad_signature"
    status, body = await gateway.post_message(ANGRY, timestamp=int(time.time()) - 301)
    assert status == 401 and "window" in body["message"]
    status, body = await gateway.post_message(ANGRY, headers={"X-Switchboard-Signature": "v1=abc"})
    assert status == 401
    for pattern in ("sb:dedupe:*", "sb:conv:*", "sb:cust:*"):
        assert await redis.keys(pattern) == []
    for p in range(gateway.settings.partitions):
        assert await redis.xlen(keys.inbound_stream(p)) == 0


async def _post_in_two_segments(gw: Gateway, body: bytes, signature: str) -> bytes:
    """A raw POST whose body arrives in two TCP segments a moment apart, as over the internet."""
    head = (f"POST /v1/messages HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nX-Switchboard-Signature: {signature}\r\nConnection: close\r\n\r\n")
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.settings.port)
    try:
        writer.write(head.encode() + body[:1400])
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(body[1400:])
        await writer.drain()
        return await reader.read()
    finally:
        writer.close()


async def test_a_body_arriving_in_pieces_is_read_whole(gateway: Gateway, redis: aioredis.Redis) -> None:
    """`content.read(n)` returns what has arrived: the signature used to be checked on the first segment."""
    body = json.dumps({"customer_id": "seg-1", "message_id": "m1", "text": "my invoice is wrong " * 150}).encode()
    answer = await _post_in_two_segments(gateway, body, sign(API_SECRET, body))
    assert answer.startswith(b"HTTP/1.1 202"), answer[:300]
    assert await redis.exists(keys.dedupe("api:seg-1", "m1"))
    big = json.dumps({"customer_id": "seg-1", "message_id": "m2", "text": "x" * 3000, "pad": "y" * 70_000}).encode()
    answer = await _post_in_two_segments(gateway, big, sign(API_SECRET, big))
    assert answer.startswith(b"HTTP/1.1 413"), answer[:300]


async def test_duplicate_delivery_is_accepted_once(gateway: Gateway) -> None:
    s1, b1 = await gateway.post_message(ANGRY)
    s2, b2 = await gateway.post_message(ANGRY)
    assert (s1, s2) == (202, 202)
    assert b2["duplicate"] is True and b2["message_id"] == b1["message_id"]
    await eventually(lambda: cards(gateway.slack, "support-billing"))
    await eventually(lambda: _has_card(gateway, b1["conversation_id"]))
    conv = await gateway.rt.store.load(b1["conversation_id"])
    assert conv is not None and len(conv.messages) == 1
    assert len(cards(gateway.slack, "support-billing")) == 1


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"customer_id": "c", "message_id": "m", "text": "   "}, "text"),
        ({"customer_id": "c", "message_id": "m", "text": "x" * 4001}, "text"),
        ({"customer_id": "c", "message_id": "m"}, "text"),
        ({"customer_id": "c d", "message_id": "m", "text": "hi"}, "customer_id"),
        ({"customer_id": "c", "message_id": "m", "text": "hi", "extra": 1}, "extra"),
        ({"customer_id": "c", "message_id": "m", "text": "hi", "customer": {"email": "nope"}}, "customer.email"),
        ([1, 2], "body"),
    ],
)
async def test_invalid_input_is_400_with_field(gateway: Gateway, payload: object, field: str) -> None:
    status, body = await gateway.post_message(json.dumps(payload).encode())
    assert status == 400
    assert body["error"] == "invalid_message"
    assert any(d["field"] == field for d in body["details"]), body


async def test_malformed_bodies_get_clear_4xx(gateway: Gateway) -> None:
    status, body = await gateway.post_message(b"{not json")
    assert (status, body["error"]) == (400, "invalid_json")
    status, body = await gateway.post_message(b"\xff\xfe{}")
    assert (status, body["error"]) == (400, "invalid_utf8")
    status, body = await gateway.post_message(b"[" * 100_000 + b"]" * 100_000)
    assert status == 413
    deep = b"[" * 5000 + b"]" * 5000
    status, body = await gateway.post_message(deep)
    assert status == 400


async def test_health_and_readiness(gateway: Gateway) -> None:
    async with gateway.session.get(f"{gateway.url}/healthz") as resp:
        assert resp.status == 200
    async with gateway.session.get(f"{gateway.url}/readyz") as resp:
        body = await resp.json()
        assert resp.status == 200 and body["checks"] == {"redis": True, "consumer_groups": True}


async def test_routine_question_is_answered_by_automation(
    redis: aioredis.Redis, redis_url: str, tmp_path: Path, callback: Callback
) -> None:
    gw = await start_gateway(make_settings(redis_url, tmp_path, api_callback_url=callback.url))
    try:
        status, body = await gw.post_message(
            {"customer_id": "c-7", "message_id": "q-1", "text": "How long does shipping usually take?"}
        )
        assert status == 202
        answer = await eventually(lambda: callback.received)
        assert answer[0]["author"] == "Switchboard bot" and "business days" in answer[0]["text"]

        async def automated() -> bool:  # the worker saves the state just after the reply goes out
            conv = await gw.rt.store.load(body["conversation_id"])
            return conv is not None and conv.state.value == "automated" and conv.card_ts is None

        await eventually(automated)
        assert all(not cards(gw.slack, ch) for ch in ("support-shipping", "support-general"))
        # The customer is not helped and asks for a person: clean handoff with the bot transcript.
        await gw.post_message({"customer_id": "c-7", "message_id": "q-2",
                               "text": "That did not help. This is unacceptable, I want a person"})
        card = (await eventually(lambda: cards(gw.slack, "support-shipping") or cards(gw.slack, "support-general")))[0]
        text = card_text(card)
        assert "customer asked for a human" in text and "keyword 'unacceptable'" in text
        assert "Switchboard bot" in text  # the bot's part of the transcript is on the card
        notice = await eventually(lambda: [r for r in callback.received if "a person will reply" in r["text"]])
        assert "within about" in notice[0]["text"] or "after we open" in notice[0]["text"]  # depends on the hour
        assert any(o["kind"] == "automation_handoff" for o in await outcomes(redis))
    finally:
        await gw.close()


async def test_undeliverable_bot_answer_goes_to_a_human(gateway: Gateway) -> None:
    """No callback URL configured: the bot cannot reach the customer, so a person gets the card."""
    status, _ = await gateway.post_message(
        {"customer_id": "c-8", "message_id": "q-1", "text": "How long does shipping usually take?"}
    )
    assert status == 202
    slack = gateway.slack
    found = await eventually(lambda: cards(slack, "support-shipping") or cards(slack, "support-general"))
    assert "bot answer not delivered" in card_text(found[0])


async def test_metrics_count_the_flow(gateway: Gateway) -> None:
    await gateway.post_message(ANGRY)
    await eventually(lambda: cards(gateway.slack, "support-billing"))

    async def scraped_after_ack() -> str | None:
        async with gateway.session.get(f"{gateway.url}/metrics") as resp:
            assert resp.status == 200
            text = await resp.text()
        return text if 'switchboard_worker_entries_total{result="acked"}' in text else None

    text = await eventually(scraped_after_ack)
    assert 'switchboard_messages_in_total{channel="api",duplicate="false"}' in text
    assert "switchboard_decisions_total{" in text and 'route="human"' in text
    assert 'switchboard_slack_call_seconds_count{method="chat.postMessage"}' in text
    assert "switchboard_queue_depth" in text
