"""Edges of the signed JSON API: replies POSTed to the team's callback, and message ids that look alike."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from gateway.domain import ChannelKind, Conversation, Customer, Direction, Message
from integrations.webhook.callback import ApiCallbackChannel
from tests.harness import API_SECRET, Gateway, serve_app


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
