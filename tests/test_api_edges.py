"""Edges of the signed JSON API: replies POSTed to the team's callback (or to none), message ids that look
alike, and erasure requests that meet an unreadable body or a Redis refusing writes."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import aiohttp
import pytest
import redis.asyncio as aioredis
from aiohttp import web

from gateway import keys
from gateway.domain import ChannelKind, Conversation, Customer, Direction, Message
from gateway.retries import RETRY_KEY
from gateway.store import ConversationStore
from integrations.webhook.callback import ApiCallbackChannel
from integrations.webhook.signature import sign
from tests.harness import API_SECRET, Gateway, eventually, make_settings, serve_app, start_gateway
from tests.redis_refusals import REFUSALS
from tests.test_desk import new_card, sender
from tests.tracebacks import logged_tracebacks


class Endpoint:
    """A team's callback endpoint that misbehaves in the ways real ones do."""

    def __init__(self) -> None:
        self.posts: dict[str, int] = {}
        self.gets = 0
        self.busy_left = 1

    async def moved(self, request: web.Request) -> web.Response:
        self.posts["moved"] = self.posts.get("moved", 0) + 1
        raise web.HTTPMovedPermanently("/hook")

    async def hook_get(self, request: web.Request) -> web.Response:
        self.gets += 1  # what aiohttp would have turned the POST into, had it followed the redirect
        return web.Response(status=200)

    async def gone(self, request: web.Request) -> web.Response:
        self.posts["gone"] = self.posts.get("gone", 0) + 1
        return web.Response(status=404)

    async def busy(self, request: web.Request) -> web.Response:
        self.posts["busy"] = self.posts.get("busy", 0) + 1
        if self.busy_left:
            self.busy_left -= 1
            return web.Response(status=429, headers={"Retry-After": "1"})
        return web.Response(status=204)

    async def down(self, request: web.Request) -> web.Response:
        self.posts["down"] = self.posts.get("down", 0) + 1
        return web.Response(status=503)


@pytest.fixture
async def endpoint() -> AsyncIterator[tuple[str, Endpoint]]:
    ep = Endpoint()
    app = web.Application()
    app.router.add_post("/moved", ep.moved)
    app.router.add_get("/hook", ep.hook_get)
    app.router.add_post("/gone", ep.gone)
    app.router.add_post("/busy", ep.busy)
    app.router.add_post("/down", ep.down)
    url, runner = await serve_app(app)
    yield url, ep
    await runner.cleanup()


def _conv() -> Conversation:
    return Conversation(id="conv_cb", customer=Customer(key="api:c1", channel=ChannelKind.API, external_id="c1"))


def _reply() -> Message:
    return Message(id="out-1", direction=Direction.OUTBOUND, channel=ChannelKind.API, text="Refunded.", author="Al")


async def test_callback_redirects_and_refusals_are_failures_for_good(endpoint: tuple[str, Endpoint]) -> None:
    url, ep = endpoint
    async with aiohttp.ClientSession() as http:
        moved = await ApiCallbackChannel(f"{url}/moved", API_SECRET, http).send(_conv(), _reply())
        assert not moved.ok and moved.permanent and "301 to " in (moved.error or "")
        assert ep.gets == 0 and ep.posts["moved"] == 1  # not followed: no body-less GET read as delivered
        gone = await ApiCallbackChannel(f"{url}/gone", API_SECRET, http).send(_conv(), _reply())
        assert not gone.ok and gone.permanent and ep.posts["gone"] == 1  # the agent is told at once


async def test_callback_honours_retry_after_and_does_not_sleep_after_its_last_try(
    endpoint: tuple[str, Endpoint]
) -> None:
    url, ep = endpoint
    async with aiohttp.ClientSession() as http:
        start = time.monotonic()
        busy = await ApiCallbackChannel(f"{url}/busy", API_SECRET, http).send(_conv(), _reply())
        assert busy.ok and ep.posts["busy"] == 2 and time.monotonic() - start >= 0.95
        start = time.monotonic()
        down = await ApiCallbackChannel(f"{url}/down", API_SECRET, http).send(_conv(), _reply())
        took = time.monotonic() - start
        assert not down.ok and not down.permanent and ep.posts["down"] == 3  # retried later by the worker
        assert took < 0.2 + 0.4 + 0.5  # the pauses between tries, not one more after the last


async def test_message_ids_with_colons_never_pass_for_another_customers(gateway: Gateway) -> None:
    first = await gateway.post_message({"customer_id": "shop:42", "message_id": "m1", "text": "where is my parcel"})
    second = await gateway.post_message({"customer_id": "shop", "message_id": "42:m1", "text": "my invoice is wrong"})
    assert first[0] == second[0] == 202
    assert not second[1]["duplicate"] and second[1]["conversation_id"] != first[1]["conversation_id"]


async def _forget(gw: Gateway, ref: str, body: bytes | None = None, headers: dict[str, str] | None = None,
                  ) -> tuple[int, dict[str, Any], str | None]:
    body = json.dumps({"customer": ref}).encode() if body is None else body
    hdrs = {"Content-Type": "application/json", "X-Switchboard-Signature": sign(API_SECRET, body), **(headers or {})}
    async with gw.session.delete(f"{gw.url}/v1/customers/{ref}", data=body, headers=hdrs) as resp:
        return resp.status, await resp.json(), resp.headers.get("Retry-After")


