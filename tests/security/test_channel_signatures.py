"""Signatures on the other inbound endpoints: the forget API, Twilio, WhatsApp and the web chat identity.

Channel routes are mounted by gateway/app.py only when their integration is configured (and, at the
time of writing, the mount call itself was still being wired in by another change). A route that
`create_app` does not serve is reported as an explicit skip naming the path, never silently passed.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlencode

import pytest
import redis.asyncio as aioredis

from gateway import keys
from integrations.webhook.signature import sign
from tests.harness import API_SECRET, Gateway, make_settings, start_gateway
from tests.tracebacks import logged_tracebacks

TWILIO_TOKEN = "twilio-auth-token-0123456789"
META_SECRET = "meta-app-secret-0123456789"
IDENTITY_SECRET = "webchat-identity-secret-0123456789"


@pytest.fixture
async def channel_gw(redis: aioredis.Redis, redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                     ) -> AsyncIterator[Gateway]:
    for name, value in {"TWILIO_AUTH_TOKEN": TWILIO_TOKEN, "TWILIO_ACCOUNT_SID": "AC0123", "TWILIO_FROM_NUMBER":
                        "+15550001111", "WHATSAPP_APP_SECRET": META_SECRET, "WHATSAPP_VERIFY_TOKEN": "verify-me",
                        "WHATSAPP_ACCESS_TOKEN": "meta-token", "WHATSAPP_PHONE_NUMBER_ID": "1234567890",
                        "WEBCHAT_IDENTITY_SECRET": IDENTITY_SECRET}.items():
        monkeypatch.setenv(name, value)
    gw = await start_gateway(make_settings(redis_url, tmp_path), with_worker=False)
    yield gw
    await gw.close()


def served(gw: Gateway, method: str, path: str) -> None:
    for resource in gw.app.router.resources():
        if resource.canonical == path and any(r.method == method for r in resource):
            return
    pytest.skip(f"{method} {path} is not mounted by gateway/app.py create_app() at test time")


async def stored(redis: aioredis.Redis, partitions: int) -> int:
    return sum([int(await redis.xlen(keys.inbound_stream(p))) for p in range(partitions)])


async def test_forget_api_requires_a_valid_signature(channel_gw: Gateway, redis: aioredis.Redis) -> None:
    served(channel_gw, "DELETE", "/v1/customers/{ref}")
    url = f"{channel_gw.url}/v1/customers/api:someone"
    mine = json.dumps({"customer": "api:someone"}).encode()
    other = json.dumps({"customer": "api:someone-else"}).encode()
    old = int(time.time()) - 400
    for body, header in ((b"", None), (b"", "t=1,v1=00"), (mine, sign("wrong-secret", mine)),
                         (mine, sign(API_SECRET, mine, old)), (mine, sign(API_SECRET, b"tampered")),
                         (b"", sign(API_SECRET, b"")),  # signed, but says nothing of whom to erase
                         (other, sign(API_SECRET, other))):  # a request captured for another customer
        headers = {} if header is None else {"X-Switchboard-Signature": header}
        async with channel_gw.session.delete(url, data=body, headers=headers) as resp:
            assert resp.status == 401, (body, header, resp.status, await resp.text())
    async with channel_gw.session.delete(url, data=mine, headers={"X-Switchboard-Signature": sign(API_SECRET, mine)}
                                         ) as resp:
        assert resp.status == 404  # signed for this customer: accepted (nobody is known by that id here)


@pytest.mark.parametrize("path", ["/channels/twilio", "/channels/twilio/status"])
async def test_twilio_refuses_missing_and_wrong_signatures(channel_gw: Gateway, redis: aioredis.Redis, path: str
                                                           ) -> None:
    served(channel_gw, "POST", path)
    form = {"MessageSid": "SM0001", "From": "+15551234567", "To": "+15550001111", "Body": "hello", "NumMedia": "0",
            "MessageStatus": "undelivered", "ErrorCode": "30003"}
    body = urlencode(form)
    for signature in (None, "", "bm90IGEgc2lnbmF0dXJl", "x" * 5000):
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        if signature is not None:
            headers["X-Twilio-Signature"] = signature
        async with channel_gw.session.post(f"{channel_gw.url}{path}", data=body, headers=headers) as resp:
            assert resp.status == 403, resp.status
    assert await stored(redis, channel_gw.settings.partitions) == 0


def meta_signature(body: bytes, secret: str = META_SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


async def test_whatsapp_refuses_bad_signatures_and_replays_add_nothing(
    channel_gw: Gateway, redis: aioredis.Redis
) -> None:
    served(channel_gw, "POST", "/channels/whatsapp")
    message = {"from": "4917012345678", "id": "wamid.REPLAY1", "timestamp": str(int(time.time())), "type": "text",
               "text": {"body": "hello"}}
    value = {"messaging_product": "whatsapp", "metadata": {"phone_number_id": "1234567890"},
             "contacts": [{"wa_id": "4917012345678", "profile": {"name": "Jane"}}], "messages": [message]}
    body = json.dumps({"object": "whatsapp_business_account",
                       "entry": [{"id": "1", "changes": [{"field": "messages", "value": value}]}]}).encode()
    url = f"{channel_gw.url}/channels/whatsapp"
    for signature in (None, "sha256=" + "0" * 64, meta_signature(body, "wrong"), meta_signature(body + b" ")):
        headers = {"Content-Type": "application/json"}
        if signature is not None:
            headers["X-Hub-Signature-256"] = signature
        async with channel_gw.session.post(url, data=body, headers=headers) as resp:
            assert 400 <= resp.status < 500, resp.status
    assert await stored(redis, channel_gw.settings.partitions) == 0
    good = {"Content-Type": "application/json", "X-Hub-Signature-256": meta_signature(body)}
    for _ in range(3):  # Meta re-delivers; a captured request replayed is the same delivery again
        async with channel_gw.session.post(url, data=body, headers=good) as resp:
            assert resp.status == 200
    assert await stored(redis, channel_gw.settings.partitions) == 1


async def test_webchat_identity_needs_its_hash(channel_gw: Gateway) -> None:
    served(channel_gw, "POST", "/webchat/session")
    url = f"{channel_gw.url}/webchat/session"
    for identity in ({"user_id": "u-42"}, {"user_id": "u-42", "user_hash": "00" * 32},
                     {"user_id": "u-42", "user_hash": hmac.new(b"wrong", b"u-42", hashlib.sha256).hexdigest()}):
        async with channel_gw.session.post(url, json={"identity": identity},
                                           headers={"Origin": channel_gw.url}) as resp:
            assert resp.status == 401, (identity, resp.status, await resp.text())


HOSTILE_SIGNATURES = ["é".encode(), b"\xff\xfe\xfd", ("0" * 63 + "é").encode(), b"\xc3", "𝟘𝟙".encode(),
                      ("ü" * 28).encode("latin-1")]
"""Signature header values with non-ASCII bytes: UTF-8, invalid UTF-8, Latin-1, a digest with one bad
character. `hmac.compare_digest` raises TypeError on non-ASCII text, which every endpoint turned into a 500
with a traceback."""


def inbound_endpoints(gw: Gateway) -> list[tuple[str, str, str, bytes, str, bytes, int]]:
    """(method, path, content type, body, signature header, value prefix, the refusal expected) for every
    signed inbound endpoint."""
    now = str(int(time.time())).encode()
    form = urlencode({"MessageSid": "SM0001", "From": "+15551234567", "To": "+15550001111", "Body": "hello",
                      "MessageStatus": "undelivered"}).encode()
    message = json.dumps({"customer_id": "c-1", "message_id": "m-1", "text": "hello"}).encode()
    whatsapp = json.dumps({"object": "whatsapp_business_account", "entry": []}).encode()
    form_type, json_type = "application/x-www-form-urlencoded", "application/json"
    return [
        ("POST", "/v1/messages", json_type, message, "X-Switchboard-Signature", b"t=" + now + b",v1=", 401),
        ("DELETE", "/v1/customers/api:someone", json_type, b'{"customer": "api:someone"}',
         "X-Switchboard-Signature", b"t=" + now + b",v1=", 401),
        ("POST", "/channels/twilio", form_type, form, "X-Twilio-Signature", b"", 403),
        ("POST", "/channels/twilio/status", form_type, form, "X-Twilio-Signature", b"", 403),
        ("POST", "/channels/whatsapp", json_type, whatsapp, "X-Hub-Signature-256", b"sha256=", 401),
    ]


async def raw_request(gw: Gateway, method: str, path: str, headers: list[bytes], body: bytes) -> int:
    """One request written byte for byte (an HTTP client would refuse or re-encode these header values)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.settings.port)
    head = [f"{method} {path} HTTP/1.1".encode(), b"Host: 127.0.0.1", f"Content-Length: {len(body)}".encode(),
            b"Connection: close", *headers]
    writer.write(b"\r\n".join(head) + b"\r\n\r\n" + body)
    await writer.drain()
    answer = await reader.read()
    writer.close()
    await writer.wait_closed()
    return int(answer.split(b" ", 2)[1])


