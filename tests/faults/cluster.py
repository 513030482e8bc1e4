"""A small real deployment for fault tests: redis-server (AOF), web and worker subprocesses, Slack emulator.

The emulator runs inside the test process (its own port) rather than mounted in the web process, so
that SIGKILLing the web process does not wipe the very evidence (the posted cards) the test checks, and
so tests can inject Slack faults (`fail_next`, stalls) directly on its state.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import redis.asyncio as aioredis
from aiohttp import web
from aiohttp.typedefs import Handler

from gateway.store import ConversationStore
from integrations.slack.emulator import EMULATOR_STATE, EmulatorState, create_emulator_app
from integrations.slack.emulator.config import EmulatorConfig
from integrations.webhook.signature import sign
from tests.conftest import free_port, wait_port
from tests.harness import API_SECRET

SLACK_SECRET = "fault-slack-signing-secret-0123"
PARTITIONS = 4


class RedisServer:
    """Append-only with fsync always: what the gateway acknowledges must survive a SIGKILL of Redis."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        assert binary, "redis-server is required"
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.folder), "--save", "",
             "--appendonly", "yes", "--appendfsync", "always"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        if not wait_port(self.port):
            raise RuntimeError(f"nothing listening on {self.port}")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGKILL)
            self.popen.wait(timeout=10)

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@dataclass
class Cluster:
    folder: Path
    redis_server: RedisServer
    emulator_port: int
    emulator_runner: web.AppRunner
    state: EmulatorState
    session: aiohttp.ClientSession
    redis: aioredis.Redis
    web_port: int = field(default_factory=free_port)
    procs: list[Proc] = field(default_factory=list)
    stall_s: float = 0.0
    stall_calls: int = 0
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    @property
    def slack_api(self) -> str:
        return f"http://127.0.0.1:{self.emulator_port}/api/"

    def env(self, **extra: str) -> dict[str, str]:
        return {
            **os.environ,
            "REDIS_URL": self.redis_server.url,
            "PORT": str(self.web_port),
            "SLACK_API_URL": self.slack_api,
            "SLACK_SIGNING_SECRET": SLACK_SECRET,
            "SWITCHBOARD_API_SECRET": API_SECRET,
            "SWITCHBOARD_PARTITIONS": str(PARTITIONS),
            "SWITCHBOARD_LEASE_MS": "1500",
            "SWITCHBOARD_RECLAIM_IDLE_MS": "500",
            "SWITCHBOARD_DATA_DIR": str(self.folder),
            "SWITCHBOARD_LOG_FORMAT": "json",
            "SWITCHBOARD_AUTOMATION": "off",
            "SLACK_CHANNEL_RATE": "100",
            **self.extra_env,
            **extra,
        }

    def _spawn(self, role: str, name: str, **env: str) -> Proc:
        log = self.folder / f"{name}.log"
        popen = subprocess.Popen([sys.executable, "-m", "gateway.cli", role], env=self.env(**env),
                                 stdout=subprocess.DEVNULL, stderr=log.open("ab"))
        proc = Proc(name, popen, log)
        self.procs.append(proc)
        return proc

    async def start_web(self, name: str = "web") -> Proc:
        proc = self._spawn("web", name)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            assert proc.popen.poll() is None, f"web exited: {proc.log_text()[-2000:]}"
            try:
                async with self.session.get(f"{self.url}/readyz") as resp:
                    if resp.status == 200:
                        return proc
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
        raise AssertionError("web never became ready")

    def start_worker(self, name: str, **env: str) -> Proc:
        return self._spawn("worker", name, **env)

    async def post(self, customer: str, message_id: str, text: str, **extra: Any) -> tuple[int, dict[str, Any]]:
        body = json.dumps({"customer_id": customer, "message_id": message_id, "text": text, **extra}).encode()
        headers = {"Content-Type": "application/json", "X-Switchboard-Signature": sign(API_SECRET, body)}
        async with self.session.post(f"{self.url}/v1/messages", data=body, headers=headers,
                                     timeout=aiohttp.ClientTimeout(total=10)) as resp:
            return resp.status, await resp.json()

    async def post_until_accepted(self, customer: str, message_id: str, text: str,
                                  deadline_s: float = 30.0) -> tuple[dict[str, Any], int]:
        """A well-behaved API client: retries network errors and 503 with the same message_id."""
        deadline = time.monotonic() + deadline_s
        attempts = 0
        while True:
            attempts += 1
            try:
                status, body = await self.post(customer, message_id, text)
                if status == 202:
                    return body, attempts
                assert status == 503, (status, body)
            except (aiohttp.ClientError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"{message_id} never accepted")
            await asyncio.sleep(0.1)

    async def pending_total(self) -> int:
        total = 0
        for p in range(PARTITIONS):
            try:
                groups = await self.redis.xinfo_groups(f"sb:in:{p}")
            except aioredis.ResponseError:
                continue
            for g in groups:
                total += int(g.get("pending") or 0) + int(g.get("lag") or 0)
        return total

    async def drained(self, timeout: float = 40.0) -> None:  # noqa: ASYNC109
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if await self.pending_total() == 0:
                    return
            except (aioredis.ConnectionError, OSError):
                pass
            await asyncio.sleep(0.1)
        tails = {p.name: (p.popen.poll(), p.log_text()[-300:]) for p in self.procs}
        raise AssertionError(f"streams not drained: {await self.pending_total()} left; processes: {tails}")

    async def close(self) -> None:
        for proc in self.procs:
            proc.stop()
        await self.session.close()
        await self.redis.aclose()
        await self.emulator_runner.cleanup()
        self.redis_server.kill()


