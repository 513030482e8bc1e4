"""A stopping worker finishes the entry in hand and hands the rest of its batch to the next owner.

Slack takes one post per second per channel. Working through a read batch of 64 before stopping took up
to a minute, so the process manager's kill (or `serve`'s own 10 s limit) came first, in mid-entry.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import redis.asyncio as aioredis
from structlog.testing import capture_logs

from tests.harness import eventually, make_settings, start_gateway

MESSAGES = 12


async def test_a_stop_leaves_the_batch_to_the_next_owner(redis: aioredis.Redis, redis_url: str,
                                                           tmp_path: Path) -> None:
    # Billing's channel paced at 2 posts/s: its 12 cards, read in one batch per partition, take ~6 s.
    settings = make_settings(redis_url, tmp_path, slack_channel_rate=2.0)
    gw = await start_gateway(settings, with_worker=False)
    try:
        ids = []
        for i in range(MESSAGES):
            status, body = await gw.post_message(
                {"customer_id": f"stop-{i}", "message_id": "m1", "text": "I was charged twice on my invoice"})
            assert status == 202
            ids.append(body["conversation_id"])
        gw.start_worker()
        await eventually(lambda: gw.slack.messages("support-billing"), timeout=15)
        with capture_logs() as logs:
            started = time.monotonic()
            await gw.stop_worker()
            took = time.monotonic() - started
        posted = len(gw.slack.messages("support-billing"))
        assert took < 2.5, f"the stop waited {took:.1f} s for the batch"
        assert posted < MESSAGES
        stopped = next(e for e in logs if e["event"] == "worker_stopped")
        assert stopped["handed_back"] == MESSAGES - stopped["processed"] > 0
        assert any(e["event"] == "worker_handing_back" for e in logs)

        gw.start_worker()  # the next owner (here a new worker) claims what was handed back

        async def all_cards() -> bool:
            return len(gw.slack.messages("support-billing")) >= MESSAGES

        await eventually(all_cards, timeout=30)
        cards = Counter(m["metadata"]["event_payload"]["conversation_id"]
                        for m in gw.slack.messages("support-billing"))
        assert cards == Counter(ids)  # every conversation one card, none twice
    finally:
        await gw.close()


async def test_a_stop_does_not_wait_out_a_retry_pause(redis: aioredis.Redis, redis_url: str, tmp_path: Path) -> None:
    """Slack failing: the entry waits 30 s between attempts, and a stop must not wait with it."""
    gw = await start_gateway(make_settings(redis_url, tmp_path), with_worker=False)
    try:
        gw.slack.fail_next("chat.postMessage", status=500, count=1000)
        status, _ = await gw.post_message({"customer_id": "c-pause", "message_id": "m1", "text": "my invoice"})
        assert status == 202
        gw.start_worker(backoff=(30.0, 30.0))
        await eventually(lambda: gw.slack.calls_to("chat.postMessage"), timeout=15)
        started = time.monotonic()
        await gw.stop_worker()
        assert time.monotonic() - started < 2.0
    finally:
        await gw.close()
