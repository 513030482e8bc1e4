"""WebhookAutomation against a real local aiohttp server: signature, answers, handoffs and failures."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from gateway.domain import ChannelKind, Conversation, Customer, CustomerProfile, Direction, Message, Scores
from integrations.automation.webhook import WebhookAutomation
from integrations.webhook.signature import HEADER, SignatureError, sign, verify

SECRET = "s3cret"
SEEN = web.AppKey("seen", list)
SCORES = Scores(sentiment=0.1, urgency=0.2, skill={"shipping": 0.9, "general": 0.1}, automation_success=0.8)


def _valid(header: str, body: bytes, now: float) -> bool:
    try:
        verify(SECRET, header, body, now)
    except SignatureError:
        return False
    return True


def conversation(text: str) -> Conversation:
    return Conversation(
        id="conv_wh",
        customer=Customer(key="sms:+4911", channel=ChannelKind.SMS, external_id="+4911",
                          profile=CustomerProfile(name="Ada", tier="gold")),
        messages=[
            Message(id="m0", direction=Direction.INBOUND, channel=ChannelKind.SMS, text="hi"),
            Message(id="m1", direction=Direction.OUTBOUND, channel=ChannelKind.SMS, text="hello!", author="bot"),
            Message(id="m2", direction=Direction.INBOUND, channel=ChannelKind.SMS, text=text),
        ],
    )


async def external_bot(request: web.Request) -> web.Response:
    """A tiny external bot that checks the signature like a real one would."""
    body = await request.read()
    if not _valid(request.headers.get(HEADER, ""), body, time.time()):
        return web.Response(status=401)
    data = json.loads(body)
    request.app[SEEN].append(data)
    text = data["transcript"][-1]["text"]
    if text == "slow":
        await asyncio.sleep(1)
    if text == "boom":
        return web.Response(status=500)
    if text == "garbage":
        return web.Response(text="not json")
    if text == "both":
        return web.json_response({"answer": "x", "handoff": "y"})
    if "person" in text:
        return web.json_response({"handoff": "customer wants a person"})
    return web.json_response({"answer": "Your parcel arrives tomorrow.", "confidence": 0.8, "intent": "order_status"})


@pytest.fixture
async def bot_url() -> AsyncIterator[tuple[str, list[dict]]]:
    app = web.Application()
    app[SEEN] = []
    app.router.add_post("/bot", external_bot)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}/bot", app[SEEN]
    finally:
        await runner.cleanup()


async def test_answer_with_signed_transcript(bot_url: tuple[str, list[dict]]) -> None:
    url, seen = bot_url
    reply = await WebhookAutomation(url, SECRET).handle(conversation("where is my parcel"), SCORES)
    assert reply.answered and reply.text == "Your parcel arrives tomorrow." and reply.intent == "order_status"
    sent = seen[-1]
    assert sent["conversation"]["id"] == "conv_wh" and sent["conversation"]["customer"]["tier"] == "gold"
    assert [m["direction"] for m in sent["transcript"]] == ["inbound", "outbound", "inbound"]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("I want a person", "customer wants a person"),
        ("boom", "external bot returned HTTP 500"),
        ("garbage", "external bot sent an invalid reply (Invalid JSON"),
        ("both", "external bot sent an invalid reply (Value error, reply must have exactly one of 'answer' or "
                 "'handoff')"),
        ("slow", "external bot timed out after 0.3s"),
    ],
)
async def test_handoffs_and_failures(bot_url: tuple[str, list[dict]], text: str, reason: str) -> None:
    url, _ = bot_url
    reply = await WebhookAutomation(url, SECRET, timeout=0.3).handle(conversation(text), SCORES)
    assert not reply.answered
    assert (reply.handoff_reason or "").startswith(reason)


async def test_wrong_secret_and_unreachable(bot_url: tuple[str, list[dict]]) -> None:
    url, _ = bot_url
    reply = await WebhookAutomation(url, "wrong").handle(conversation("hi"), SCORES)
    assert reply.handoff_reason == "external bot returned HTTP 401"
    reply = await WebhookAutomation("http://127.0.0.1:9/bot", SECRET, timeout=1).handle(conversation("hi"), SCORES)
    assert not reply.answered and (reply.handoff_reason or "").startswith("external bot unreachable")


def test_signature_format_and_replay_window() -> None:
    body = b'{"a":1}'
    header = sign(SECRET, body, 1_700_000_000)
    assert header.startswith("t=1700000000,v1=") and len(header.split("v1=")[1]) == 64
    assert _valid(header, body, 1_700_000_100)
    assert not _valid(header, body, 1_700_000_400)  # too old
    assert not _valid(header, body + b" ", 1_700_000_000)
    assert not _valid("garbage", body, 1_700_000_000)
    with pytest.raises(ValueError):
        WebhookAutomation("http://x", "")
