"""A burst of 300 escalations into one rate-limited channel: paced, 429s ridden out, none lost."""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis

from integrations.slack.pacing import ChannelPacer
from tests.harness import Gateway, cards, eventually

BURST = 300


async def test_burst_into_one_channel_loses_none(gateway: Gateway, redis: aioredis.Redis) -> None:
    # Slack's limit scaled up 60x so the test runs in seconds; the pacer stays just under it, and a
    # few injected 429s with Retry-After prove they are ridden out rather than dropped.
    gateway.slack.config = gateway.slack.config.model_copy(update={"rate_limit_per_channel": 60.0})
    gateway.rt.desk.pacer = ChannelPacer(rate=40.0, burst=1)
    gateway.slack.fail_next("chat.postMessage", status=429, count=6, retry_after=1)

    async def send(i: int) -> int:
        status, _ = await gateway.post_message(
            {"customer_id": f"burst-{i}", "message_id": f"b-{i}", "text": f"Refund invoice #{i}, unacceptable"}
        )
        return status

    statuses = await asyncio.gather(*(send(i) for i in range(BURST)))
    assert statuses == [202] * BURST
    await eventually(lambda: len(cards(gateway.slack, "support-billing")) >= BURST, timeout=60, interval=0.25)
    found = cards(gateway.slack, "support-billing")
    ids = [m["metadata"]["event_payload"]["conversation_id"] for m in found]
    assert len(ids) == BURST == len(set(ids))
    rate_limited = [c for c in gateway.slack.calls_to("chat.postMessage") if c.status == 429]
    assert rate_limited, "the test must actually hit Slack's rate limit"
    assert await redis.xlen("sb:dead") == 0
