"""Twilio SMS/WhatsApp through the real server: signed webhooks in, REST replies out to a local stand-in."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from pydantic import SecretStr
from yarl import URL

from gateway.domain import ChannelKind, Conversation, Customer, Direction, Message
from gateway.metrics import REGISTRY
from gateway.store import ConversationStore
from integrations.twilio import TwilioChannel, TwilioConfig, setup
from integrations.twilio.signature import compute, valid
from integrations.twilio.split import utf16_len
from integrations.twilio.urls import signed_urls
from tests.conftest import free_port
from tests.harness import serve_app, transcript_of
from tests.redis_refusals import REFUSALS
from tests.test_webchat_support import queued_profiles
from tests.tracebacks import logged_tracebacks
from tests.twilio_standin import StandIn

TOKEN = "twilio-test-auth-token"
SID = "AC00000000000000000000000000000001"
SHOP = "+18005550100"


def test_documented_example_vectors() -> None:
    """Twilio's published examples (auth token 12345): the classic docs and the current webhook-security page."""
    params = {"CallSid": "CA1234567890ABCDE", "Caller": "+12349013030", "Digits": "1234", "From": "+12349013030",
              "To": "+18005551212"}
    assert compute("12345", "https://mycompany.com/myapp.php?foo=1&bar=2", params.items()) == (
        "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
    )
    params |= {"Caller": "+14158675310", "From": "+14158675310"}
    assert compute("12345", "https://example.com/myapp.php?foo=1&bar=2", params.items()) == (
        "L/OH5YylLD5NRKLltdqwSvS0BnU="
    )


@dataclass
class Env:
    url: str
    http: aiohttp.ClientSession
    channel: TwilioChannel
    standin: StandIn
    redis: aioredis.Redis
    failed: list[tuple[str, str, str]] = field(default_factory=list)
    """What the status callbacks reported undelivered: (conversation id, channel, reason)."""

    async def post(self, form: dict[str, str], sign_url: str | None = None, headers: dict[str, str] | None = None,
                   token: str = TOKEN) -> aiohttp.ClientResponse:
        signed = compute(token, sign_url or f"{self.url}/channels/twilio", form.items())
        hdrs = {"X-Twilio-Signature": signed, **(headers or {})}
        async with self.http.post(f"{self.url}/channels/twilio", data=form, headers=hdrs) as resp:
            await resp.read()
            return resp

    async def transcript(self, customer_key: str) -> list[dict[str, Any]]:
        return await transcript_of(self.redis, customer_key)


async def _start(redis: aioredis.Redis, **extra: Any) -> tuple[Env, list[web.AppRunner]]:
    stand_app = web.Application()
    standin = StandIn(url="")
    standin.mount(stand_app)
    standin.url, stand_runner = await serve_app(stand_app)
    http = aiohttp.ClientSession()
    config = TwilioConfig(
        _env_file=None,  # type: ignore[call-arg]
        auth_token=SecretStr(TOKEN), account_sid=SID, from_number=SHOP, api_url=standin.url, **extra,
    )
    app = web.Application()
    failed: list[tuple[str, str, str]] = []

    async def on_failed(conversation_id: str, channel_name: str, reason: str) -> None:
        failed.append((conversation_id, channel_name, reason))

    channel = setup(app, redis=redis, ingest=ConversationStore(redis, partitions=4).ingest, session=http,
                    config=config, on_failed=on_failed)
    assert channel is not None
    channel.base_delay = 0.01
    url, runner = await serve_app(app)
    return Env(url, http, channel, standin, redis, failed), [runner, stand_runner]


@pytest.fixture
async def env(redis: aioredis.Redis) -> AsyncIterator[Env]:
    e, runners = await _start(redis)
    try:
        yield e
    finally:
        await e.http.close()
        for r in runners:
            await r.cleanup()


def sms(sid: str = "SM" + "a" * 32, frm: str = "+14155550123", body: str = "Where is my parcel?") -> dict[str, str]:
    return {"MessageSid": sid, "AccountSid": SID, "From": frm, "To": SHOP, "Body": body, "NumMedia": "0",
            "NumSegments": "1", "SmsStatus": "received"}


