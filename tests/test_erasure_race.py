"""An erasure while a worker is handling one of the customer's messages.

Found in review: the worker had read the conversation before the erasure and wrote it back after (its
fields, its card's thread index, the SLA ladder), and the card it was posting meanwhile kept quoting the
customer. The erasure now queues a sweep behind that work on the customer's partition.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from gateway.domain import Conversation, Decision, Message, PastConversation
from gateway.erasure import Eraser, ErasureReport
from gateway.worker import Worker
from integrations.slack.desk import CardRef
from tests.harness import cards, eventually, make_settings, start_gateway
from tests.test_identity import _everything_in
from tests.test_transfer_order import _drained

TEXT = "I was charged twice on my invoice, card ending 4242"
SECOND = "my new card number is 5555 4444 3333 1111"


@dataclasses.dataclass
class ErasedWhilePosting:
    """The real Slack desk; the customer's erasure runs while their first card is being posted."""

    inner: Any
    eraser: Eraser
    customer: str
    reports: list[ErasureReport] = dataclasses.field(default_factory=list)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def post_card(self, conversation: Conversation, decision: Decision,
                        history: Sequence[PastConversation] = (), suggested_agent: str | None = None,
                        tag: str = "") -> CardRef:
        if not self.reports:
            self.reports.append(await self.eraser.forget(self.customer, "U0LEAD"))
        ref: CardRef = await self.inner.post_card(conversation, decision, history, suggested_agent, tag)
        return ref


async def test_work_in_flight_during_an_erasure_leaves_no_trace(
    redis: aioredis.Redis, redis_url: str, tmp_path: Path
) -> None:
    gw = await start_gateway(make_settings(redis_url, tmp_path, automation="off"), with_worker=False)
    desk = ErasedWhilePosting(gw.rt.desk, Eraser(gw.rt.redis, gw.rt.store, gw.rt.desk, gw.rt.policies),
                              "api:erase-race")
    racing = dataclasses.replace(gw.rt.pipeline, desk=desk)
    stop = asyncio.Event()
    worker = Worker(gw.rt.redis, racing, gw.settings.partitions, gw.settings.lease_ms, 500)
    task = asyncio.create_task(worker.run(stop))
    try:
        status, body = await gw.post_message({"customer_id": "erase-race", "message_id": "m1", "text": TEXT,
                                              "customer": {"name": "Ada Lovelace", "email": "ada@example.com"}})
        assert status == 202
        (card,) = await eventually(lambda: cards(gw.slack, "support-billing"))
        (report,) = desk.reports
        assert report.conversations == 1
        await eventually(lambda: _drained(gw, redis))

        async def blanked() -> bool:
            (now,) = gw.slack.messages("support-billing")
            return "Customer data erased" in json.dumps(now)

        await eventually(blanked)  # the card posted after the erasure read the card list
        left = await _everything_in(redis)
        # The conversation's id is left in the sweep's own stream entry until the stream is trimmed: an
        # opaque id that nothing left leads from or to.
        assert body["conversation_id"] not in left.replace(f"'conv': b'{body['conversation_id']}'", "")
        for trace in ("charged twice", "4242", "Ada", "ada@example.com", "erase-race"):
            assert trace not in left, trace
        assert "charged twice" not in json.dumps(gw.slack.messages("support-billing"))
        assert card["ts"] == gw.slack.messages("support-billing")[0]["ts"]
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=30)
        await gw.close()


@dataclasses.dataclass
class ErasedWhileThreading:
    """The real Slack desk; the erasure runs while the customer's follow-up is being threaded."""

    inner: Any
    eraser: Eraser
    customer: str
    armed: bool = False
    reports: list[ErasureReport] = dataclasses.field(default_factory=list)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def post_in_thread(self, conversation: Conversation, message: Message) -> str:
        if self.armed and not self.reports:
            self.reports.append(await self.eraser.forget(self.customer, "U0LEAD"))
        ts: str = await self.inner.post_in_thread(conversation, message)
        return ts


async def test_a_follow_up_threaded_during_an_erasure_is_deleted_by_the_sweep(
    redis: aioredis.Redis, redis_url: str, tmp_path: Path
) -> None:
    """Found in review: the follow-up's write-back names neither the card nor the card list, which the
    erasure had deleted, so the sweep found no card and the new message stayed in the thread."""
    gw = await start_gateway(make_settings(redis_url, tmp_path, automation="off"), with_worker=False)
    desk = ErasedWhileThreading(gw.rt.desk, Eraser(gw.rt.redis, gw.rt.store, gw.rt.desk, gw.rt.policies),
                                "api:erase-race2")
    stop = asyncio.Event()
    worker = Worker(gw.rt.redis, dataclasses.replace(gw.rt.pipeline, desk=desk), gw.settings.partitions,
                    gw.settings.lease_ms, 500)
    task = asyncio.create_task(worker.run(stop))
    try:
        await gw.post_message({"customer_id": "erase-race2", "message_id": "m1",
                               "text": "I was charged twice on my invoice"})
        (card,) = await eventually(lambda: cards(gw.slack, "support-billing"))
        await eventually(lambda: _drained(gw, redis))
        desk.armed = True
        await gw.post_message({"customer_id": "erase-race2", "message_id": "m2", "text": SECOND})
        await eventually(lambda: bool(desk.reports))
        await eventually(lambda: _drained(gw, redis))

        async def swept() -> bool:
            return SECOND not in json.dumps(gw.slack.replies("support-billing", card["ts"]))

        await eventually(swept)
        assert "5555" not in await _everything_in(redis)
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=30)
        await gw.close()
