"""One partition meets a Redis error while another is still posting its card.

Found in review: the worker's read loop gathered the partitions' batches with a plain `gather`, which raised at
the first failure and left the other batches running. After its outage pause the loop read the pending entries
again and handled, a second time and at once, an entry whose card was still being posted.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError

from gateway.domain import Conversation, Decision, PastConversation
from gateway.worker import Worker
from integrations.slack.desk import CardRef
from tests.harness import Gateway, cards, eventually, make_settings, post_on_another_partition, start_gateway

SLOW_POST_S = 2.5
"""Longer than the worker's pause after a Redis error (1 s), so a second run would start during the first."""


@dataclasses.dataclass
class FlakyDesk:
    """The real Slack desk; one conversation's first card meets a Redis error, another's takes its time."""

    inner: Any
    failing: str
    slow: str
    failed: bool = False
    posting: int = 0
    most_at_once: int = 0
    slow_posts: int = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def post_card(self, conversation: Conversation, decision: Decision,
                        history: Sequence[PastConversation] = (), suggested_agent: str | None = None,
                        tag: str = "card") -> CardRef:
        key = conversation.id
        if key == self.failing and not self.failed:
            self.failed = True
            raise RedisConnectionError("Redis went away mid-entry")
        if key == self.slow:
            self.slow_posts += 1
            self.posting += 1
            self.most_at_once = max(self.most_at_once, self.posting)
            try:
                await asyncio.sleep(SLOW_POST_S)
                return await self.inner.post_card(conversation, decision, history, suggested_agent, tag)
            finally:
                self.posting -= 1
        ref: CardRef = await self.inner.post_card(conversation, decision, history, suggested_agent, tag)
        return ref


def _cards_of(gw: Gateway, conversation_id: str) -> int:
    return sum(c["metadata"]["event_payload"]["conversation_id"] == conversation_id
               for c in cards(gw.slack, "support-billing"))


async def test_a_failing_partition_waits_for_its_siblings_before_anything_is_read_again(
    redis: aioredis.Redis, redis_url: str, tmp_path: Path
) -> None:
    gw = await start_gateway(make_settings(redis_url, tmp_path, automation="off"), with_worker=False)
    text = "I was charged twice on my invoice"
    # Both queued before the worker starts, so one read holds both.
    status, failing = await gw.post_message({"customer_id": "sibling-fail", "message_id": "m1", "text": text})
    assert status == 202
    slow = await post_on_another_partition(gw, failing["conversation_id"], text, "sibling-slow")
    desk = FlakyDesk(gw.rt.desk, failing["conversation_id"], slow)
    stop = asyncio.Event()
    worker = Worker(gw.rt.redis, dataclasses.replace(gw.rt.pipeline, desk=desk), gw.settings.partitions,
                    gw.settings.lease_ms, 500)
    task: asyncio.Task[None] | None = None
    try:
        task = asyncio.create_task(worker.run(stop))
        await eventually(lambda: _cards_of(gw, slow) and _cards_of(gw, failing["conversation_id"]), timeout=20)
        await asyncio.sleep(1.5)  # a second run, had one started, would post now
        assert desk.failed
        assert desk.most_at_once == 1
        assert desk.slow_posts == 1
        assert (_cards_of(gw, slow), _cards_of(gw, failing["conversation_id"])) == (1, 1)
    finally:
        stop.set()
        if task is not None:
            await task
        await gw.close()
