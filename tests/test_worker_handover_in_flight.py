"""A worker gives a partition up only once it is done with the entry in hand.

Found in review: when a worker joined, the one holding every partition deleted the lease of its surplus at once,
from the heartbeat, while its read loop was still posting a card for an entry of that partition. The newcomer took
the lease, claimed the entry (`XAUTOCLAIM` with no idle threshold), found no card yet and posted a second one. Now
the heartbeat only marks the surplus as leaving; the read loop stops reading it, finishes the entry in hand, leaves
the rest of that batch pending, and then releases the lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from gateway import keys
from gateway.domain import Conversation, Decision, PastConversation
from gateway.redis_conn import as_str
from gateway.worker import Worker
from integrations.slack.desk import CardRef
from tests.harness import Gateway, cards, eventually, make_settings, start_gateway
from tests.test_transfer_order import _drained

TEXT = "I was charged twice on my invoice"


@dataclasses.dataclass
class SlowCard:
    """The real Slack desk; the first card for one customer waits until `go` is set (Slack taking its time)."""

    inner: Any
    customer: str
    go: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    posting: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    calls: int = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def post_card(self, conversation: Conversation, decision: Decision,
                        history: Sequence[PastConversation] = (), suggested_agent: str | None = None,
                        tag: str = "card") -> CardRef:
        if conversation.customer.key == self.customer:
            self.calls += 1
            if self.calls == 1:
                self.posting.set()
                await self.go.wait()
        ref: CardRef = await self.inner.post_card(conversation, decision, history, suggested_agent, tag)
        return ref


async def _queue_on(gw: Gateway, partition: int, prefix: str) -> str:
    """New customers' first messages until one lands on `partition`; that customer's id."""
    for i in range(64):
        status, body = await gw.post_message({"customer_id": f"{prefix}-{i}", "message_id": "m1", "text": TEXT})
        assert status == 202, body
        if as_str(await gw.rt.redis.get(keys.conversation_partition(body["conversation_id"]))) == str(partition):
            return f"{prefix}-{i}"
    raise AssertionError(f"no customer landed on partition {partition}")


async def test_a_partition_given_up_on_scale_out_is_not_worked_by_two_workers(
    redis: aioredis.Redis, redis_url: str, tmp_path: Path
) -> None:
    settings = make_settings(redis_url, tmp_path, automation="off").model_copy(update={"partitions": 2})
    gw = await start_gateway(settings, with_worker=False)
    stop = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []
    try:
        # Two workers split 2 partitions; the one that held both gives up partition 1 (its highest).
        slow = await _queue_on(gw, 1, "in-hand")
        await _queue_on(gw, 1, "behind")  # read in the same batch, after the slow one
        desk = SlowCard(gw.rt.desk, f"api:{slow}")
        pipeline = dataclasses.replace(gw.rt.pipeline, desk=desk)
        first = Worker(gw.rt.redis, pipeline, 2, settings.lease_ms, 500, name="first")
        tasks.append(asyncio.create_task(first.run(stop)))
        await asyncio.wait_for(desk.posting.wait(), timeout=10)  # mid-entry on partition 1, posting its card

        second = Worker(gw.rt.redis, pipeline, 2, settings.lease_ms, 500, name="second")
        tasks.append(asyncio.create_task(second.run(stop)))
        await eventually(lambda: first.leases.fair == 1 and second.leases.fair == 1)  # both saw the join
        with contextlib.suppress(AssertionError):  # before: the newcomer claimed the entry and posted its own card
            await eventually(lambda: desk.calls > 1, timeout=1.5)
        holder = as_str(await redis.get(keys.lease(1)))
        desk.go.set()

        await eventually(lambda: _drained(gw, redis), timeout=15)
        await eventually(lambda: len(first.leases.owned) == 1 and len(second.leases.owned) == 1, timeout=5)
        carded = Counter(c["metadata"]["event_payload"]["conversation_id"] for c in cards(gw.slack, "support-billing"))
        assert desk.calls == 1, "the entry in hand was worked by two workers"
        assert set(carded.values()) == {1}, carded  # every conversation one card, the one behind included
        assert holder == "first", "the lease went while its entry was in hand"
        assert as_str(await redis.get(keys.lease(1))) == "second"  # handed over once done
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        await gw.close()


@dataclasses.dataclass
class HeldCards:
    """The real Slack desk; the first card of each named customer waits for that customer's event."""

    inner: Any
    held: dict[str, asyncio.Event]
    posting: dict[str, asyncio.Event] = dataclasses.field(default_factory=dict)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def post_card(self, conversation: Conversation, decision: Decision,
                        history: Sequence[PastConversation] = (), suggested_agent: str | None = None,
                        tag: str = "card") -> CardRef:
        gate = self.held.pop(conversation.customer.key, None)
        if gate is not None:
            self.posting.setdefault(conversation.customer.key, asyncio.Event()).set()
            await gate.wait()
        ref: CardRef = await self.inner.post_card(conversation, decision, history, suggested_agent, tag)
        return ref


async def test_a_partition_given_up_goes_as_soon_as_its_own_batch_is_done(
    redis: aioredis.Redis, redis_url: str, tmp_path: Path
) -> None:
    """Found in the review of the hand-over fix: the lease went only once every partition's batch of that read was
    done, so while another partition waited on Slack (paced posts, up to a minute) the partition given up had
    nobody: its next owner could not take it."""
    settings = make_settings(redis_url, tmp_path, automation="off").model_copy(update={"partitions": 2})
    gw = await start_gateway(settings, with_worker=False)
    stop = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []
    try:
        staying = await _queue_on(gw, 0, "stays")
        leaving = await _queue_on(gw, 1, "goes")
        await _queue_on(gw, 1, "behind")
        gates = {f"api:{staying}": asyncio.Event(), f"api:{leaving}": asyncio.Event()}
        desk = HeldCards(gw.rt.desk, dict(gates))
        pipeline = dataclasses.replace(gw.rt.pipeline, desk=desk)
        first = Worker(gw.rt.redis, pipeline, 2, settings.lease_ms, 500, name="first")
        tasks.append(asyncio.create_task(first.run(stop)))
        await eventually(lambda: len(desk.posting) == 2, timeout=10)  # both partitions' batches in hand

        second = Worker(gw.rt.redis, pipeline, 2, settings.lease_ms, 500, name="second")
        tasks.append(asyncio.create_task(second.run(stop)))
        await eventually(lambda: 1 in first.leases.leaving, timeout=5)
        gates[f"api:{leaving}"].set()  # partition 1's entry in hand is done; partition 0 still waits on Slack
        await eventually(lambda: _lease_of(redis, 1, "second"), timeout=5)
        assert not gates[f"api:{staying}"].is_set()
        gates[f"api:{staying}"].set()
        await eventually(lambda: _drained(gw, redis), timeout=15)
        carded = Counter(c["metadata"]["event_payload"]["conversation_id"] for c in cards(gw.slack, "support-billing"))
        assert set(carded.values()) == {1}, carded
    finally:
        stop.set()
        for gate in gates.values():
            gate.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        await gw.close()


async def _lease_of(redis: aioredis.Redis, partition: int, worker: str) -> bool:
    return as_str(await redis.get(keys.lease(partition)) or b"") == worker