async def test_signed_sms_is_stored_once_and_answered_with_empty_twiml(env: Env) -> None:
    resp = await env.post(sms())
    assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/xml")
    async with env.http.post(f"{env.url}/channels/twilio", data=sms(),
                             headers={"X-Twilio-Signature": compute(TOKEN, f"{env.url}/channels/twilio",
                                                                    sms().items())}) as again:
        assert again.status == 200
        assert (await again.text()).endswith("<Response/>")
    lines = await env.transcript("sms:+14155550123")
    assert [(m["text"], m["channel"], m["external_id"]) for m in lines] == [
        ("Where is my parcel?", "sms", "SM" + "a" * 32)
    ]
    assert await queued_profiles(env.redis) == [("sms:+14155550123", {"phone": "+14155550123"})]


async def test_whatsapp_numbers_and_media_map_to_whatsapp_channel(env: Env) -> None:
    form = sms(sid="MM" + "b" * 32, frm="whatsapp:+4917012345678", body="see photo") | {
        "To": f"whatsapp:{SHOP}", "NumMedia": "1", "MediaUrl0": "https://api.twilio.com/media/ME1",
        "MediaContentType0": "image/jpeg", "ProfileName": "Jana",
    }
    assert (await env.post(form)).status == 200
    [line] = await env.transcript("whatsapp:+4917012345678")
    assert line["channel"] == "whatsapp"
    assert line["text"] == "see photo\n[attachment image/jpeg: https://api.twilio.com/media/ME1]"


async def test_bad_or_missing_signature_is_refused_and_nothing_stored(env: Env) -> None:
    assert (await env.post(sms(), token="wrong-token")).status == 403
    tampered = sms()
    signed = compute(TOKEN, f"{env.url}/channels/twilio", tampered.items())
    tampered["Body"] = "send me the refund to another account"
    async with env.http.post(f"{env.url}/channels/twilio", data=tampered,
                             headers={"X-Twilio-Signature": signed}) as resp:
        assert resp.status == 403
    async with env.http.post(f"{env.url}/channels/twilio", data=sms()) as resp:
        assert resp.status == 403
    assert await env.redis.keys("sb:dedupe:*") == []


async def test_signature_uses_forwarded_proto_and_host(env: Env) -> None:
    public = "https://support.example.com/channels/twilio"
    proxied = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "support.example.com"}
    assert (await env.post(sms(), sign_url=public)).status == 403  # no proxy headers: URL differs
    assert (await env.post(sms(), sign_url=public, headers=proxied)).status == 200
    assert (await env.post(sms(sid="SM" + "c" * 32), sign_url="https://support.example.com:443/channels/twilio",
                           headers=proxied)).status == 200


async def test_public_url_setting_wins(redis: aioredis.Redis) -> None:
    e, runners = await _start(redis, public_url="https://gw.example.org/")
    try:
        assert (await e.post(sms())).status == 403
        assert (await e.post(sms(), sign_url="https://gw.example.org/channels/twilio")).status == 200
    finally:
        await e.http.close()
        for r in runners:
            await r.cleanup()


async def test_redis_down_is_503(redis: aioredis.Redis) -> None:
    dead = aioredis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=0.5)
    http = aiohttp.ClientSession()
    app = web.Application()
    config = TwilioConfig(_env_file=None, auth_token=SecretStr(TOKEN), account_sid=SID,  # type: ignore[call-arg]
                          from_number=SHOP)
    setup(app, redis=dead, ingest=ConversationStore(dead, partitions=4).ingest, session=http, config=config)
    url, runner = await serve_app(app)
    try:
        form = sms()
        async with http.post(f"{url}/channels/twilio", data=form,
                             headers={"X-Twilio-Signature": compute(TOKEN, f"{url}/channels/twilio",
                                                                    form.items())}) as resp:
            assert resp.status == 503
    finally:
        await http.close()
        await runner.cleanup()
        await dead.aclose()


