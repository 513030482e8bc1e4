"""Web chat under load: N concurrent widget sessions over real WebSockets, each sending messages.

Usage: python bench/webchat.py [--sessions 100 1000] [--seconds 10]

The server is a separate process (web chat `setup()` + the real `ConversationStore.ingest`, JSON logs,
Redis append-only with fsync always); this process plays the widgets. Every session sends one message,
waits for its ack, and sends the next, so the figures are:

- sustained messages/s acknowledged (ack = durably ingested: dedupe + transcript + stream entry);
- p50/p99 send→ack latency as the widget sees it;
- p50/p99 reply push latency: a reply appended with the same call `WebchatChannel.send` makes, until the
  frame arrives on the widget's socket (worker → Redis stream → XREAD → WebSocket).

Not measured here: send → card in the Slack emulator, which needs the gateway wiring and a worker.
The per-session rate limit is raised for the run (WEBCHAT_RATE_MESSAGES) so the limit is not what is measured;
so are the per-address session and socket limits (every widget here comes from 127.0.0.1).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import random
import resource
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import structlog

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import free_port, pct, process, redis_server

SERVER = """
import sys, asyncio
import redis.asyncio as r
from aiohttp import web
from gateway.logging import configure_logging
from gateway.settings import LogFormat
from gateway.store import ConversationStore
from integrations.webchat import WebchatConfig, setup

configure_logging(LogFormat.JSON, "info")
port, url = int(sys.argv[1]), sys.argv[2]
client = r.from_url(url, max_connections=4000)
app = web.Application()
setup(app, redis=client, ingest=ConversationStore(client, partitions=8).ingest, session=None,
      config=WebchatConfig(_env_file=None))
web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)
"""


def raise_fd_limit() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class Widget:
    def __init__(self, http: aiohttp.ClientSession, base: str) -> None:
        self.http = http
        self.base = base
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.conversation_id = ""
        self.pending: dict[str, float] = {}
        self.acks: list[float] = []
        self.acked = asyncio.Event()
        self.replies: dict[str, float] = {}
        self.push: list[float] = []
        self.errors = 0

    async def open(self) -> None:
        async with self.http.post(f"{self.base}/webchat/session", json={}, headers={"Origin": self.base}) as r:
            s = await r.json()
        self.conversation_id = s["conversation_id"]
        self.ws = await self.http.ws_connect(f"{self.base}/webchat/ws?token={s['token']}",
                                             headers={"Origin": self.base}, heartbeat=None)
        asyncio.get_running_loop().create_task(self.listen())

    async def listen(self) -> None:
        assert self.ws is not None
        async for msg in self.ws:
            f: dict[str, Any] = json.loads(msg.data)
            now = time.perf_counter()
            if f["type"] == "ack":
                self.acks.append(now - self.pending.pop(f["client_id"]))
                self.acked.set()
            elif f["type"] == "message" and f.get("direction") == "out" and f["id"] in self.replies:
                self.push.append(now - self.replies.pop(f["id"]))
            elif f["type"] == "error":
                self.errors += 1
                self.acked.set()

    async def chat(self, until: float, ident: int, every: float = 0.0) -> None:
        """Closed loop (`every` = 0: next message right after the ack) or paced (one message per `every` s)."""
        assert self.ws is not None
        n = 0
        if every:
            await asyncio.sleep(random.uniform(0, every))
        while time.perf_counter() < until:
            started = time.perf_counter()
            cid = f"b{ident}-{n}"
            n += 1
            self.acked.clear()
            self.pending[cid] = time.perf_counter()
            await self.ws.send_str(json.dumps({"type": "message", "client_id": cid, "text": f"bench message {n}"}))
            await self.acked.wait()
            if every:
                await asyncio.sleep(max(0.0, every - (time.perf_counter() - started)))


async def run(base: str, redis_url: str, sessions: int, seconds: float, every: float) -> dict[str, float]:
    import redis.asyncio as aioredis

    from gateway.domain import ChannelKind, Conversation, Customer, Direction, Message
    from integrations.webchat import WebchatChannel

    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:
        widgets = [Widget(http, base) for _ in range(sessions)]
        for i in range(0, sessions, 100):
            await asyncio.gather(*(w.open() for w in widgets[i:i + 100]))
        redis = aioredis.from_url(redis_url)
        channel = WebchatChannel(redis)

        async def replies(until: float) -> None:
            k = 0
            while time.perf_counter() < until:
                w = widgets[k % sessions]
                mid = f"reply-{k}"
                conv = Conversation(id=w.conversation_id, customer=Customer(
                    key="webchat:x", channel=ChannelKind.WEBCHAT, external_id="x"))
                w.replies[mid] = time.perf_counter()
                await channel.send(conv, Message(id=mid, direction=Direction.OUTBOUND,
                                                 channel=ChannelKind.WEBCHAT, text="reply", author="Bench"))
                k += 1
                await asyncio.sleep(0.02)

        start = time.perf_counter()
        until = start + seconds
        await asyncio.gather(replies(until), *(w.chat(until, i, every) for i, w in enumerate(widgets)))
        elapsed = time.perf_counter() - start
        await asyncio.sleep(0.5)
        for w in widgets:
            if w.ws is not None:
                await w.ws.close()
        await redis.aclose()
    acks = [x for w in widgets for x in w.acks]
    push = [x for w in widgets for x in w.push]
    return {
        "msgs_per_s": len(acks) / elapsed, "acks": len(acks), "p50": pct(acks, 0.5) * 1000,
        "p99": pct(acks, 0.99) * 1000, "push_p50": pct(push, 0.5) * 1000 if push else float("nan"),
        "push_p99": pct(push, 0.99) * 1000 if push else float("nan"), "pushes": len(push),
        "errors": sum(w.errors for w in widgets),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--pace", type=float, default=2.0, help="seconds between messages per session, paced phase")
    args = parser.parse_args()
    raise_fd_limit()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    root = Path(__file__).resolve().parents[1]
    print(f"web chat bench: {os.cpu_count()} CPUs, server and clients on this machine, Redis appendfsync always")
    with redis_server() as redis_url:
        for n in args.sessions:
            env = {"PYTHONPATH": str(root), "WEBCHAT_RATE_MESSAGES": "1000", "WEBCHAT_RATE_WINDOW": "1",
                   "WEBCHAT_SESSION_RATE": "100000", "WEBCHAT_SOCKETS_PER_IP": "100000"}
            for label, every in (("saturated", 0.0), (f"paced 1/{args.pace:g}s", args.pace)):
                port = free_port()
                with process([sys.executable, "-c", SERVER, str(port), redis_url], port, env=env):
                    r = asyncio.run(run(f"http://127.0.0.1:{port}", redis_url, n, args.seconds, every))
                print(
                    f"N={n:>5} {label:<14}: {r['msgs_per_s']:6.0f} msgs/s ({int(r['acks'])} acked in "
                    f"{args.seconds:.0f} s, {int(r['errors'])} errors) | send→ack p50 {r['p50']:6.1f} ms "
                    f"p99 {r['p99']:6.1f} ms | reply push p50 {r['push_p50']:5.1f} ms p99 {r['push_p99']:6.1f} ms "
                    f"({int(r['pushes'])} replies)"
                )


if __name__ == "__main__":
    main()
