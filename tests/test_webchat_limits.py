"""Web chat abuse limits over real HTTP and WebSockets and real Redis: sessions per client address, sockets per
visitor, address and process, idle sockets and peers that stopped answering pings.

Before these limits a client could create sessions and open sockets without end; each test here was an
unlimited "yes" then. A second client address is a real one: Linux answers on all of 127.0.0.0/8.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import jsonschema
import pytest
import redis.asyncio as aioredis
import yaml
from structlog.testing import capture_logs

from integrations.webchat.clientip import client_address
from tests.harness import eventually
from tests.test_webchat_support import Chat, recv, start_chat

WINDOW_S = 3600
"""Long, so a test never straddles two counting windows (see `fresh_window`)."""
OTHER_ADDRESS = "127.0.0.2"


@asynccontextmanager
async def started(redis: aioredis.Redis, **config: Any) -> AsyncIterator[Chat]:
    chat, runner = await start_chat(redis, **config)
    try:
        yield chat
    finally:
        await chat.http.close()
        await runner.cleanup()


@asynccontextmanager
async def from_address(chat: Chat, address: str) -> AsyncIterator[Chat]:
    """The same server, seen from another client address."""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(address, 0))) as http:
        yield dataclasses.replace(chat, http=http)


async def fresh_window(window_s: int) -> None:
    """Wait out the end of a counting window if it is about to end: counts restart there."""
    left = window_s - time.time() % window_s
    if left < 3:
        await asyncio.sleep(left + 0.05)


async def post_session(chat: Chat, forwarded_for: str | None = None) -> tuple[int, dict[str, Any], dict[str, str]]:
    headers = {"Origin": chat.origin}
    if forwarded_for is not None:
        headers["X-Forwarded-For"] = forwarded_for
    async with chat.http.post(f"{chat.url}/webchat/session", json={}, headers=headers) as resp:
        return resp.status, await resp.json(), dict(resp.headers)


async def socket(chat: Chat, token: str, forwarded_for: str | None = None) -> aiohttp.ClientWebSocketResponse:
    headers = {"Origin": chat.origin}
    if forwarded_for is not None:
        headers["X-Forwarded-For"] = forwarded_for
    return await chat.http.ws_connect(f"{chat.url}/webchat/ws?token={token}", headers=headers)


async def refused(chat: Chat, token: str, forwarded_for: str | None = None) -> tuple[dict[str, Any], int]:
    """The error frame and close code of a socket the server refuses (it must not say hello)."""
    ws = await socket(chat, token, forwarded_for)
    frame = await recv(ws)
    closed = await ws.receive(timeout=5)
    assert closed.type is aiohttp.WSMsgType.CLOSE, closed
    return frame, int(closed.data)


async def try_open(chat: Chat, token: str, forwarded_for: str | None = None) -> aiohttp.ClientWebSocketResponse | None:
    """An open socket, or None if refused (a slot is given back only once the server's handler has ended)."""
    ws = await socket(chat, token, forwarded_for)
    if (await recv(ws))["type"] == "hello":
        return ws
    await ws.close()
    return None


async def test_session_creations_per_address_answer_429_across_web_processes(redis: aioredis.Redis) -> None:
    await fresh_window(WINDOW_S)
    limits = {"session_rate": 3, "session_window_s": WINDOW_S}
    async with started(redis, **limits) as one, started(redis, **limits) as two:
        assert [(await chat.session())["_status"] for chat in (one, two, one)] == [200, 200, 200]
        for chat in (two, one):  # counted in Redis: the other web process refuses too
            status, body, headers = await post_session(chat)
            assert status == 429 and body["error"] == "too_many_sessions" and "retry" in body["message"]
            assert 1 <= int(headers["Retry-After"]) <= WINDOW_S and body["retry_after"] == int(headers["Retry-After"])
            assert headers["Access-Control-Allow-Origin"] == chat.origin  # the widget can read why
        # Without trusted proxies a forged X-Forwarded-For is ignored: the peer is still over its budget.
        assert (await post_session(one, forwarded_for="203.0.113.9"))[0] == 429
        async with from_address(one, OTHER_ADDRESS) as elsewhere:  # another address has its own budget
            assert (await elsewhere.session())["_status"] == 200


def documented_error() -> dict[str, Any]:
    document = yaml.safe_load((Path(__file__).resolve().parents[1] / "openapi.yaml").read_text())
    schema: dict[str, Any] = document["components"]["schemas"]["Error"]
    return schema


async def test_the_session_429_body_is_the_documented_error(redis: aioredis.Redis) -> None:
    """What the widget reads (`retry_after`) is in openapi.yaml, not only in what the server happens to send."""
    error = documented_error()
    await fresh_window(WINDOW_S)
    async with started(redis, session_rate=1, session_window_s=WINDOW_S) as chat:
        assert (await chat.session())["_status"] == 200
        status, body, _ = await post_session(chat)
    assert status == 429 and "retry_after" not in error["required"]
    jsonschema.validate(body, {**error, "additionalProperties": False})  # every field sent is documented


async def test_a_flood_of_refused_sessions_is_one_warning_not_one_per_request(redis: aioredis.Redis) -> None:
    await fresh_window(WINDOW_S)
    with capture_logs() as logs:
        async with started(redis, session_rate=1, session_window_s=WINDOW_S) as chat:
            assert (await chat.session())["_status"] == 200
            assert {(await post_session(chat))[0] for _ in range(20)} == {429}
    warned = [e for e in logs if e["event"] == "webchat_session_rate_limited"]
    summed = [e for e in logs if e["event"] == "webchat_sessions_rate_limited"]
    assert len(warned) == 1 and warned[0]["client"] == "127.0.0.1"
    assert [e["counts"] for e in summed] == [{"session": 19}]  # the rest, counted when the process stops


async def test_forwarded_for_names_the_client_only_behind_trusted_proxies(redis: aioredis.Redis) -> None:
    await fresh_window(WINDOW_S)
    async with started(redis, session_rate=1, session_window_s=WINDOW_S, trusted_proxies=1) as chat:
        sent = [
            ("203.0.113.7", 200),
            ("203.0.113.7", 429),
            ("198.51.100.1, 203.0.113.7", 429),  # a forged entry left of the proxy's does not help
            ("203.0.113.7, 203.0.113.8", 200),  # the proxy's entry is the client
            ("2001:db8:1:2::1", 200),
            ("2001:db8:1:2::ffff", 429),  # the same /64: one subscriber
            ("2001:db8:1:3::1", 200),
            (None, 200),  # no header (did not come through the proxy): the peer
        ]
        got = [(forwarded, (await post_session(chat, forwarded))[0]) for forwarded, _ in sent]
        assert got == sent


@pytest.mark.parametrize(("peer", "forwarded", "trusted", "client"), [
    ("10.0.0.5", ["203.0.113.7"], 0, "10.0.0.5"),
    ("10.0.0.5", ["1.2.3.4, 203.0.113.7"], 1, "203.0.113.7"),
    ("10.0.0.5", ["1.2.3.4, 203.0.113.7", "10.0.0.9"], 2, "203.0.113.7"),  # two headers are one list
    ("10.0.0.5", ["203.0.113.7:51234"], 1, "203.0.113.7"),
    ("10.0.0.5", ["[2001:db8::1]:443"], 1, "2001:db8::/64"),
    ("10.0.0.5", ["203.0.113.7"], 2, "10.0.0.5"),  # fewer hops than proxies: not the configured path
    ("10.0.0.5", ["unknown"], 1, "10.0.0.5"),
    ("::ffff:192.0.2.1", [], 0, "192.0.2.1"),
    (None, [], 0, "unknown"),
])
def test_client_address_is_read_from_the_right(peer: str | None, forwarded: list[str], trusted: int,
                                               client: str) -> None:
    assert client_address(peer, forwarded, trusted) == client


async def test_sockets_per_visitor_are_capped_and_freed_on_close(redis: aioredis.Redis) -> None:
    async with started(redis, sockets_per_visitor=2) as chat:
        tab1 = await chat.session()
        tab2 = await chat.session({"resume": tab1["resume"]})
        held = [await chat.connect(tab1["token"]), await chat.connect(tab2["token"])]
        frame, code = await refused(chat, tab1["token"])
        assert (frame["type"], frame["code"], frame["retry_after"], code) == ("error", "too_many_tabs", 30, 4429)
        stranger = await chat.session()
        held.append(await chat.connect(stranger["token"]))  # other visitors are not affected
        await held[0].close()
        assert await eventually(lambda: try_open(chat, tab1["token"]), timeout=3)


async def test_sockets_per_client_address_are_capped(redis: aioredis.Redis) -> None:
    async with started(redis, sockets_per_ip=2) as chat:
        tokens = [(await chat.session())["token"] for _ in range(3)]
        held = [await chat.connect(token) for token in tokens[:2]]  # held: a dropped socket is closed
        frame, code = await refused(chat, tokens[2])
        assert (frame["code"], code) == ("too_many_sockets", 4429)
        async with from_address(chat, OTHER_ADDRESS) as elsewhere:
            held.append(await elsewhere.connect(tokens[2]))
    async with started(redis, sockets_per_ip=1, trusted_proxies=1) as proxied:
        tokens = [(await proxied.session())["token"] for _ in range(3)]
        held = [await socket(proxied, tokens[0], forwarded_for="203.0.113.7")]
        assert (await recv(held[0]))["type"] == "hello"
        assert (await refused(proxied, tokens[1], forwarded_for="198.51.100.1, 203.0.113.7"))[1] == 4429
        assert await try_open(proxied, tokens[2], forwarded_for="203.0.113.8")


async def test_sockets_per_process_are_capped_with_try_again_later(redis: aioredis.Redis) -> None:
    async with started(redis, max_sockets=2) as one, started(redis, max_sockets=2) as two:
        a, b, c = [(await one.session())["token"] for _ in range(3)]
        held = [await one.connect(a), await one.connect(b)]
        frame, code = await refused(one, c)
        assert (frame["code"], frame["retry_after"], code) == ("server_busy", 5, 1013)
        held.append(await two.connect(c))  # the cap is this process's: another one has room
        await held[0].close()
        assert await eventually(lambda: try_open(one, c), timeout=3)


async def test_an_idle_socket_is_closed_and_a_talking_one_is_kept(redis: aioredis.Redis) -> None:
    async with started(redis, idle_timeout_s=1) as chat:
        s = await chat.session()
        quiet = await socket(chat, s["token"])
        assert (await recv(quiet))["idle_timeout"] == 1  # the widget pings at a third of it
        opened = time.monotonic()
        talking = await chat.connect(s["token"])
        while time.monotonic() - opened < 1.6:
            await talking.send_json({"type": "ping"})
            assert (await recv(talking))["type"] == "pong"
            await asyncio.sleep(0.3)
        closed = await quiet.receive(timeout=3)
        assert (closed.type, closed.data, closed.extra) == (aiohttp.WSMsgType.CLOSE, 4408, "idle")
        await talking.send_json({"type": "ping"})
        assert (await recv(talking))["type"] == "pong"


async def test_a_peer_that_stops_answering_pings_is_dropped_and_its_slot_freed(redis: aioredis.Redis) -> None:
    async with started(redis, heartbeat_s=1, sockets_per_visitor=1) as chat:
        s = await chat.session()
        dead = await chat.http.ws_connect(f"{chat.url}/webchat/ws?token={s['token']}",
                                          headers={"Origin": chat.origin}, autoping=False)
        assert (await recv(dead))["type"] == "hello"
        opened = time.monotonic()
        seen: list[aiohttp.WSMsgType] = []
        while not seen or seen[-1] is aiohttp.WSMsgType.PING:
            seen.append((await dead.receive(timeout=4)).type)
        assert seen[0] is aiohttp.WSMsgType.PING and seen[-1] in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSE)
        assert time.monotonic() - opened < 3
        assert await eventually(lambda: try_open(chat, s["token"]), timeout=3)
