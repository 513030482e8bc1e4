"""`switchboard status` against a running gateway and learner: what it shows and what it calls a problem.

Why: queue lag, parked work, the live policy and the learner's state were only in some process's /metrics or
behind Slack commands, so nothing could be scripted against a split deployment.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from gateway import keys
from learners.process import run_learner
from tests.harness import Gateway, eventually, make_settings, start_gateway, stored_card
from tests.local_serve import lines, run_cli
from tests.test_learners_process import fast


@pytest.fixture
async def running(redis: aioredis.Redis, redis_url: str, tmp_path: Path) -> AsyncIterator[Gateway]:
    gw = await start_gateway(make_settings(redis_url, tmp_path))
    stop = asyncio.Event()
    learner = asyncio.create_task(run_learner(redis, stop=stop, config=fast("status-1")))
    try:
        yield gw
    finally:
        stop.set()
        await asyncio.wait_for(learner, 10)
        await gw.close()


async def test_status_shows_a_running_deployment_and_what_needs_a_person(
    running: Gateway, redis: aioredis.Redis, redis_url: str, tmp_path: Path
) -> None:
    gw = running
    await gw.post_message({"customer_id": "c-1", "message_id": "m1", "text": "I was charged twice on my invoice"})
    await stored_card(gw, "support-billing")
    await redis.xadd(keys.DEAD, {"conv": "conv_x", "error": "a handler failed"})
    await eventually(lambda: redis.exists("sb:learners:lock"))

    out = await asyncio.to_thread(run_cli, ["status", "--json"], tmp_path, 60, REDIS_URL=redis_url,
                                  SWITCHBOARD_PARTITIONS="4")
    assert out.returncode == 1, out.stderr  # something needs a person
    body = json.loads(out.stdout)
    assert body["partitions"] == 4 and len(body["workers"]) == 1
    (worker,) = body["workers"]
    assert set(body["leases"].values()) == {worker}
    assert body["learner_leading"] and body["policy_version"] == 1 and body["dead_letters"] == 1
    assert sum(q["depth"] for q in body["queues"]) == 0
    # The test Redis keeps no append-only file, and one entry is parked; nothing else is wrong.
    assert sorted(body["problems"]) == [
        "1 parked in sb:dead (`/switchboard dead`)",
        "Redis keeps no append-only file: a restart loses what was acknowledged",
    ]

    text = await asyncio.to_thread(run_cli, ["status"], tmp_path, 60, REDIS_URL=redis_url, SWITCHBOARD_PARTITIONS="4")
    assert f"workers      1 live: {worker} holds 0-3" in text.stdout, text.stdout
    assert "learner      leading" in text.stdout and "problem      1 parked in sb:dead" in text.stdout


def test_status_with_nothing_to_look_at_is_one_line(tmp_path: Path) -> None:
    out = run_cli(["status"], tmp_path, 30)
    assert out.returncode == 2
    assert lines(out.stderr) == [f"configuration error: REDIS_URL: not set, and no `switchboard serve` is running on "
                                 f"{(tmp_path / '.switchboard').resolve()}: nothing to look at"]
