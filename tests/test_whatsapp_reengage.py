"""An agent answering a WhatsApp customer after the 24-hour window, with an approved template configured: the
reply is held, the template goes out once, the thread says so once, and the customer's answer releases the held
replies in order. Through the real gateway, worker, Redis, the Slack emulator and stand-ins of Meta's Graph API
and Twilio's Messages API.

Before: the reply was refused ("WhatsApp takes replies only within 24 h...") and the customer never reached."""

from __future__ import annotations

import asyncio
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
from gateway.channels import channel_configs_or_error
from gateway.redis_conn import as_str
from gateway.scheduler import ManualClock
from gateway.settings import ConfigError
from integrations.twilio.signature import compute
from tests.harness import Gateway, eventually, make_settings, serve_app, start_gateway, stored_card
from tests.test_desk import sender
from tests.test_twilio import PUBLIC, TOKEN, sms
from tests.test_whatsapp import ACCESS, APP_SECRET, PHONE_ID, VERIFY, WA_ID, Graph, delivery, text
from tests.twilio_gateway import sms_gw
from tests.twilio_standin import StandIn

__all__ = ["sms_gw"]

TEMPLATE = "support_followup:en_US"
CONTENT_SID = "HX" + "0123456789abcdef" * 2
TWILIO_CUSTOMER = "whatsapp:+14155550123"


async def _meta_gateway(redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, template: str | None,
                        graph: Graph | None = None) -> AsyncIterator[tuple[Gateway, Graph]]:
    """A gateway on Meta's Cloud API, played by `graph` (a plain `Graph` if none)."""
    graph = graph or Graph()
    graph_app = web.Application()
    graph_app.router.add_post("/v20.0/{phone_id}/messages", graph.messages)
    graph_url, graph_runner = await serve_app(graph_app)
    env = {"WHATSAPP_APP_SECRET": APP_SECRET, "WHATSAPP_VERIFY_TOKEN": VERIFY, "WHATSAPP_ACCESS_TOKEN": ACCESS,
           "WHATSAPP_PHONE_NUMBER_ID": PHONE_ID, "WHATSAPP_API_URL": f"{graph_url}/v20.0"}
    for name, value in {**env, **({"WHATSAPP_REENGAGE_TEMPLATE": template} if template else {})}.items():
        monkeypatch.setenv(name, value)
    gw = await start_gateway(make_settings(redis_url, tmp_path))
    try:
        yield gw, graph
    finally:
        graph.release.set()
        await gw.close()
        await graph_runner.cleanup()


@pytest.fixture
async def meta_gw(redis: aioredis.Redis, redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                  ) -> AsyncIterator[tuple[Gateway, Graph]]:
    """Meta's Cloud API with `WHATSAPP_REENGAGE_TEMPLATE`; `redis` first, it empties the database."""
    async for pair in _meta_gateway(redis_url, tmp_path, monkeypatch, TEMPLATE):
        yield pair


@pytest.fixture
async def meta_gw_plain(redis: aioredis.Redis, redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                        ) -> AsyncIterator[tuple[Gateway, Graph]]:
    """Meta's Cloud API without a template."""
    async for pair in _meta_gateway(redis_url, tmp_path, monkeypatch, None):
        yield pair


