"""A failing entry's pause holds its own partition only.

Found in review: the pause between attempts (up to 30 s) was waited out inside the batch, and the worker reads
again only once every partition's batch is done, so one entry failing on one partition stopped every other
customer on that worker for as long.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from gateway.domain import Conversation, Decision, PastConversation
from gateway.worker import Worker
from integrations.slack.desk import CardRef
from tests.harness import cards, eventually, make_settings, post_on_another_partition, start_gateway

PAUSE_S = 5.0


@dataclasses.dataclass
class PoisonDesk:
    """The real Slack desk; one customer's card fails as a bug would (not an outage), every time."""

    inner: Any
    poison: str
    failures: int = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def post_card(self, conversation: Conversation, decision: Decision,
                        history: Sequence[PastConversation] = (), suggested_agent: str | None = None,
                        tag: str = "card") -> CardRef:
        if conversation.customer.key == self.poison:
            self.failures += 1
            raise ValueError("a bug in rendering this customer's card")
        ref: CardRef = await self.inner.post_card(conversation, decision, history, suggested_agent, tag)
        return ref


async def test_a_failing_entry_pauses_its_partition_and_no_other(
    redis: aioredis.Redis, redis_url: str, tmp_path: Path
) -> None:
    gw = await start_gateway(make_settings(redis_url, tmp_path, automation="off"), with_worker=False)
    desk = PoisonDesk(gw.rt.desk, "api:pause-poison")
    stop = asyncio.Event()
    worker = Worker(gw.rt.redis, dataclasses.replace(gw.rt.pipeline, desk=desk), gw.settings.partitions,
                    gw.settings.lease_ms, 500, backoff=(PAUSE_S, 30.0))
    task = asyncio.create_task(worker.run(stop))
    try:
        text = "I was charged twice on my invoice"
        status, poisoned = await gw.post_message({"customer_id": "pause-poison", "message_id": "m1", "text": text})
        assert status == 202
        await eventually(lambda: desk.failures == 1)
        sent = time.monotonic()
        other = await post_on_another_partition(gw, poisoned["conversation_id"], text, "pause-other")

        def carded() -> bool:
            return any(c["metadata"]["event_payload"]["conversation_id"] == other
                       for c in cards(gw.slack, "support-billing"))

        await eventually(carded, timeout=PAUSE_S + 5)
        assert time.monotonic() - sent < PAUSE_S / 2  # not held behind the other partition's pause
        assert desk.failures == 1  # and that one is still waiting out its own
        await eventually(lambda: desk.failures == 2, timeout=PAUSE_S + 5)  # then tried again
        started = time.monotonic()
        stop.set()
        await task
        assert time.monotonic() - started < 2  # a stop does not wait out a pause either
    finally:
        stop.set()
        if not task.done():
            await task
        await gw.close()