@pytest.mark.parametrize("refusal", sorted(REFUSALS))
async def test_redis_refusing_writes_is_503_and_twilios_retry_is_stored_once(
    env: Env, refusal: str, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    """A failover's READONLY or an OOM is an error reply, not a lost connection: it escaped the handler as a
    500 with a traceback. A 503 says nothing was stored, and Twilio's retry (a Fallback URL, connection
    overrides) delivers the message once Redis takes writes again."""
    async with REFUSALS[refusal](env.redis):
        refused = await env.post(sms())
        assert refused.status == 503 and refused.headers["Retry-After"] == "2"
    assert logged_tracebacks(caplog, capsys) == []
    assert await env.transcript("sms:+14155550123") == []
    for _ in range(2):  # the retry, then a second one: stored once
        assert (await env.post(sms())).status == 200
    assert [m["external_id"] for m in await env.transcript("sms:+14155550123")] == ["SM" + "a" * 32]


@pytest.mark.parametrize("public", [None, "https://gw.example.org/"])
async def test_signature_covers_the_query_string_as_configured(redis: aioredis.Redis, public: str | None) -> None:
    """Twilio signs the webhook URL as the operator typed it; yarl's `path_qs` decodes `%27`, `%40` and `%7E`,
    so a webhook configured with such a query string was refused with 403 on every message."""
    e, runners = await _start(redis, **({"public_url": public} if public else {}))
    base = (public or e.url + "/").rstrip("/") + "/channels/twilio"
    query = "?tenant=o%27brien&contact=ops%40example.org&home=%7Eops&q=a+b%2Bc"
    try:
        for sid, signed_query in (("SM" + "1" * 32, query),
                                  # a URL configured with the characters themselves, sent to us encoded
                                  ("SM" + "2" * 32, "?tenant=o'brien&contact=ops@example.org&home=~ops&q=a+b%2Bc")):
            form = sms(sid=sid)
            signature = compute(TOKEN, base + signed_query, form.items())
            async with e.http.post(URL(f"{e.url}/channels/twilio{query}", encoded=True), data=form,
                                   headers={"X-Twilio-Signature": signature}) as resp:
                assert resp.status == 200, (signed_query, resp.status)
        form = sms(sid="SM" + "3" * 32)
        signature = compute(TOKEN, base + query, form.items())
        async with e.http.post(URL(f"{e.url}/channels/twilio?tenant=someone-else", encoded=True), data=form,
                               headers={"X-Twilio-Signature": signature}) as resp:
            assert resp.status == 403  # the query is still signed: another tenant's URL is refused
        assert len(await e.transcript("sms:+14155550123")) == 2
    finally:
        await e.http.close()
        for r in runners:
            await r.cleanup()


def test_the_signed_url_is_the_request_line_not_a_reparsed_one() -> None:
    """The reviewer's case: a request whose parsed URL decodes `%27` (aiohttp's `make_mocked_request` builds
    one) still checks against the query Twilio signed, which is the one on the request line."""
    params = [("From", "+14155550123"), ("Body", "hi"), ("MessageSid", "SM1")]
    configured = "https://gw.example.com/channels/twilio?tenant=o%27brien"
    signature = compute("tok", configured, params)
    request = make_mocked_request("POST", "/channels/twilio?tenant=o%27brien", headers={"Host": "gw.example.com"})
    assert request.path_qs != request.raw_path  # the parsed form differs from what was sent
    assert valid("tok", signed_urls(request, "https://gw.example.com"), params, signature)
    assert not valid("tok", signed_urls(request, "https://gw.example.com"), params, compute("tok", configured + "x",
                                                                                              params))


def _conv(kind: ChannelKind, number: str) -> Conversation:
    return Conversation(id="conv_t1", customer=Customer(key=f"{kind.value}:{number}", channel=kind,
                                                        external_id=number))


def _reply(text: str = "It ships tomorrow.") -> Message:
    return Message(id="msg_r1", direction=Direction.OUTBOUND, channel=ChannelKind.SMS, text=text, author="Alice")


async def test_reply_retries_500_then_succeeds(env: Env) -> None:
    env.standin.script = [500, 429]
    delivery = await env.channel.send(_conv(ChannelKind.SMS, "+14155550123"), _reply())
    assert delivery.ok and delivery.external_id == f"SM{3:032d}"
    assert len(env.standin.calls) == 3
    call = env.standin.calls[-1]
    assert call["path"] == f"/2010-04-01/Accounts/{SID}/Messages.json"
    assert call["auth"] == "Basic " + base64.b64encode(f"{SID}:{TOKEN}".encode()).decode()
    assert call["form"] == {"To": "+14155550123", "From": SHOP, "Body": "It ships tomorrow."}


async def test_whatsapp_reply_and_long_text_is_split(env: Env) -> None:
    delivery = await env.channel.send(_conv(ChannelKind.WHATSAPP, "+4917012345678"), _reply("word " * 500))
    assert delivery.ok and len(env.standin.calls) == 2
    assert {c["form"]["To"] for c in env.standin.calls} == {"whatsapp:+4917012345678"}
    assert {c["form"]["From"] for c in env.standin.calls} == {f"whatsapp:{SHOP}"}
    assert all(len(c["form"]["Body"]) <= 1600 for c in env.standin.calls)


JOINERS = ("\u200d", "\U0001f3fd", "\u0301")
"""What must never start a part: a zero-width joiner, a skin tone, a combining accent."""


async def test_a_reply_with_emoji_is_split_by_utf16_units_never_inside_a_character(env: Env) -> None:
    """Twilio counts UTF-16 units: 1,595 code points with emoji are over 1,600 of them. Sent as one part,
    Twilio refused it for good (21617) and the customer got nothing."""
    sentence = "Your refund of 42 EUR is on its way 👍🏽 the family plan 👨‍👩‍👧 is active 🇩🇪 cafe\u0301 ✓ "
    text = (sentence * 40)[:1594].rstrip().ljust(1595, ".")
    assert len(text) == 1595 and utf16_len(text) > 1600
    delivery = await env.channel.send(_conv(ChannelKind.SMS, "+14155550123"), _reply(text))
    assert delivery.ok, delivery.error
    bodies = [c["form"]["Body"] for c in env.standin.calls]
    assert len(bodies) == 2 and all(utf16_len(b) <= 1600 for b in bodies)
    assert "".join(bodies).replace(" ", "") == text.replace(" ", "")  # only the space at the cut is dropped
    assert not any(b.startswith(JOINERS) or b.endswith("\u200d") for b in bodies)
    assert all(b.encode("utf-8") for b in bodies)  # no half of a surrogate pair (that would not encode)


async def test_a_long_reply_retried_after_a_part_failed_sends_only_the_rest(env: Env) -> None:
    """Part 2 refused: the retry (same message id, as the worker retries it) must not send part 1 again."""
    reply = _reply(" ".join(f"w{i}" for i in range(800)))  # 3,889 characters: three parts, none alike
    env.standin.script = [201, 400]
    first = await env.channel.send(_conv(ChannelKind.SMS, "+14155550123"), reply)
    assert not first.ok and len(env.standin.calls) == 2
    again = await env.channel.send(_conv(ChannelKind.SMS, "+14155550123"), reply)
    assert again.ok and len(env.standin.calls) == 4
    bodies = [c["form"]["Body"] for c in env.standin.calls]
    assert bodies[2] == bodies[1] and bodies[0] not in bodies[2:]  # part 2 again, then part 3; part 1 once
    assert again.external_id is not None and again.external_id.split(",")[0] == f"SM{1:032d}"


async def test_reply_final_failure_is_reported(env: Env) -> None:
    env.standin.script = [503] * 4
    delivery = await env.channel.send(_conv(ChannelKind.SMS, "+14155550123"), _reply())
    assert not delivery.ok and delivery.error is not None and "HTTP 503" in delivery.error
    assert len(env.standin.calls) == 4 and not delivery.permanent
    env.standin.calls.clear()
    env.standin.script = [400]
    delivery = await env.channel.send(_conv(ChannelKind.SMS, "+1"), _reply())
    assert not delivery.ok and "21211" in (delivery.error or "") and len(env.standin.calls) == 1  # no retry on 4xx
    assert delivery.permanent  # and none later: the agent is told at once


async def test_not_mounted_without_secrets(redis: aioredis.Redis) -> None:
    app = web.Application()
    async with aiohttp.ClientSession() as http:
        config = TwilioConfig(_env_file=None, account_sid=SID)  # type: ignore[call-arg]
        assert setup(app, redis=redis, ingest=ConversationStore(redis, 4).ingest, session=http, config=config) is None
    assert not [r for r in app.router.routes() if r.resource and r.resource.canonical == "/channels/twilio"]


PUBLIC = "https://gw.example.org"


async def _report(e: Env, sid: str, status: str, code: str | None = None, sign: bool = True) -> int:
    form = {"MessageSid": sid, "SmsSid": sid, "MessageStatus": status, "AccountSid": SID, "To": "+14155550123",
            "From": SHOP, "ApiVersion": "2010-04-01", **({"ErrorCode": code} if code else {})}
    signed = compute(TOKEN if sign else "wrong", f"{PUBLIC}/channels/twilio/status", form.items())
    async with e.http.post(f"{e.url}/channels/twilio/status", data=form,
                           headers={"X-Twilio-Signature": signed}) as resp:
        return resp.status


async def test_replies_ask_for_delivery_reports_and_an_undelivered_one_is_told_once(redis: aioredis.Redis) -> None:
    """Twilio's 201 only means queued: a landline or an unsubscribed number shows up later, as a status
    callback. The thread hears of it once per reply, however many parts failed or callbacks repeat."""
    e, runners = await _start(redis, public_url=PUBLIC + "/")
    try:
        reply = _reply(" ".join(f"w{i}" for i in range(400)))  # two parts
        assert (await e.channel.send(_conv(ChannelKind.SMS, "+14155550123"), reply)).ok
        assert {c["form"]["StatusCallback"] for c in e.standin.calls} == {f"{PUBLIC}/channels/twilio/status"}
        first, second = (f"SM{i:032d}" for i in (1, 2))

        assert await _report(e, first, "undelivered", "30006", sign=False) == 403
        assert await _report(e, first, "sent") == 204
        assert await _report(e, first, "delivered") == 204
        assert e.failed == []
        errors_before = REGISTRY.get_sample_value("switchboard_customer_channel_errors_total", {"channel": "sms"}) or 0
        assert await _report(e, second, "undelivered", "30006") == 204
        after = REGISTRY.get_sample_value("switchboard_customer_channel_errors_total", {"channel": "sms"})
        assert after == errors_before + 1  # the channel-errors alert sees reported failures too
        assert e.failed == [("conv_t1", "SMS", "30006: a landline, or a carrier that cannot take it")]
        assert await _report(e, second, "undelivered", "30006") == 204  # Twilio repeated itself
        assert await _report(e, first, "failed", "30008") == 204  # the other part of the same reply
        assert len(e.failed) == 1
        assert await _report(e, "SM" + "f" * 32, "failed") == 204  # not one of ours: nothing to tell

        assert (await e.channel.send(_conv(ChannelKind.WHATSAPP, "+4917012345678"),
                                     _reply().model_copy(update={"id": "msg_r2"}))).ok
        assert await _report(e, f"SM{3:032d}", "failed", "63016") == 204
        assert e.failed[-1] == ("conv_t1", "WhatsApp",
                                "63016: outside WhatsApp's 24-hour window (a template message is needed)")
        assert await _report(e, "SM<script>", "failed") == 400
    finally:
        await e.http.close()
        for r in runners:
            await r.cleanup()


async def test_no_public_url_means_no_delivery_reports_asked_for(env: Env) -> None:
    assert (await env.channel.send(_conv(ChannelKind.SMS, "+14155550123"), _reply())).ok
    assert "StatusCallback" not in env.standin.calls[-1]["form"]