async def test_non_ascii_signature_headers_are_refused_cleanly_everywhere(
    channel_gw: Gateway, redis: aioredis.Redis, caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for method, path, ctype, body, header, prefix, refusal in inbound_endpoints(channel_gw):
        served(channel_gw, method, "/v1/customers/{ref}" if path.startswith("/v1/customers/") else path)
        for value in HOSTILE_SIGNATURES:
            headers = [f"Content-Type: {ctype}".encode(), header.encode() + b": " + prefix + value]
            status = await raw_request(channel_gw, method, path, headers, body)
            assert status == refusal, (path, value, status)
    assert logged_tracebacks(caplog, capsys) == []
    assert await stored(redis, channel_gw.settings.partitions) == 0


async def test_compressed_bodies_are_refused_everywhere(channel_gw: Gateway, redis: aioredis.Redis) -> None:
    """A Content-Encoding that does not decode raised aiohttp's RequestPayloadError from the body read: a 500
    on every endpoint. No body is inflated now: a 415 before it is read, and nothing stored."""
    for method, path, ctype, _, header, prefix, _ in inbound_endpoints(channel_gw):
        headers = [f"Content-Type: {ctype}".encode(), b"Content-Encoding: gzip", header.encode() + b": " + prefix]
        status = await raw_request(channel_gw, method, path, headers, b"this is not gzip")
        assert status == 415, (path, status)
    assert await stored(redis, channel_gw.settings.partitions) == 0