@pytest.fixture
async def idle_gateway(redis: aioredis.Redis, redis_url: str, tmp_path: Path) -> AsyncIterator[Gateway]:
    """No worker: the erasure is the only thing writing while Redis refuses writes."""
    gw = await start_gateway(make_settings(redis_url, tmp_path), with_worker=False)
    yield gw
    await gw.close()


async def test_forget_with_a_compressed_body_is_refused_not_a_500(idle_gateway: Gateway) -> None:
    """A Content-Encoding that does not decode made the body read raise: a 500 on an erasure request. No body
    is inflated now (`integrations.webhook.encoding`): it is a 415 before anything is read."""
    status, body, _ = await _forget(idle_gateway, "api:c1", b"not gzip at all", {"Content-Encoding": "gzip"})
    assert (status, body["error"]) == (415, "unsupported_content_encoding")


@pytest.mark.parametrize("refusal", sorted(REFUSALS))
async def test_forget_while_redis_refuses_writes_is_503_and_can_be_sent_again(
    idle_gateway: Gateway, redis: aioredis.Redis, refusal: str, caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    status, _ = await idle_gateway.post_message({"customer_id": "c1", "message_id": "m1", "text": "hello"})
    assert status == 202
    async with REFUSALS[refusal](redis):
        status, body, retry_after = await _forget(idle_gateway, "api:c1")
    assert (status, body["error"], retry_after) == (503, "unavailable", "2")
    assert "send it again" in body["message"]
    assert logged_tracebacks(caplog, capsys) == []
    # Refused at its first write (it writes down its plan before deleting anything): sent again, it erases all.
    status, body, _ = await _forget(idle_gateway, "api:c1")
    assert (status, body["status"], body["conversations"]) == (200, "forgotten", 1)
    assert await redis.keys("sb:conv:*") == [] and await redis.keys("sb:erasing:*") == []


@dataclass
class OutOfMemoryMidway:
    """The real store; Redis runs out of memory once the erasure has deleted the identity pointers (it still
    takes DELs then, and refuses the stream writes after them)."""

    inner: Any
    redis: aioredis.Redis
    armed: bool = True

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def snapshot(self, conversation_id: str) -> Any:
        if self.armed:
            self.armed = False
            await self.redis.config_set("maxmemory", 1)
        return await self.inner.snapshot(conversation_id)


async def test_an_erasure_redis_stopped_half_way_is_finished_when_sent_again(
    idle_gateway: Gateway, redis: aioredis.Redis
) -> None:
    """Its retry found no identity left (they go first) and answered 404, leaving the transcript behind."""
    await idle_gateway.post_message({"customer_id": "c1", "message_id": "m1", "text": "my card 4242 4242",
                                     "customer": {"email": "c1@example.com"}})
    eraser = idle_gateway.rt.pipeline.eraser
    assert eraser is not None
    real = eraser.store
    eraser.store = cast(ConversationStore, OutOfMemoryMidway(real, redis))  # the real one, out of memory midway
    try:
        status, body, _ = await _forget(idle_gateway, "api:c1")
        assert (status, body["error"]) == (503, "unavailable")
        assert await redis.get(keys.ident("api:c1")) is None  # the pointers went first
    finally:
        await redis.config_set("maxmemory", 0)
        eraser.store = real
    status, body, _ = await _forget(idle_gateway, "api:c1")
    assert (status, body["status"], body["conversations"]) == (200, "forgotten", 1)
    for pattern in ("sb:conv:*", "sb:person:*", "sb:ident:*", "sb:erasing:*"):
        assert await redis.keys(pattern) == [], pattern
    status, _, _ = await _forget(idle_gateway, "api:c1")
    assert status == 404


async def test_a_reply_to_an_api_customer_without_a_callback_url_is_refused_at_once(
    gateway: Gateway, redis: aioredis.Redis
) -> None:
    """No SWITCHBOARD_API_CALLBACK_URL: retrying cannot help, yet the reply was retried for half an hour before
    the agent heard it never reached the customer."""
    assert gateway.settings.api_callback_url is None
    conv_id, card, channel = await new_card(gateway)
    slack = sender(gateway)
    await slack.click("U0ALICE", channel, card, {"type": "button", "action_id": "sb_claim", "value": conv_id})
    await eventually(lambda: gateway.rt.ops.holder(conv_id))
    await slack.message("U0ALICE", channel, "your refund is on its way", thread_ts=card["ts"])
    notes = await eventually(
        lambda: [m["text"] for m in gateway.slack.replies(channel, card["ts"]) if "Not delivered" in m.get("text", "")]
    )
    assert notes == ["❌ Not delivered to the customer: refused (no callback URL configured "
                     "(SWITCHBOARD_API_CALLBACK_URL)). The reply is in the transcript; reach the customer another way."]
    parked: Any = await redis.xrange(keys.DEAD)
    assert [fields[b"text"] for _, fields in parked] == [b"your refund is on its way"]
    assert await redis.zcard(RETRY_KEY) == 0  # nothing left to retry