async def start_cluster(folder: Path) -> Cluster:
    server = RedisServer(folder)
    server.start()
    cluster: Cluster
    app = create_emulator_app(EmulatorConfig(signing_secret=SLACK_SECRET))

    @web.middleware
    async def stall(request: web.Request, handler: Handler) -> web.StreamResponse:
        """Slack "timing out for a while": it does the work, but the answer comes after the client gave up.

        (A request that lands only *after* the client's retry was found and re-posted can still give two
        cards: no idempotency key exists on chat.postMessage. See the report; not simulated here.)
        """
        response = await handler(request)
        if cluster.stall_calls > 0 and "/api/chat.postMessage" in request.path:
            cluster.stall_calls -= 1
            await asyncio.sleep(cluster.stall_s)
        return response

    app.middlewares.append(stall)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    cluster = Cluster(folder, server, port, runner, app[EMULATOR_STATE], aiohttp.ClientSession(),
                      aioredis.from_url(server.url))
    return cluster


@dataclass
class Audit:
    """What reached Slack for the accepted messages: the proof behind "lost 0, duplicated 0"."""

    messages: int
    lost: list[str]
    duplicated: list[str]


async def audit(cluster: Cluster, accepted: dict[str, str], moved: bool = False) -> Audit:
    """`accepted` maps external message_id → conversation_id as acknowledged by the API.

    Each conversation must have exactly one card; every inbound message after the one that opened
    the card must appear exactly once in the card's thread (matched by message metadata). With `moved`
    (agents transferred conversations), "one card" means one live card (with buttons), and it must be the
    card the conversation points at: the cards a transfer left behind are retired; a message may be in
    any of the conversation's threads, still exactly once.
    """
    store = ConversationStore(cluster.redis, PARTITIONS)
    card_count: Counter[str] = Counter()
    thread_count: Counter[str] = Counter()
    live_ts: dict[str, str] = {}
    for channel in cluster.state.channels.values():
        for m in channel.messages:
            meta = m.get("metadata") or {}
            payload = meta.get("event_payload") or {}
            if meta.get("event_type") == "switchboard_card":
                live = any(b.get("type") == "actions" for b in m.get("blocks") or [])
                if live or not moved:
                    card_count[payload.get("conversation_id", "")] += 1
                    live_ts[payload.get("conversation_id", "")] = m["ts"]
            elif meta.get("event_type") == "switchboard_message":
                thread_count[payload.get("message_id", "")] += 1
    lost: list[str] = []
    duplicated: list[str] = []
    for conv_id in sorted(set(accepted.values())):
        conv = await store.load(conv_id)
        if conv is None:
            lost.extend(mid for mid, c in accepted.items() if c == conv_id)
            continue
        inbound = [m for m in conv.messages if m.direction.value == "inbound"]
        externals = Counter(m.external_id for m in inbound)
        duplicated.extend(f"{e} (transcript x{n})" for e, n in externals.items() if n > 1)
        lost.extend(mid for mid, c in accepted.items() if c == conv_id and mid not in externals)
        cards = card_count[conv_id]
        if cards == 0:
            lost.append(f"{conv_id} (no card)")
        elif cards > 1:
            duplicated.append(f"{conv_id} (cards x{cards})")
        elif moved and live_ts[conv_id] != conv.card_ts:
            lost.append(f"{conv_id} (its live card is not the one it points at)")
        # The message that opened the card is in its transcript; later ones are threaded. A message
        # routed while the card was being posted may legitimately be either, never both, never none.
        threaded = [m for m in inbound if thread_count[m.id]]
        duplicated.extend(f"{m.external_id} (thread x{thread_count[m.id]})" for m in threaded
                          if thread_count[m.id] > 1)
        if inbound and cards:
            missing = [m for m in inbound[1:] if not thread_count[m.id]]
            lost.extend(f"{m.external_id} (not threaded)" for m in missing)
    return Audit(len(accepted), lost, duplicated)
