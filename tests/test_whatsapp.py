"""Meta WhatsApp Cloud API through the real server: handshake, signed deliveries, statuses, Graph replies."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis
from aiohttp import web
from pydantic import SecretStr

from gateway.domain import ChannelKind, Conversation, Customer, Direction, Message
from gateway.store import ConversationStore
from integrations.whatsapp import WhatsAppCloudChannel, WhatsAppConfig, setup
from integrations.whatsapp.webhook import STATUS_STREAM, status_key
from tests.harness import serve_app, transcript_of
from tests.redis_refusals import REFUSALS
from tests.test_webchat_support import queued_profiles
from tests.tracebacks import logged_tracebacks

APP_SECRET = "meta-test-app-secret"
VERIFY = "meta-verify-token"
ACCESS = "EAAG-test-access-token"
PHONE_ID = "106540352242922"
WA_ID = "4917012345678"


TAKEN_THEN_502 = -502
"""Script code: Meta takes the message, then a proxy answers 502 (the sender never sees the wamid)."""
TAKEN_THEN_HANG = -1
"""Script code: Meta takes the message, then the answer never comes (the sender times out)."""


@dataclass
class Graph:
    """Graph API stand-in: `/<phone id>/messages`, status codes from `script` (or the codes above), every request
    recorded, every message Meta took kept in `taken` (what its status webhooks would then report)."""

    script: list[int] = field(default_factory=list)
    calls: list[dict[str, Any]] = field(default_factory=list)
    taken: list[dict[str, Any]] = field(default_factory=list)
    """Each taken request's body with the wamid Meta gave it under `id`."""
    release: asyncio.Event = field(default_factory=asyncio.Event)
    """Set at teardown: a hanging answer ends then, instead of holding the server's shutdown for a minute."""

    def _take(self, body: dict[str, Any]) -> str:
        wamid = f"wamid.OUT{len(self.calls)}"
        self.taken.append({**body, "id": wamid})
        return wamid

    async def messages(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.calls.append({"path": request.path, "auth": request.headers.get("Authorization"), "json": body})
        status = self.script.pop(0) if self.script else 200
        if status == 200:
            return web.json_response({"messaging_product": "whatsapp", "contacts": [{"input": body["to"],
                                      "wa_id": body["to"]}], "messages": [{"id": self._take(body)}]})
        if status == TAKEN_THEN_502:
            self._take(body)
            return web.Response(status=502, text="Bad Gateway")
        if status == TAKEN_THEN_HANG:
            self._take(body)
            await self.release.wait()
            return web.Response(status=504)
        return web.json_response({"error": {"message": "Recipient is not a valid WhatsApp user", "type":
                                  "OAuthException", "code": 131026, "fbtrace_id": "x"}}, status=status)


@dataclass
class Env:
    url: str
    http: aiohttp.ClientSession
    channel: WhatsAppCloudChannel
    graph: Graph
    redis: aioredis.Redis
    failed: list[tuple[str, str, str]]
    """What the receiver reported undelivered: (conversation id, channel, reason)."""

    async def deliver(self, payload: dict[str, Any], secret: str = APP_SECRET, sign: bool = True) -> int:
        body = json.dumps(payload).encode()
        headers = {"Content-Type": "application/json"}
        if sign:
            headers["X-Hub-Signature-256"] = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        async with self.http.post(f"{self.url}/channels/whatsapp", data=body, headers=headers) as resp:
            return resp.status

    async def transcript(self) -> list[dict[str, Any]]:
        return await transcript_of(self.redis, f"whatsapp:+{WA_ID}")


@pytest.fixture
async def env(redis: aioredis.Redis) -> AsyncIterator[Env]:
    graph = Graph()
    graph_app = web.Application()
    graph_app.router.add_post("/v20.0/{phone_id}/messages", graph.messages)
    graph_url, graph_runner = await serve_app(graph_app)
    http = aiohttp.ClientSession()
    config = WhatsAppConfig(
        _env_file=None,  # type: ignore[call-arg]
        app_secret=SecretStr(APP_SECRET), verify_token=SecretStr(VERIFY), access_token=SecretStr(ACCESS),
        phone_number_id=PHONE_ID, api_url=f"{graph_url}/v20.0",
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
    try:
        yield Env(url, http, channel, graph, redis, failed)
    finally:
        graph.release.set()
        await http.close()
        await runner.cleanup()
        await graph_runner.cleanup()


def delivery(
    messages: list[dict[str, Any]] | None = None, statuses: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    value: dict[str, Any] = {"messaging_product": "whatsapp",
                             "metadata": {"display_phone_number": "15550001111", "phone_number_id": PHONE_ID}}
    if messages is not None:
        value["contacts"] = [{"profile": {"name": "Jana Novak"}, "wa_id": WA_ID}]
        value["messages"] = messages
    if statuses is not None:
        value["statuses"] = statuses
    return {"object": "whatsapp_business_account",
            "entry": [{"id": "102290129340398", "changes": [{"value": value, "field": "messages"}]}]}


def text(wamid: str, body: str) -> dict[str, Any]:
    return {"from": WA_ID, "id": wamid, "timestamp": "1717000000", "text": {"body": body}, "type": "text"}


async def test_verification_handshake(env: Env) -> None:
    ok = {"hub.mode": "subscribe", "hub.verify_token": VERIFY, "hub.challenge": "1158201444"}
    async with env.http.get(f"{env.url}/channels/whatsapp", params=ok) as resp:
        assert resp.status == 200 and await resp.text() == "1158201444"
    async with env.http.get(f"{env.url}/channels/whatsapp", params=ok | {"hub.verify_token": "nope"}) as resp:
        assert resp.status == 403


async def test_signed_messages_are_ingested_once(env: Env) -> None:
    payload = delivery([text("wamid.IN1", "Hello, my order is late"),
                        {"from": WA_ID, "id": "wamid.IN2", "type": "image",
                         "image": {"id": "1234", "mime_type": "image/jpeg", "caption": "the box"}}])
    assert await env.deliver(payload) == 200
    assert await env.deliver(payload) == 200  # Meta re-delivers: no double
    lines = await env.transcript()
    assert [(m["text"], m["external_id"], m["channel"]) for m in lines] == [
        ("Hello, my order is late", "wamid.IN1", "whatsapp"),
        ("the box\n[image: media id 1234]", "wamid.IN2", "whatsapp"),
    ]
    assert await queued_profiles(env.redis) == [
        (f"whatsapp:+{WA_ID}", {"name": "Jana Novak", "phone": f"+{WA_ID}"})
    ] * 2


@pytest.mark.parametrize("refusal", sorted(REFUSALS))
async def test_redis_refusing_writes_is_503_and_metas_redelivery_is_stored_once(
    env: Env, refusal: str, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    """A failover's READONLY or an OOM escaped the handler as a 500 with a traceback; a 503 says nothing
    was kept, and Meta's re-delivery is ingested once Redis takes writes again."""
    payload = delivery([text("wamid.RO1", "Is anyone there?")])
    async with REFUSALS[refusal](env.redis):
        assert await env.deliver(payload) == 503
    assert logged_tracebacks(caplog, capsys) == []
    assert await env.transcript() == []
    for _ in range(2):  # the re-delivery, then another: stored once
        assert await env.deliver(payload) == 200
    assert [m["external_id"] for m in await env.transcript()] == ["wamid.RO1"]


async def test_bad_signature_is_refused(env: Env) -> None:
    payload = delivery([text("wamid.IN9", "forged")])
    assert await env.deliver(payload, secret="wrong") == 401
    assert await env.deliver(payload, sign=False) == 401
    assert await env.transcript() == []


async def test_large_chunked_delivery_is_read_whole(env: Env) -> None:
    payload = delivery([text(f"wamid.B{i}", f"message {i} " + "x" * 3000) for i in range(100)])
    body = json.dumps(payload).encode()
    sig = "sha256=" + hmac.new(APP_SECRET.encode(), body, hashlib.sha256).hexdigest()

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(body), 4096):
            yield body[i:i + 4096]

    async with env.http.post(f"{env.url}/channels/whatsapp", data=chunks(),
                             headers={"X-Hub-Signature-256": sig, "Content-Type": "application/json"}) as resp:
        assert resp.status == 200
    assert len(await env.transcript()) == 100


async def test_replies_through_graph_and_statuses_are_recorded(env: Env) -> None:
    conv = Conversation(id="conv_w1", customer=Customer(key=f"whatsapp:+{WA_ID}", channel=ChannelKind.WHATSAPP,
                                                        external_id=f"+{WA_ID}"))
    msg = Message(id="msg_1", direction=Direction.OUTBOUND, channel=ChannelKind.WHATSAPP, text="On its way!")
    env.graph.script = [429]  # refused, so surely not taken: sent again at once (a 5xx is not: test_whatsapp_landed)
    result = await env.channel.send(conv, msg)
    assert result.ok and result.external_id == "wamid.OUT2" and len(env.graph.calls) == 2
    call = env.graph.calls[-1]
    assert call["path"] == f"/v20.0/{PHONE_ID}/messages" and call["auth"] == f"Bearer {ACCESS}"
    assert call["json"] == {"messaging_product": "whatsapp", "recipient_type": "individual", "to": WA_ID,
                            "type": "text", "text": {"preview_url": False, "body": "On its way!"},
                            "biz_opaque_callback_data": '{"sb1":"msg_1:0","conv":"conv_w1"}'}
    statuses = [{"id": "wamid.OUT2", "status": s, "timestamp": str(1717000100 + i), "recipient_id": WA_ID}
                for i, s in enumerate(("sent", "delivered"))]
    failed = {"id": "wamid.OUT2", "status": "failed", "timestamp": "1717000200", "recipient_id": WA_ID,
              "errors": [{"code": 131047, "title": "Re-engagement message"}]}
    assert await env.deliver(delivery(statuses=statuses)) == 200
    assert await env.deliver(delivery(statuses=[*statuses, failed])) == 200  # re-delivery: recorded once
    record = await env.redis.hgetall(status_key("wamid.OUT2"))
    assert record[b"last"] == b"failed" and record[b"delivered"] == b"1717000101"
    entries: Any = await env.redis.xrange(STATUS_STREAM)
    assert [(e[b"status"], e[b"conversation_id"]) for _, e in entries] == [
        (b"sent", b"conv_w1"), (b"delivered", b"conv_w1"), (b"failed", b"conv_w1")
    ]
    assert b"131047" in entries[-1][1][b"errors"]
    # Its ✅ only meant "queued": the failure goes to the agent once, however often Meta re-delivers it.
    assert env.failed == [("conv_w1", "WhatsApp", "131047 Re-engagement message")]


async def test_reply_final_failure(env: Env) -> None:
    conv = Conversation(id="conv_w2", customer=Customer(key=f"whatsapp:+{WA_ID}", channel=ChannelKind.WHATSAPP,
                                                        external_id=f"+{WA_ID}"))
    msg = Message(id="msg_2", direction=Direction.OUTBOUND, channel=ChannelKind.WHATSAPP, text="hi")
    env.graph.script = [429, 429, 429, 429]
    result = await env.channel.send(conv, msg)
    assert not result.ok and not result.permanent and "HTTP 429" in (result.error or "")
    assert len(env.graph.calls) == 4
    env.graph.calls.clear()
    env.graph.script = [400]
    result = await env.channel.send(conv, msg)
    assert not result.ok and "131026" in (result.error or "") and len(env.graph.calls) == 1


async def test_not_mounted_without_secrets(redis: aioredis.Redis) -> None:
    app = web.Application()
    async with aiohttp.ClientSession() as http:
        config = WhatsAppConfig(_env_file=None, verify_token=SecretStr(VERIFY))  # type: ignore[call-arg]
        assert setup(app, redis=redis, ingest=ConversationStore(redis, 4).ingest, session=http, config=config) is None
