"""A worker SIGKILLed between posting a card and acknowledging: another worker finishes, one card."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import redis.asyncio as aioredis

from gateway import keys
from tests.harness import Gateway, cards, eventually, make_settings, start_gateway


def spawn_worker(gw: Gateway, log_path: Path, **env: str) -> subprocess.Popen[bytes]:
    environ = {
        **os.environ,
        "REDIS_URL": gw.settings.redis_url or "",
        "SLACK_API_URL": f"{gw.url}/_slack/api/",
        "SWITCHBOARD_PARTITIONS": str(gw.settings.partitions),
        "SWITCHBOARD_LEASE_MS": "1500",
        "SWITCHBOARD_RECLAIM_IDLE_MS": "500",
        "SWITCHBOARD_DATA_DIR": str(log_path.parent),
        "SWITCHBOARD_LOG_FORMAT": "json",
        **env,
    }
    return subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "worker"], env=environ, stdout=subprocess.DEVNULL,
        stderr=log_path.open("wb"),
    )


async def pending(redis: aioredis.Redis, partitions: int) -> int:
    total = 0
    for p in range(partitions):
        info = await redis.xpending(keys.inbound_stream(p), keys.INBOUND_GROUP)
        total += int(info["pending"])
    return total


async def test_killed_worker_is_finished_by_another_with_one_card(
    redis: aioredis.Redis, redis_url: str, tmp_path: Path
) -> None:
    gw = await start_gateway(make_settings(redis_url, tmp_path), with_worker=False)
    first = spawn_worker(gw, tmp_path / "first.log", SWITCHBOARD_FAULT_HANG="after_card_post")
    second: subprocess.Popen[bytes] | None = None
    try:
        status, body = await gw.post_message(
            {"customer_id": "crash-1", "message_id": "m-1", "text": "My app crashes with an error, not working!"}
        )
        assert status == 202
        await eventually(lambda: cards(gw.slack, "support-technical"), timeout=20)
        await eventually(lambda: b"fault_hang" in (tmp_path / "first.log").read_bytes(), timeout=10)
        assert await pending(redis, gw.settings.partitions) == 1, "entry must still be unacknowledged"
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)

        second = spawn_worker(gw, tmp_path / "second.log")
        await eventually(lambda: _drained(redis, gw.settings.partitions), timeout=30)
        conv = await gw.rt.store.load(body["conversation_id"])
        assert conv is not None and conv.card_ts is not None
        found = cards(gw.slack, "support-technical")
        assert len(found) == 1 and found[0]["ts"] == conv.card_ts
        assert b"card_already_posted" in (tmp_path / "second.log").read_bytes()
        assert len(gw.slack.calls_to("chat.postMessage")) == 1
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=10)
        await gw.close()


async def _drained(redis: aioredis.Redis, partitions: int) -> bool:
    return await pending(redis, partitions) == 0
