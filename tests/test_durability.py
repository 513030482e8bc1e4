"""A Redis that would lose acknowledged messages is named at start-up, with the fix.

Why: every process started on a Redis with its defaults (no append-only file) answered 202 to messages that
one Redis restart then lost, and nothing said so until `redis_state_lost` after the fact.
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from gateway.runtime import connect_redis
from gateway.settings import load_settings
from tests.conftest import free_port, start_redis


@contextmanager
def redis_server(folder: Path, *args: str) -> Iterator[str]:
    folder.mkdir()
    port = free_port()
    proc = start_redis(port, folder, *args)
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


async def _events(url: str, tmp_path: Path) -> list[MutableMapping[str, Any]]:
    with capture_logs() as logs:
        client, embedded = await connect_redis(load_settings(redis_url=url, data_dir=tmp_path / "data"), False)
        await client.aclose()
    assert embedded is None
    return [e for e in logs if str(e["event"]).startswith("redis_persistence") or e["event"] == "redis_not_persistent"]


@pytest.mark.parametrize(("args", "event", "detail"), [
    (("--appendonly", "no", "--save", ""), "redis_not_persistent", "appendonly yes"),
    (("--appendonly", "no", "--save", "3600 1"), "redis_not_persistent", "appendonly yes"),  # snapshots only
    (("--appendonly", "yes", "--appendfsync", "everysec"), "redis_persistence", "last second"),
    (("--appendonly", "yes", "--appendfsync", "always"), "redis_persistence", "nothing acknowledged"),
    # A managed Redis that refuses CONFIG: on, sync policy unknown; one that refuses INFO too: said so.
    (("--appendonly", "yes", "--rename-command", "CONFIG", ""), "redis_persistence", "unknown"),
    (("--appendonly", "yes", "--rename-command", "INFO", ""), "redis_persistence_unknown", "appendonly yes"),
])
async def test_start_up_says_what_a_redis_crash_would_lose(
    tmp_path: Path, args: tuple[str, ...], event: str, detail: str
) -> None:
    with redis_server(tmp_path / "redis", *args) as url:
        (said,) = await _events(url, tmp_path)
    assert said["event"] == event
    assert detail in str(said.get("hint", "")) + str(said.get("crash_loses", ""))


async def test_a_worker_says_when_redis_is_back_and_how_long_it_was_gone(tmp_path: Path) -> None:
    """An outage logged warnings several times a second per process, and nothing said when it ended."""
    import asyncio
    import time

    from tests.harness import make_settings, start_gateway

    port = free_port()
    args = ("--save", "", "--appendonly", "no")
    server = await asyncio.to_thread(start_redis, port, tmp_path, *args)

    async def logged(event: str, logs: list[MutableMapping[str, Any]], deadline: float) -> None:
        while not any(e["event"] == event for e in logs):
            assert time.monotonic() < deadline, [e["event"] for e in logs][-20:]
            await asyncio.sleep(0.05)

    with capture_logs() as logs:  # before the gateway starts: loggers bound earlier would miss it
        gw = await start_gateway(make_settings(f"redis://127.0.0.1:{port}/0", tmp_path))
        try:
            deadline = time.monotonic() + 20
            await logged("worker_started", logs, deadline)
            server.kill()
            await asyncio.to_thread(server.wait)
            await logged("worker_redis_unavailable", logs, deadline)
            server = await asyncio.to_thread(start_redis, port, tmp_path, *args)
            await logged("worker_redis_back", logs, deadline)
        finally:
            await gw.close()
            server.terminate()
            await asyncio.to_thread(server.wait)
    (back,) = [e for e in logs if e["event"] == "worker_redis_back"]
    assert 0 < back["outage_s"] < 20
