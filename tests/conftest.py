"""Shared fixtures: a real redis-server per test session, clean per test.

Set SWITCHBOARD_TEST_REDIS_URL to use an existing server instead (its database is flushed per test).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis as syncredis
import redis.asyncio as aioredis
import structlog
from aiohttp import web
from structlog.typing import Processor

from gateway.logging import ToStructlog

for _var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "all_proxy"):
    os.environ.pop(_var, None)

PLAIN_LOGGING: list[Processor] = [
    structlog.contextvars.merge_contextvars, structlog.processors.add_log_level,
    structlog.processors.StackInfoRenderer(), structlog.dev.set_exc_info,
    structlog.processors.TimeStamper(fmt="%Y-%m-%d %H:%M:%S", utc=False),
    structlog.dev.ConsoleRenderer(exception_formatter=structlog.dev.plain_traceback),
]
"""structlog's default, but with plain tracebacks: with `rich` installed (schemathesis brings it) every logged
exception was drawn with its locals, about 3 s each on a slow 2-core machine, so tests that make Slack fail on
purpose spent most of their time drawing tracebacks nobody reads."""


@pytest.fixture(autouse=True)
def _plain_logging() -> None:
    """Before every test: logging tests configure the real renderer and then reset structlog's defaults, and
    the standard library's bridge into it (`gateway.logging.ToStructlog`) is taken off again."""
    structlog.configure(processors=PLAIN_LOGGING)
    root = logging.getLogger()
    root.handlers = [h for h in root.handlers if not isinstance(h, ToStructlog)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 15.0) -> bool:
    """Whether something listens on the loopback port within `timeout` (servers started by tests)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return True
        except OSError:
            time.sleep(0.03)
    return False


def start_redis(port: int, folder: Path, *args: str) -> subprocess.Popen[bytes]:
    """A redis-server of the caller's own on `port`, answering when this returns: for tests that stop, restart
    or configure it (`args`: "--appendonly", "yes", ...). The suite's shared one is `redis_url`."""
    binary = shutil.which("redis-server")
    if not binary:
        pytest.fail("redis-server is not installed (apt-get install -y redis-server) and no SWITCHBOARD_TEST_REDIS_URL")
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(folder), *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if not wait_port(port, timeout=10):
        proc.kill()
        pytest.fail("redis-server did not start")
    return proc


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    external = os.environ.get("SWITCHBOARD_TEST_REDIS_URL")
    if external:
        yield external
        return
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="sb-test-redis-")
    proc = start_redis(port, Path(workdir), "--save", "", "--appendonly", "no")
    yield f"redis://127.0.0.1:{port}/0"
    proc.terminate()
    proc.wait(timeout=10)
    shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.from_url(redis_url)
    await client.flushdb()
    try:
        yield client
    finally:
        await client.flushdb()
        await client.aclose()


@pytest.fixture
def sync_redis(redis_url: str) -> Iterator[syncredis.Redis]:
    """`redis` for tests whose code under test runs its own event loop (a CLI's `main`): a blocking client."""
    client = syncredis.Redis.from_url(redis_url)
    client.flushdb()
    try:
        yield client
    finally:
        client.flushdb()
        client.close()


@pytest.fixture
async def gateway(redis: aioredis.Redis, redis_url: str, tmp_path: Any) -> AsyncIterator[Any]:
    from tests.harness import make_settings, start_gateway

    gw = await start_gateway(make_settings(redis_url, tmp_path))
    try:
        yield gw
    finally:
        await gw.close()


@dataclass
class Callback:
    """The team's callback endpoint for API customers: records what reaches the customer."""

    port: int
    received: list[dict[str, Any]] = field(default_factory=list)
    fail_with: int | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        from integrations.webhook.signature import verify
        from tests.harness import API_SECRET

        verify(API_SECRET, request.headers.get("X-Switchboard-Signature"), body)
        if self.fail_with:
            return web.Response(status=self.fail_with)
        self.received.append(json.loads(body))
        return web.Response(status=204)


@pytest.fixture
async def callback() -> AsyncIterator[Callback]:
    cb = Callback(free_port())
    app = web.Application()
    app.router.add_post("/hook", cb.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", cb.port).start()
    yield cb
    await runner.cleanup()


CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


@pytest.fixture
def chromium_path() -> str:
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium")
    return CHROMIUM


@pytest.fixture
async def browser(chromium_path: str) -> AsyncIterator[Any]:
    """Headless Debian Chromium; fails (never skips) without it: pages are only tested in a real browser."""
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        b = await pw.chromium.launch(executable_path=chromium_path, headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            await b.close()