@pytest.fixture
def twilio_template(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TWILIO_WHATSAPP_REENGAGE_CONTENT_SID", CONTENT_SID)


@pytest.fixture
async def twilio_gw(twilio_template: None, sms_gw: tuple[Gateway, StandIn]) -> tuple[Gateway, StandIn]:
    """Twilio with the Content SID set before the gateway starts (fixtures run in the order requested)."""
    return sms_gw


async def _meta_writes(gw: Gateway, wamid: str, body: str) -> None:
    """The customer's message, as Meta's signed webhook delivers it."""
    raw = json.dumps(delivery([text(wamid, body)])).encode()
    signature = "sha256=" + hmac.new(APP_SECRET.encode(), raw, hashlib.sha256).hexdigest()
    async with gw.session.post(f"{gw.url}/channels/whatsapp", data=raw, headers={
            "Content-Type": "application/json", "X-Hub-Signature-256": signature}) as resp:
        assert resp.status == 200


async def _twilio_writes(gw: Gateway, n: int, body: str) -> None:
    form = sms(sid=f"SM{n:032d}", frm=TWILIO_CUSTOMER, body=body)
    signed = compute(TOKEN, f"{PUBLIC}/channels/twilio", form.items())
    async with gw.session.post(f"{gw.url}/channels/twilio", data=form, headers={"X-Twilio-Signature": signed}) as r:
        assert r.status == 200


class Thread:
    """The card's Slack thread and the agent replying in it."""

    def __init__(self, gw: Gateway, card: dict[str, Any]) -> None:
        self.gw, self.card = gw, card
        self.channel = gw.slack.channel_id("support-billing")

    def lines(self, containing: str) -> list[str]:
        return [m["text"] for m in self.gw.slack.replies(self.channel, self.card["ts"]) if containing in m["text"]]

    async def reply(self, body: str) -> str:
        ts: str = await sender(self.gw).message("U0ALICE", self.channel, body, thread_ts=self.card["ts"])
        return ts

    def delivered(self, ts: str) -> bool:
        return any(c.params.get("timestamp") == ts and c.params.get("name") == "white_check_mark"
                   for c in self.gw.slack.calls_to("reactions.add"))


async def _claimed_card(gw: Gateway) -> tuple[Thread, str]:
    card, conv_id = await stored_card(gw, "support-billing")
    assert (await gw.rt.ops.claim(conv_id, "U0ALICE")).ok
    return Thread(gw, card), conv_id


async def _meta_card(gw: Gateway) -> tuple[Thread, str]:
    """The customer writes on WhatsApp (Meta) and Alice claims the card."""
    await _meta_writes(gw, "wamid.IN1", "I was charged twice on my invoice")
    return await _claimed_card(gw)


def _next_day(gw: Gateway) -> ManualClock:
    clock = ManualClock(time.time() + 25 * 3600)
    gw.rt.sla.clock = clock
    return clock


async def _held(redis: aioredis.Redis, conv_id: str) -> list[str]:
    return [json.loads(as_str(raw))["text"] for raw in await redis.zrange(keys.held_replies(conv_id), 0, -1)]


async def _held_when(redis: aioredis.Redis, conv_id: str, count: int) -> list[str] | None:
    """The held replies' texts, oldest first, once there are `count` of them."""
    held = await _held(redis, conv_id)
    return held if len(held) == count else None


def _texts(graph: Graph) -> list[str]:
    return [c["json"]["text"]["body"] for c in graph.calls if c["json"].get("type") == "text"]


def _templates(graph: Graph) -> list[dict[str, Any]]:
    return [c["json"] for c in graph.calls if c["json"].get("type") == "template"]


async def test_meta_a_late_reply_sends_one_template_and_waits_for_the_customer(
    meta_gw: tuple[Gateway, Graph], redis: aioredis.Redis
) -> None:
    gw, graph = meta_gw
    thread, conv_id = await _meta_card(gw)
    texts_before = len(_texts(graph))
    clock = _next_day(gw)

    first = await thread.reply("Refunded, sorry about that")
    (template,) = await eventually(lambda: _templates(graph))
    assert template["to"] == WA_ID and template["messaging_product"] == "whatsapp"
    assert template["template"] == {"name": "support_followup", "language": {"code": "en_US"}}
    (note,) = await eventually(lambda: thread.lines("template went out"))
    assert "24-hour window has closed" in note and "(the customer last wrote 25h ago)" in note
    assert "delivered as soon as they do" in note
    assert await eventually(lambda: _held(redis, conv_id)) == ["Refunded, sorry about that"]

    second = await thread.reply("The refund reference is R-42")
    assert await eventually(lambda: _held_when(redis, conv_id, 2)) == [
        "Refunded, sorry about that", "The refund reference is R-42"]
    assert len(_templates(graph)) == 1 and len(thread.lines("template went out")) == 1
    assert len(_texts(graph)) == texts_before and not thread.lines("Not delivered")
    assert not thread.delivered(first) and not thread.delivered(second)

    clock.set(time.time())  # the customer answers the next day: their message opens the window again
    await _meta_writes(gw, "wamid.IN2", "Thanks, what happened?")
    await eventually(lambda: thread.delivered(first) and thread.delivered(second))
    await asyncio.sleep(0.3)  # nothing more comes
    assert _texts(graph)[texts_before:] == ["Refunded, sorry about that", "The refund reference is R-42"]
    assert len(_templates(graph)) == 1 and await _held(redis, conv_id) == []
    assert any("Thanks, what happened?" in line for line in thread.lines("Thanks"))
    assert not thread.lines("Not delivered")


async def test_meta_another_template_only_after_a_day_without_an_answer(
    meta_gw: tuple[Gateway, Graph], redis: aioredis.Redis
) -> None:
    """One nudge per wait, not per reply; a customer who let a whole day pass is asked once more."""
    gw, graph = meta_gw
    thread, conv_id = await _meta_card(gw)
    clock = _next_day(gw)
    await thread.reply("Refunded, sorry about that")
    await eventually(lambda: thread.lines("template went out"))
    clock.advance(23 * 3600)
    await thread.reply("Any news on your side?")
    await eventually(lambda: _held_when(redis, conv_id, 2))
    assert len(_templates(graph)) == 1
    clock.advance(2 * 3600)  # a day after the template, still no answer
    await thread.reply("We are closing this soon")
    await eventually(lambda: len(_templates(graph)) == 2)
    (again,) = await eventually(lambda: thread.lines("another approved template went out"))
    assert "(the customer last wrote 50h ago)" in again
    assert len(await _held(redis, conv_id)) == 3


async def test_meta_a_template_meta_refuses_leaves_nothing_held_and_the_agent_told(
    meta_gw: tuple[Gateway, Graph], redis: aioredis.Redis
) -> None:
    """A held reply with no template on its way would wait for an answer nobody asked for: not held, told."""
    gw, graph = meta_gw
    thread, conv_id = await _meta_card(gw)
    _next_day(gw)
    graph.script = [400]  # e.g. the template is not approved (yet)
    await thread.reply("Refunded")
    (refused,) = await eventually(lambda: thread.lines("Not delivered"))
    assert "the WhatsApp template did not go out" in refused and "131026" in refused
    assert await _held(redis, conv_id) == [] and not thread.lines("template went out")
    assert len(_templates(graph)) == 1 and "Refunded" not in _texts(graph)


async def test_meta_a_held_reply_that_then_fails_takes_the_normal_failure_path(
    meta_gw: tuple[Gateway, Graph], redis: aioredis.Redis
) -> None:
    gw, graph = meta_gw
    thread, conv_id = await _meta_card(gw)
    clock = _next_day(gw)
    first = await thread.reply("Refunded, sorry about that")
    second = await thread.reply("The refund reference is R-42")
    await eventually(lambda: _held_when(redis, conv_id, 2))
    clock.set(time.time())
    graph.script = [400]  # Meta refuses the first held reply for good
    await _meta_writes(gw, "wamid.IN2", "Thanks, what happened?")
    (refused,) = await eventually(lambda: thread.lines("Not delivered"))
    assert "131026" in refused
    await eventually(lambda: thread.delivered(second))
    assert not thread.delivered(first)
    dead: Any = await redis.xrange(keys.DEAD)
    assert [f[b"text"] for _, f in dead] == [b"Refunded, sorry about that"]


async def test_meta_without_a_template_a_late_reply_is_refused_as_before(
    meta_gw_plain: tuple[Gateway, Graph], redis: aioredis.Redis
) -> None:
    gw, graph = meta_gw_plain
    thread, conv_id = await _meta_card(gw)
    _next_day(gw)
    await thread.reply("Refunded")
    (refused,) = await eventually(lambda: thread.lines("Not delivered"))
    assert "WhatsApp takes replies only within 24 h of the customer's last message (25h ago)" in refused
    assert not _templates(graph) and "Refunded" not in _texts(graph) and await _held(redis, conv_id) == []


async def test_twilio_a_late_reply_sends_the_content_template_once_and_follows_the_answer(
    twilio_gw: tuple[Gateway, StandIn], redis: aioredis.Redis
) -> None:
    gw, standin = twilio_gw
    await _twilio_writes(gw, 1, "I was charged twice on my invoice")
    thread, conv_id = await _claimed_card(gw)
    clock = _next_day(gw)
    first = await thread.reply("Refunded, sorry about that")
    second = await thread.reply("The refund reference is R-42")
    await eventually(lambda: _held_when(redis, conv_id, 2))
    (template,) = [c["form"] for c in standin.calls if "ContentSid" in c["form"]]
    assert template["ContentSid"] == CONTENT_SID and template["To"] == TWILIO_CUSTOMER and "Body" not in template
    assert len(thread.lines("template went out")) == 1
    assert not [c for c in standin.calls if c["form"].get("Body", "").startswith(("Refunded", "The refund"))]

    clock.set(time.time())
    await _twilio_writes(gw, 2, "Thanks, what happened?")
    await eventually(lambda: thread.delivered(first) and thread.delivered(second))
    await asyncio.sleep(0.3)
    replies = [c["form"] for c in standin.calls if "Body" in c["form"]]
    assert [r["Body"] for r in replies] == ["Refunded, sorry about that", "The refund reference is R-42"]
    assert {r["From"] for r in replies} == {template["From"]}  # the window is kept per sender: the same one
    assert len([c for c in standin.calls if "ContentSid" in c["form"]]) == 1


async def test_an_opted_out_customer_gets_no_template(
    twilio_gw: tuple[Gateway, StandIn], redis: aioredis.Redis
) -> None:
    """STOP wins: the reply is refused with the opt-out as the reason, nothing is held and nothing sent."""
    gw, standin = twilio_gw
    await _twilio_writes(gw, 1, "I was charged twice on my invoice")
    thread, conv_id = await _claimed_card(gw)
    await _twilio_writes(gw, 2, "STOP")
    await eventually(lambda: thread.lines("opted out"))
    _next_day(gw)
    sent_before = len(standin.calls)
    await thread.reply("Refunded")
    (refused,) = await eventually(lambda: thread.lines("Not delivered"))
    assert "opted out (texted STOP)" in refused
    assert len(standin.calls) == sent_before and await _held(redis, conv_id) == []
    assert not thread.lines("template went out")


async def test_held_replies_are_erased_with_the_conversation(
    twilio_gw: tuple[Gateway, StandIn], redis: aioredis.Redis
) -> None:
    gw, _ = twilio_gw
    await _twilio_writes(gw, 1, "I was charged twice on my invoice")
    thread, conv_id = await _claimed_card(gw)
    _next_day(gw)
    await thread.reply("Refunded, sorry about that")
    await eventually(lambda: _held(redis, conv_id))
    eraser = gw.rt.pipeline.eraser
    assert eraser is not None
    await eraser.forget(TWILIO_CUSTOMER, "U0LEAD")
    assert not await redis.exists(keys.held_replies(conv_id))


async def test_the_senders_records_of_a_customers_replies_are_erased_with_them(
    meta_gw: tuple[Gateway, Graph], redis: aioredis.Redis
) -> None:
    """Sent parts, attempt marks and status records are keyed by the reply or Meta's message id (which carries the
    customer's phone number), not the conversation: an erasure left them behind for days."""
    gw, graph = meta_gw
    thread, _ = await _meta_card(gw)
    first = await thread.reply("Refunded, sorry about that")
    await eventually(lambda: thread.delivered(first))
    wamid = graph.taken[-1]["id"]
    recorded = {k for k in [as_str(k) for k in await redis.keys("sb:whatsapp:*")] if "wamid.IN" not in k}
    assert any(wamid in k for k in recorded) and any(k.startswith("sb:whatsapp:landed:") for k in recorded)
    eraser = gw.rt.pipeline.eraser
    assert eraser is not None
    await eraser.forget(f"whatsapp:+{WA_ID}", "U0LEAD")
    left = [as_str(k) for k in await redis.keys("sb:whatsapp:*") if as_str(k) in recorded]
    assert left == [], left


@pytest.mark.parametrize(("variable", "value"), [
    ("WHATSAPP_REENGAGE_TEMPLATE", "support_followup"),
    ("WHATSAPP_REENGAGE_TEMPLATE", "support_followup:en-US"),
    ("WHATSAPP_REENGAGE_TEMPLATE", "Support Followup:en_US"),
    ("TWILIO_WHATSAPP_REENGAGE_CONTENT_SID", "support_followup"),
    ("TWILIO_WHATSAPP_REENGAGE_CONTENT_SID", "HX123"),
])
def test_a_bad_template_setting_stops_start_up_with_one_line(
    variable: str, value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as raised:
        channel_configs_or_error()
    assert str(raised.value).startswith(f"configuration error: {variable}: expected ")
    assert "\n" not in str(raised.value)


def test_template_settings_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    assert channel_configs_or_error().whatsapp.reengage() is None  # unset: late replies are refused as before
    monkeypatch.setenv("WHATSAPP_REENGAGE_TEMPLATE", " support_followup:pt_BR ")
    monkeypatch.setenv("TWILIO_WHATSAPP_REENGAGE_CONTENT_SID", CONTENT_SID)
    configs = channel_configs_or_error()
    assert configs.whatsapp.reengage() == ("support_followup", "pt_BR")
    assert configs.twilio.whatsapp_reengage_content_sid == CONTENT_SID


async def test_meta_held_replies_go_out_in_the_order_the_agent_sent_them(
    meta_gw: tuple[Gateway, Graph], redis: aioredis.Redis
) -> None:
    """The first reply's template send failed for a moment, so it was held after the second: held by the time of
    holding, it went out after the reply the agent wrote later."""
    gw, graph = meta_gw
    thread, conv_id = await _meta_card(gw)
    clock = _next_day(gw)
    graph.script = [500] * 4  # Graph answers 500 to every try of the first template: retried later
    await thread.reply("Refunded, sorry about that")
    await eventually(lambda: len(_templates(graph)) == 4 and not graph.script, timeout=15)
    await thread.reply("The refund reference is R-42")
    await eventually(lambda: _held_when(redis, conv_id, 2), timeout=30)
    clock.set(time.time())
    await _meta_writes(gw, "wamid.IN2", "Thanks, what happened?")
    await eventually(lambda: len(_texts(graph)) == 2, timeout=15)
    assert _texts(graph) == ["Refunded, sorry about that", "The refund reference is R-42"]


async def test_meta_held_replies_a_new_conversation_leaves_behind_are_told_not_lost_silently(
    meta_gw: tuple[Gateway, Graph], redis: aioredis.Redis
) -> None:
    """Resolved, then an afterthought held for the window; the customer answers only after the reopen window, so
    their message starts a new conversation. The held reply waited in the old one for ever, unsent and untold,
    after the agent was promised it would be delivered."""
    gw, graph = meta_gw
    thread, conv_id = await _meta_card(gw)
    assert (await gw.rt.ops.resolve(conv_id, "U0ALICE", skill="billing", urgency=None, mood=None)).ok
    clock = _next_day(gw)
    texts_before = len(_texts(graph))
    await thread.reply("One more thing: the refund takes 3 days")
    await eventually(lambda: _held(redis, conv_id))
    await eventually(lambda: thread.lines("template went out"))
    clock.set(time.time())
    await redis.set(keys.closed(conv_id), int(time.time()) - 8 * 86400)  # as if the answer came 8 days on
    await _meta_writes(gw, "wamid.IN2", "ok thanks")
    (told,) = await eventually(lambda: thread.lines("in a new conversation"))
    assert "the 1 held reply was not sent" in told and "Answer under the new card" in told
    old = await gw.rt.store.load(conv_id)
    assert old is not None
    assert as_str(await redis.get(keys.customer_conversation(old.customer.key))) != conv_id  # a new conversation
    assert await _held(redis, conv_id) == [] and not await redis.keys("sb:cust:*:held")
    assert len(_texts(graph)) == texts_before  # the held reply did not go out under the new conversation
