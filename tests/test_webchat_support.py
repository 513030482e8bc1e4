"""A real aiohttp app with the web chat mounted on a free port, real Redis and the real store (no tests here)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis
from aiohttp import web
from pydantic import SecretStr

from gateway import keys
from gateway.domain import ChannelKind, Conversation, Customer, Direction, InboundMessage, Message, new_id
from gateway.store import Accepted, ConversationStore
from integrations.webchat import WebchatChannel, WebchatConfig, setup
from tests.conftest import free_port

TOKEN_SECRET = "webchat-test-token-secret-0123456789"
IDENTITY_SECRET = "webchat-test-identity-secret"


@dataclass
class Chat:
    url: str
    channel: WebchatChannel
    store: ConversationStore
    redis: aioredis.Redis
    http: aiohttp.ClientSession

    @property
    def origin(self) -> str:
        return self.url

    async def session(self, body: dict[str, Any] | None = None, origin: str | None = None) -> dict[str, Any]:
        async with self.http.post(
            f"{self.url}/webchat/session", json=body or {}, headers={"Origin": origin or self.origin}
        ) as resp:
            data = await resp.json()
            data["_status"] = resp.status
            return data

    async def connect(self, token: str, since: int = 0, origin: str | None = None) -> aiohttp.ClientWebSocketResponse:
        ws = await self.http.ws_connect(
            f"{self.url}/webchat/ws?token={token}&since={since}", headers={"Origin": origin or self.origin}
        )
        hello = await recv(ws)
        assert hello["type"] == "hello"
        return ws

    async def reply(self, conversation_id: str, customer_id: str, text: str, author: str = "Alice") -> Message:
        conv = Conversation(
            id=conversation_id,
            customer=Customer(key=f"webchat:{customer_id}", channel=ChannelKind.WEBCHAT, external_id=customer_id),
        )
        msg = Message(id=new_id("msg"), direction=Direction.OUTBOUND, channel=ChannelKind.WEBCHAT, text=text,
                      author=author)
        delivery = await self.channel.send(conv, msg)
        assert delivery.ok, delivery
        return msg

    async def transcript(self, conversation_id: str) -> list[dict[str, Any]]:
        return [json.loads(x) for x in await self.redis.lrange(keys.transcript(conversation_id), 0, -1)]


async def recv(ws: aiohttp.ClientWebSocketResponse, timeout: float = 5.0) -> dict[str, Any]:  # noqa: ASYNC109
    msg = await ws.receive(timeout=timeout)
    assert msg.type is aiohttp.WSMsgType.TEXT, msg
    frame: dict[str, Any] = json.loads(msg.data)
    return frame


async def recv_until(ws: aiohttp.ClientWebSocketResponse, kind: str, timeout: float = 5.0) -> dict[str, Any]:  # noqa: ASYNC109
    while True:
        frame = await recv(ws, timeout)
        if frame["type"] == kind:
            return frame


async def ack_and_echo(
    ws: aiohttp.ClientWebSocketResponse, timeout: float = 5.0  # noqa: ASYNC109
) -> tuple[dict[str, Any], dict[str, Any]]:
    """One message's ack and its echo: the echo is stored before the ack but pushed by the stream reader, so
    the two may arrive in either order."""
    ack: dict[str, Any] | None = None
    echo: dict[str, Any] | None = None
    while ack is None or echo is None:
        frame = await recv(ws, timeout)
        if frame["type"] == "ack":
            ack = frame
        elif frame["type"] == "message" and frame.get("direction") == "in":
            echo = frame
    return ack, echo


async def start_chat(
    redis: aioredis.Redis, ingest: Callable[[InboundMessage], Awaitable[Accepted]] | None = None, **config: Any
) -> tuple[Chat, web.AppRunner]:
    """`ingest` wraps the real store's (fault injection); the Chat's store is the real one either way."""
    store = ConversationStore(redis, partitions=4)
    app = web.Application()
    http = aiohttp.ClientSession()
    settings = WebchatConfig(
        _env_file=None,  # type: ignore[call-arg]
        token_secret=SecretStr(TOKEN_SECRET), identity_secret=SecretStr(IDENTITY_SECRET), **config,
    )
    channel = setup(app, redis=redis, ingest=ingest or store.ingest, session=http, config=settings)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return Chat(f"http://127.0.0.1:{port}", channel, store, redis, http), runner


@pytest.fixture
async def chat(redis: aioredis.Redis) -> AsyncIterator[Chat]:
    c, runner = await start_chat(redis)
    try:
        yield c
    finally:
        await c.http.close()
        await runner.cleanup()


async def queued_profiles(redis: aioredis.Redis) -> list[tuple[str, dict[str, Any]]]:
    """(customer key, profile) of every queued inbound entry: what the workers will see."""
    out: list[tuple[str, dict[str, Any]]] = []
    for key in await redis.keys("sb:in:*"):
        entries: Any = await redis.xrange(key)
        out.extend((e[b"customer"].decode(), json.loads(e[b"profile"])) for _, e in entries)
    return out
