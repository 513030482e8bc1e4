"""Refused sockets under a flood, over real TCP against the real server and real Redis.

A refused socket is upgraded (so the widget can read why), which costs a file descriptor and a handler until it is
closed, and it is counted against no socket cap. Before refusals had their own budget, one token reused by a
script that never reads nor answers held as many refused sockets as it opened, each for 2 s, and each refusal
logged a warning. The clients here are raw TCP: a script, not a polite WebSocket library that answers the close.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import time
from collections import Counter

import redis.asyncio as aioredis
from structlog.testing import capture_logs

from integrations.webchat.refusals import REFUSALS_IN_FLIGHT, SampledWarning
from tests.test_webchat_limits import started
from tests.test_webchat_support import Chat

REFUSED = "webchat_socket_refused"
SUMMARY = "webchat_sockets_refused"
BATCH = 8
"""Handshakes sent at once: enough to outrun the refusal close, few enough that accepted-but-unanswered connections
(which any server holds) do not blur what refusals hold."""


async def raw_upgrade(chat: Chat, token: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, int]:
    """A WebSocket handshake by hand, and the status it got; the caller then neither reads nor answers."""
    host = chat.url.removeprefix("http://")
    name, port = host.rsplit(":", 1)
    reader, writer = await asyncio.open_connection(name, int(port))
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        f"GET /webchat/ws?token={token} HTTP/1.1\r\nHost: {host}\r\nOrigin: {chat.origin}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    status_line = await asyncio.wait_for(reader.readline(), timeout=5)
    return reader, writer, int(status_line.split()[1])


def server_sockets(port: int) -> int:
    """Sockets this process holds open on the server's side of `port` (Linux): what each refusal costs the server.

    The server's side of a connection is the one whose local port is the listening port; the clients here live
    in the same process but on ephemeral ports, and sockets the server has closed hold no descriptor any more.
    """
    mine: set[str] = set()
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            mine.add(os.readlink(f"/proc/self/fd/{fd}"))
    held = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as rows:
            for row in rows.readlines()[1:]:
                fields = row.split()
                local_port, state, inode = int(fields[1].rsplit(":", 1)[1], 16), fields[3], fields[9]
                if local_port == port and state != "0A" and f"socket:[{inode}]" in mine:  # 0A: the listener
                    held += 1
    return held


async def test_a_flood_of_refusals_holds_few_sockets_and_the_rest_get_a_plain_429(redis: aioredis.Redis) -> None:
    async with started(redis, max_sockets=2, sockets_per_visitor=1) as chat:
        s = await chat.session()
        held = await chat.connect(s["token"])
        port = int(chat.url.rsplit(":", 1)[1])
        flood: list[tuple[asyncio.StreamReader, asyncio.StreamWriter, int]] = []
        peak = 0
        with capture_logs() as logs:
            for _ in range(4 * REFUSALS_IN_FLIGHT // BATCH):  # one token, over and over, never reading or answering
                flood += await asyncio.gather(*(raw_upgrade(chat, s["token"]) for _ in range(BATCH)))
                peak = max(peak, server_sockets(port))
        statuses = Counter(status for _, _, status in flood)
        # At most the refusal budget is upgraded and held at once; past it a plain 429, not upgraded, not held
        # (+1 the socket held by the visitor, + a batch of connections being answered or just closed).
        assert peak <= REFUSALS_IN_FLIGHT + 1 + BATCH, (peak, statuses)
        assert statuses[101] >= 1 and statuses[429] >= 1 and set(statuses) == {101, 429}, statuses
        reader = next(r for r, _, status in flood if status == 429)
        answer = await asyncio.wait_for(reader.read(), timeout=5)  # all of it: the server closes the connection
        head, _, body = answer.partition(b"\r\n\r\n")
        assert b"Retry-After: 30" in head and b"Connection: close" in head
        assert json.loads(body) == {"error": "too_many_tabs", "retry_after": 30,
                                    "message": "this chat is open in too many tabs; close one to chat here"}
        # One warning for the first refusal and one for the first that was not upgraded, not one per refusal.
        assert [e.get("upgraded") for e in logs if e["event"] == REFUSED] == [True, False], logs
        for _, writer, _ in flood:
            writer.close()
        await held.close()


async def test_the_refusal_count_is_logged_at_shutdown(redis: aioredis.Redis) -> None:
    with capture_logs() as logs:
        async with started(redis, sockets_per_visitor=1) as chat:
            s = await chat.session()
            held = await chat.connect(s["token"])
            for _ in range(5):
                _, writer, status = await raw_upgrade(chat, s["token"])
                assert status == 101
                writer.close()
            await held.close()
    assert len([e for e in logs if e["event"] == REFUSED]) == 1
    assert [e["counts"] for e in logs if e["event"] == SUMMARY] == [{"visitor": 4}]


async def test_a_refused_client_that_never_answers_the_close_is_dropped_at_once(redis: aioredis.Redis) -> None:
    async with started(redis, sockets_per_visitor=1) as chat:
        s = await chat.session()
        held = await chat.connect(s["token"])
        reader, writer, status = await raw_upgrade(chat, s["token"])
        assert status == 101
        began = time.monotonic()
        rest = await asyncio.wait_for(reader.read(), timeout=5)  # until the server hangs up; we never answer
        took = time.monotonic() - began
        assert b"too_many_tabs" in rest  # the error frame and the close frame were still sent
        assert took < 1.0, f"a refused socket was held {took:.2f} s waiting for a close reply that never came"
        writer.close()
        await held.close()


async def test_sampled_warning_logs_the_first_of_each_kind_then_a_count_per_period() -> None:
    sample = SampledWarning(REFUSED, SUMMARY, every_s=0.2)
    with capture_logs() as logs:
        for _ in range(5):
            sample("visitor", client="a")
        sample("process", client="b")
        await asyncio.sleep(0.3)  # the period ends: what was not logged is counted
        sample("visitor", client="c")  # still flooding: counted for the next period, not logged again
        await asyncio.sleep(0.3)
        await asyncio.sleep(0.3)  # a quiet period ends the flood
        sample("visitor", client="d")
        sample.close()
    assert [(e["event"], e.get("client"), e.get("counts")) for e in logs] == [
        (REFUSED, "a", None), (REFUSED, "b", None), (SUMMARY, None, {"visitor": 4}),
        (SUMMARY, None, {"visitor": 1}), (REFUSED, "d", None),
    ]
