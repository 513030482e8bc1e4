"""WhatsApp on both Twilio and Meta's Cloud API: each customer is answered through the provider they last wrote
through, from the sender they wrote to. Through the real gateway, worker, Redis, the Slack emulator and stand-ins of
Twilio's Messages API and Meta's Graph API.

Before: Meta's API answered every WhatsApp customer ("Meta's API wins for WhatsApp"), so one who wrote to the Twilio
WhatsApp sender got every reply from Meta's number, which they had never written to."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from aiohttp import web

from gateway import keys
from gateway.scheduler import ManualClock
from integrations.twilio.signature import compute
from tests.harness import Gateway, eventually, make_settings, serve_app, start_gateway, stored_card
from tests.test_twilio import PUBLIC, SHOP, SID, TOKEN, sms
from tests.test_whatsapp import ACCESS, APP_SECRET, PHONE_ID, VERIFY, WA_ID, Graph, delivery, text
from tests.test_whatsapp_reengage import CONTENT_SID, TEMPLATE, Thread
from tests.twilio_standin import StandIn

CUSTOMER = f"whatsapp:+{WA_ID}"
"""The same phone on both: Twilio's `From`, and Meta's `wa_id` with a plus."""
TWILIO_SENDER = "whatsapp:+18005550199"


@pytest.fixture
async def both(redis: aioredis.Redis, redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
               ) -> AsyncIterator[tuple[Gateway, StandIn, Graph]]:
    """Twilio and Meta both configured, each with its re-engagement template; `redis` first, it empties the
    database."""
    standin, graph = StandIn(url=""), Graph()
    twilio_app, graph_app = web.Application(), web.Application()
    standin.mount(twilio_app)
    graph_app.router.add_post("/v20.0/{phone_id}/messages", graph.messages)
    standin.url, twilio_runner = await serve_app(twilio_app)
    graph_url, graph_runner = await serve_app(graph_app)
    for name, value in {"TWILIO_AUTH_TOKEN": TOKEN, "TWILIO_ACCOUNT_SID": SID, "TWILIO_FROM_NUMBER": SHOP,
                        "TWILIO_API_URL": standin.url, "SWITCHBOARD_PUBLIC_URL": PUBLIC,
                        "TWILIO_WHATSAPP_REENGAGE_CONTENT_SID": CONTENT_SID,
                        "WHATSAPP_APP_SECRET": APP_SECRET, "WHATSAPP_VERIFY_TOKEN": VERIFY,
                        "WHATSAPP_ACCESS_TOKEN": ACCESS, "WHATSAPP_PHONE_NUMBER_ID": PHONE_ID,
                        "WHATSAPP_API_URL": f"{graph_url}/v20.0", "WHATSAPP_REENGAGE_TEMPLATE": TEMPLATE}.items():
        monkeypatch.setenv(name, value)
    gw = await start_gateway(make_settings(redis_url, tmp_path))
    try:
        yield gw, standin, graph
    finally:
        graph.release.set()
        await gw.close()
        await twilio_runner.cleanup()
        await graph_runner.cleanup()


async def _through_twilio(gw: Gateway, n: int, body: str) -> None:
    form = {**sms(sid=f"SM{n:032d}", frm=CUSTOMER, body=body), "To": TWILIO_SENDER}
    signed = compute(TOKEN, f"{PUBLIC}/channels/twilio", form.items())
    async with gw.session.post(f"{gw.url}/channels/twilio", data=form, headers={"X-Twilio-Signature": signed}) as r:
        assert r.status == 200


async def _through_meta(gw: Gateway, wamid: str, body: str) -> None:
    raw = json.dumps(delivery([text(wamid, body)])).encode()
    signature = "sha256=" + hmac.new(APP_SECRET.encode(), raw, hashlib.sha256).hexdigest()
    async with gw.session.post(f"{gw.url}/channels/whatsapp", data=raw, headers={
            "Content-Type": "application/json", "X-Hub-Signature-256": signature}) as resp:
        assert resp.status == 200


async def _claimed(gw: Gateway) -> Thread:
    card, conv_id = await stored_card(gw, "support-billing")
    assert (await gw.rt.ops.claim(conv_id, "U0ALICE")).ok
    return Thread(gw, card)


def _twilio_sent(standin: StandIn, body: str) -> list[dict[str, Any]]:
    return [c["form"] for c in standin.calls if c["form"].get("Body") == body]


def _meta_sent(graph: Graph, body: str) -> list[dict[str, Any]]:
    return [c["json"] for c in graph.calls if (c["json"].get("text") or {}).get("body") == body]


async def test_a_customer_who_wrote_to_the_twilio_sender_is_answered_from_it(
    both: tuple[Gateway, StandIn, Graph], redis: aioredis.Redis
) -> None:
    gw, standin, graph = both
    await _through_twilio(gw, 1, "I was charged twice on my invoice")
    thread = await _claimed(gw)
    ts = await thread.reply("Refunded, sorry about that")
    (sent,) = await eventually(lambda: _twilio_sent(standin, "Refunded, sorry about that"))
    assert sent["From"] == TWILIO_SENDER and sent["To"] == CUSTOMER
    await eventually(lambda: thread.delivered(ts))
    assert not _meta_sent(graph, "Refunded, sorry about that") and not graph.calls


async def test_a_customer_who_wrote_through_meta_is_answered_through_meta(
    both: tuple[Gateway, StandIn, Graph], redis: aioredis.Redis
) -> None:
    gw, standin, graph = both
    await _through_meta(gw, "wamid.IN1", "I was charged twice on my invoice")
    thread = await _claimed(gw)
    ts = await thread.reply("Refunded, sorry about that")
    (sent,) = await eventually(lambda: _meta_sent(graph, "Refunded, sorry about that"))
    assert sent["to"] == WA_ID
    await eventually(lambda: thread.delivered(ts))
    assert not standin.calls


async def test_the_provider_follows_the_customer_who_moves_from_one_to_the_other(
    both: tuple[Gateway, StandIn, Graph], redis: aioredis.Redis
) -> None:
    """The Twilio sender is forgotten when the customer writes through Meta, and remembered again when they write
    back to it: the reply goes to where they last wrote."""
    gw, standin, graph = both
    await _through_twilio(gw, 1, "I was charged twice on my invoice")
    thread = await _claimed(gw)
    await thread.reply("Which card was it?")
    (first,) = await eventually(lambda: _twilio_sent(standin, "Which card was it?"))
    assert first["From"] == TWILIO_SENDER

    await _through_meta(gw, "wamid.IN2", "The Visa ending 4242")
    await eventually(lambda: thread.lines("Visa ending 4242"))
    assert not await redis.exists(keys.reply_via(CUSTOMER))
    await thread.reply("Refunded to that card")
    (second,) = await eventually(lambda: _meta_sent(graph, "Refunded to that card"))
    assert second["to"] == WA_ID and not _twilio_sent(standin, "Refunded to that card")

    await _through_twilio(gw, 2, "Thanks! And the second charge?")
    await eventually(lambda: thread.lines("the second charge"))
    await thread.reply("That one too")
    (third,) = await eventually(lambda: _twilio_sent(standin, "That one too"))
    assert third["From"] == TWILIO_SENDER and not _meta_sent(graph, "That one too")


async def test_after_the_window_the_template_goes_out_through_the_customers_provider(
    both: tuple[Gateway, StandIn, Graph], redis: aioredis.Redis
) -> None:
    """WhatsApp's 24-hour window is kept per sender: Meta's template from Meta's number opened nothing for a
    customer who wrote to the Twilio sender."""
    gw, standin, graph = both
    await _through_twilio(gw, 1, "I was charged twice on my invoice")
    thread = await _claimed(gw)
    gw.rt.sla.clock = ManualClock(time.time() + 25 * 3600)
    await thread.reply("Refunded, sorry about that")
    (template,) = await eventually(lambda: [c["form"] for c in standin.calls if "ContentSid" in c["form"]])
    assert template["ContentSid"] == CONTENT_SID and template["From"] == TWILIO_SENDER
    await eventually(lambda: thread.lines("template went out"))
    assert not graph.calls
