"""The retry budget of a failing stream entry must be its own, and an outage must not spend it.

Entry ids are only unique within one stream, and every partition is its own stream: two partitions that
receive a message in the same millisecond both get `<ms>-0`. Attempts used to be counted by the bare
entry id, so failures of unrelated entries added up and an entry was dead-lettered early; they are now
counted per partition and entry.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import redis.asyncio as aioredis
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_slack_response import AsyncSlackResponse

from gateway import keys
from gateway.worker import ATTEMPTS, MAX_ATTEMPTS, Worker, transient
from tests.harness import cards, eventually, make_settings, start_gateway


async def test_same_entry_id_in_two_partitions_has_separate_budgets(redis: aioredis.Redis) -> None:
    same_id = "1700000000000-0"
    for p in (0, 1):
        await redis.xadd(keys.inbound_stream(p), {"conv": f"conv-{p}", "mid": "m"}, id=same_id)
    worker = Worker(redis, pipeline=None, partitions=2, lease_ms=1500, reclaim_idle_ms=500,  # type: ignore[arg-type]
                    backoff=(0.001, 0.001))
    failure = RuntimeError("customer channel down")
    for _ in range(2):  # partition 0's entry fails twice...
        await worker._failed(0, same_id, {"conv": "conv-0"}, failure)
    for _ in range(MAX_ATTEMPTS - 2):  # ...and partition 1's, a different message, fails three times
        await worker._failed(1, same_id, {"conv": "conv-1"}, failure)
    dead = await redis.xrange(keys.DEAD)
    assert dead == [], f"dead-lettered after {MAX_ATTEMPTS - 2} own attempts: {dead}"


def _slack_error(status: int, error: str = "internal_error") -> SlackApiError:
    response = AsyncSlackResponse(client=None, http_verb="POST", api_url="chat.postMessage", req_args={},
                                  data={"ok": False, "error": error}, headers={}, status_code=status)
    return SlackApiError("The request to the Slack API failed.", response)


async def test_outages_are_waited_out_and_only_an_entry_s_own_failures_park_it(redis: aioredis.Redis) -> None:
    await redis.xadd(keys.inbound_stream(0), {"conv": "conv-0", "mid": "m"}, id="1700000000000-0")
    worker = Worker(redis, pipeline=None, partitions=1, lease_ms=1500, reclaim_idle_ms=500,  # type: ignore[arg-type]
                    backoff=(0.001, 0.001))
    outages = [_slack_error(503), _slack_error(429), TimeoutError(), aiohttp.ClientConnectionError("refused"),
               ConnectionRefusedError()]
    assert not transient(FileNotFoundError("kb.yaml")) and not transient(_slack_error(400))  # bugs, not outages
    for attempt in range(3 * MAX_ATTEMPTS):
        await worker._failed(0, "1700000000000-0", {"conv": "conv-0"}, outages[attempt % len(outages)])
    assert await redis.xrange(keys.DEAD) == []
    for _ in range(MAX_ATTEMPTS - 1):  # failures of its own (a bug, data it cannot take): the outage spent none
        await worker._failed(0, "1700000000000-0", {"conv": "conv-0"}, _slack_error(400, "invalid_blocks"))
    assert await redis.xrange(keys.DEAD) == []
    await worker._failed(0, "1700000000000-0", {"conv": "conv-0"}, _slack_error(400, "invalid_blocks"))
    rows: Any = await redis.xrange(keys.DEAD)
    (dead,) = rows
    assert dead[1][b"entry"] == b"1700000000000-0" and b"invalid_blocks" in dead[1][b"error"]


async def test_slack_down_for_longer_than_the_retry_budget_loses_nothing(redis_url: str, tmp_path: Path) -> None:
    gw = await start_gateway(make_settings(redis_url, tmp_path, automation="off"), with_worker=False)
    stop = asyncio.Event()
    worker = Worker(gw.rt.redis, gw.rt.pipeline, gw.settings.partitions, gw.settings.lease_ms, 500,
                    backoff=(0.01, 0.05))
    task = asyncio.create_task(worker.run(stop))
    try:
        gw.slack.fail_next("chat.postMessage", 500, count=MAX_ATTEMPTS + 5)
        status, _ = await gw.post_message({"customer_id": "outage-1", "message_id": "m1",
                                           "text": "I was charged twice on my invoice"})
        assert status == 202
        assert await eventually(lambda: cards(gw.slack, "support-billing"), timeout=30)
        assert await gw.rt.redis.xlen(keys.DEAD) == 0
        assert len(gw.slack.calls_to("chat.postMessage")) >= MAX_ATTEMPTS + 5
        assert await gw.rt.redis.hlen(ATTEMPTS) == 0  # the budget is dropped once the entry succeeds
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=30)
        await gw.close()
