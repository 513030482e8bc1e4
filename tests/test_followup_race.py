"""Two actors on one conversation at once: the later write must not undo the earlier one.

Found in review:
- the follow-up's final write re-saved `state` and `resolved_at` from the snapshot it had read before
  posting into the thread, so a resolve made in that window (Slack's 100-300 ms) was silently undone
  and the conversation showed as claimed again; it now writes them only when it reopens;
- the bot's silence check resolved a conversation whose customer had just come back and was being
  answered again, so the worker then overwrote the resolution and the learner got both labels.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from gateway import keys
from gateway.bot_followup import BotFollowUp
from gateway.desk_ops import DeskOps
from gateway.domain import Conversation, ConversationState, Direction, Message, new_id
from gateway.scheduler import ManualClock
from gateway.worker import Worker
from router.policy import Thresholds
from tests.conftest import Callback
from tests.harness import Gateway, bot_answered, cards, eventually, make_settings, outcomes, start_gateway
from tests.interleave import AfterRead


@pytest.fixture
async def race_gw(redis: aioredis.Redis, redis_url: str, tmp_path: Path) -> AsyncIterator[Gateway]:
    """Automation off, so every message gets a card for the racing actors to act on."""
    gateway = await start_gateway(make_settings(redis_url, tmp_path, automation="off"))
    yield gateway
    await gateway.close()


@dataclasses.dataclass
class ResolvesWhileThreading:
    """The real Slack desk, with an agent resolving the conversation during the thread post."""

    inner: Any
    ops: DeskOps
    agent: str = "U_AGENT"

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def post_in_thread(self, conv: Conversation, message: Message) -> str:
        ts: str = await self.inner.post_in_thread(conv, message)
        result = await self.ops.resolve(conv.id, self.agent, skill="billing", urgency=None, mood=None)
        assert result.ok, result
        return ts


async def test_resolve_during_follow_up_thread_post_is_not_undone(
    redis: aioredis.Redis, redis_url: str, tmp_path: Path
) -> None:
    gw = await start_gateway(make_settings(redis_url, tmp_path, automation="off"), with_worker=False)
    racing = dataclasses.replace(gw.rt.pipeline, desk=ResolvesWhileThreading(gw.rt.desk, gw.rt.ops))
    stop = asyncio.Event()
    worker = Worker(gw.rt.redis, racing, gw.settings.partitions, gw.settings.lease_ms, 500)
    task = asyncio.create_task(worker.run(stop))
    try:
        status, first = await gw.post_message(
            {"customer_id": "race-1", "message_id": "m1", "text": "I was charged twice on my invoice"})
        assert status == 202
        conv_id = first["conversation_id"]
        await eventually(lambda: cards(gw.slack, "support-billing"))

        async def carded() -> bool:
            conv = await gw.rt.store.load(conv_id)
            return bool(conv and conv.card_ts)

        await eventually(carded)
        assert (await gw.rt.ops.claim(conv_id, "U_AGENT")).ok

        status, _ = await gw.post_message({"customer_id": "race-1", "message_id": "m2", "text": "any news?"})
        assert status == 202

        async def handled() -> Conversation | None:
            conv = await gw.rt.store.load(conv_id)
            return conv if conv and len(conv.messages) == 2 and await gw.rt.ops.holder(conv_id) is None else None

        async def acknowledged() -> bool:  # the follow-up's final write carries its stream ack
            groups = [await redis.xinfo_groups(f"sb:in:{p}") for p in range(gw.settings.partitions)]
            return all(int(g["pending"]) == 0 and int(g["lag"] or 0) == 0 for gs in groups for g in gs)

        await eventually(handled)
        await eventually(acknowledged)
        conv = await gw.rt.store.load(conv_id)
        assert conv is not None
        assert conv.state is ConversationState.RESOLVED
        assert conv.resolved_at is not None
        assert conv.claimed_by is None
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=30)
        await gw.close()


async def test_bot_silence_check_waits_for_a_newer_bot_answer(
    redis: aioredis.Redis, redis_url: str, tmp_path: Path, callback: Callback
) -> None:
    gw = await start_gateway(make_settings(redis_url, tmp_path, api_callback_url=callback.url))
    try:
        follow, clock, conv_id = await bot_answered(gw, "q-race")
        conv = await gw.rt.store.load(conv_id)
        assert conv is not None
        # Just before the first answer's deadline the customer comes back, and a worker has put the
        # bot's new answer in the transcript but not yet saved the conversation: the deadline fires.
        clock.advance(follow.quiet_s + 1)
        now = datetime.fromtimestamp(clock.now(), UTC)
        for direction, text in ((Direction.INBOUND, "and to Norway?"), (Direction.OUTBOUND, "3-5 days")):
            await gw.rt.store.append(conv, Message(id=new_id("msg"), direction=direction,
                                                   channel=conv.customer.channel, text=text, at=now))
        assert await follow.tick() == 0
        again = await gw.rt.store.load(conv_id)
        assert again is not None and again.state is ConversationState.AUTOMATED
        clock.advance(follow.quiet_s + 1)  # silence after the newer answer: now it is resolved
        assert await follow.tick() == 1
        kinds = [o["kind"] for o in await outcomes(redis)]
        assert kinds == ["automation_resolved"]
    finally:
        await gw.close()


async def _carded(gw: Gateway, customer: str) -> str:
    """A routed conversation whose card is stored; its id."""
    status, body = await gw.post_message({"customer_id": customer, "message_id": "m1",
                                          "text": "I was charged twice on my invoice"})
    assert status == 202
    conv_id: str = body["conversation_id"]

    async def carded() -> bool:
        conv = await gw.rt.store.load(conv_id)
        return bool(conv and conv.card_ts)

    await eventually(carded)
    return conv_id


async def _assert_resolved_with_no_claim_held(gw: Gateway, conv_id: str, agent: str) -> None:
    conv = await gw.rt.store.load(conv_id)
    assert conv is not None and conv.state is ConversationState.RESOLVED and conv.claimed_by is None
    assert await gw.rt.ops.holder(conv_id) is None
    assert await gw.rt.redis.smembers(keys.agent_open(agent)) == set()


def resolved_after_read(gw: Gateway) -> AfterRead:
    """The real store, with an agent resolving the conversation right after the claim has read it."""

    async def resolve(conversation_id: str, conv: Conversation | None) -> None:
        if conv is not None and conv.state is not ConversationState.RESOLVED:
            assert (await gw.rt.ops.resolve(conversation_id, "U_LEAD", skill="billing", urgency=None, mood=None)).ok

    return AfterRead(gw.rt.store, resolve, every=True)


async def test_claim_read_before_a_resolve_does_not_reopen_it(race_gw: Gateway) -> None:
    gw = race_gw
    conv_id = await _carded(gw, "race-2")
    racing = DeskOps(gw.rt.redis, resolved_after_read(gw), gw.rt.ops.policies,  # type: ignore[arg-type]
                     gw.rt.ops.sla)
    result = await racing.claim(conv_id, "U_AGENT")
    assert not result.ok and "changed as you clicked" in result.message
    await _assert_resolved_with_no_claim_held(gw, conv_id, "U_AGENT")


async def test_holder_reclicking_claim_across_a_resolve_keeps_no_claim(race_gw: Gateway) -> None:
    """The card is redrawn with Claim after an escalation, so the holder clicking it again is normal: a
    resolve landing in that click must not leave their claim (and a unit of their capacity) held."""
    gw = race_gw
    conv_id = await _carded(gw, "race-3")
    assert (await gw.rt.ops.claim(conv_id, "U_AGENT")).ok
    racing = DeskOps(gw.rt.redis, resolved_after_read(gw), gw.rt.ops.policies,  # type: ignore[arg-type]
                     gw.rt.ops.sla)
    assert not (await racing.claim(conv_id, "U_AGENT")).ok
    await _assert_resolved_with_no_claim_held(gw, conv_id, "U_AGENT")


class ClaimedAfterHolderRead(DeskOps):
    """Real desk actions, with another agent claiming right after this one has read who holds the claim."""

    other: DeskOps
    done = False

    async def holder(self, conversation_id: str) -> str | None:
        held = await super().holder(conversation_id)
        if not self.done:
            self.done = True
            assert (await self.other.claim(conversation_id, "U_OTHER")).ok
        return held


async def test_resolve_read_before_a_claim_still_drops_that_claim(race_gw: Gateway) -> None:
    gw = race_gw
    conv_id = await _carded(gw, "race-4")
    racing = ClaimedAfterHolderRead(gw.rt.redis, gw.rt.store, gw.rt.ops.policies, gw.rt.ops.sla)
    racing.other = gw.rt.ops
    assert (await racing.resolve(conv_id, "U_LEAD", skill="billing", urgency=None, mood=None)).ok
    await _assert_resolved_with_no_claim_held(gw, conv_id, "U_OTHER")


async def _reopened(gw: Gateway, customer: str, conv_id: str, message_id: str, text: str) -> None:
    assert (await gw.post_message({"customer_id": customer, "message_id": message_id, "text": text}))[0] == 202

    async def waiting() -> bool:
        conv = await gw.rt.store.load(conv_id)
        return conv is not None and conv.state is ConversationState.WAITING

    await eventually(waiting)


def resolved_and_reopened_after_read(gw: Gateway, customer: str) -> AfterRead:
    """The real store, with another agent's resolve and the customer's reopen landing right after a stale
    Resolve form's submit has read the conversation: the state is back where that read saw it."""

    async def resolve_and_reopen(conversation_id: str, conv: Conversation | None) -> None:
        assert (await gw.rt.ops.resolve(conversation_id, "U0ALICE", skill="billing", urgency=None, mood=None)).ok
        await _reopened(gw, customer, conversation_id, "m2", "also, I need a VAT invoice please")

    return AfterRead(gw.rt.store, resolve_and_reopen)


async def test_a_resolve_and_reopen_landing_inside_a_stale_forms_submit_cannot_close_the_new_question(
    race_gw: Gateway, redis: aioredis.Redis
) -> None:
    """The form's count was checked before the write and bumped after it: a resolve and a reopen in between
    left the compared fields as the stale form had read them, and it closed the customer's new question."""
    gw = race_gw
    conv_id = await _carded(gw, "race-5")
    racing = DeskOps(gw.rt.redis, resolved_and_reopened_after_read(gw, "race-5"),  # type: ignore[arg-type]
                     gw.rt.ops.policies, gw.rt.ops.sla)
    stale = await racing.resolve(conv_id, "U0BOB", skill="billing", urgency=None, mood=None, seen_resolves=0)
    assert not stale.ok and "customer has written again" in stale.message
    conv = await gw.rt.store.load(conv_id)
    assert conv is not None and conv.state is ConversationState.WAITING and conv.resolves == 1
    assert [o["kind"] for o in await outcomes(redis)] == ["resolved"]


async def _bot_answered_on_card(gw: Gateway, redis: aioredis.Redis, customer: str) -> tuple[str, BotFollowUp]:
    """A carded conversation handed back to the bot, which answers its next question; the bot's silence
    check is due (manual clock past the quiet time). Returns (conversation id, silence check)."""
    conv_id = await _carded(gw, customer)
    assert (await gw.rt.ops.to_bot(conv_id, "U0ALICE")).ok
    # A lead lowers the bar, so the bot takes the next question of this conversation (a lead's change).
    policy = await gw.rt.policies.current()
    await redis.set(keys.POLICY, policy.model_copy(
        update={"thresholds": Thresholds(automation_success_floor=0.2)}).to_json())
    await gw.rt.policies.current(force=True)
    follow = gw.rt.pipeline.bot_followup
    assert follow is not None
    follow.clock = clock = ManualClock(time.time())
    await gw.post_message({"customer_id": customer, "message_id": "m2", "text": "How long does shipping usually take?"})

    async def bot_answered() -> bool:
        conv = await gw.rt.store.load(conv_id)
        return conv is not None and conv.messages[-1].direction is Direction.OUTBOUND

    await eventually(bot_answered)
    clock.advance(follow.quiet_s + 1)
    return conv_id, follow


async def test_a_bot_resolve_makes_a_resolve_form_opened_before_it_stale(
    redis: aioredis.Redis, redis_url: str, tmp_path: Path, callback: Callback
) -> None:
    """Handed back to the bot from its card, answered, resolved by the bot's silence check, reopened by the
    customer: a Resolve form opened on the card before all that closed the customer's new question."""
    gw = await start_gateway(make_settings(redis_url, tmp_path, api_callback_url=callback.url))
    try:
        conv_id, follow = await _bot_answered_on_card(gw, redis, "race-6")
        assert await follow.tick() == 1
        await _reopened(gw, "race-6", conv_id, "m3", "it has still not arrived")
        stale = await gw.rt.ops.resolve(conv_id, "U0BOB", skill="shipping", urgency=None, mood=None,
                                        seen_resolves=0)  # the form was opened before any resolve
        assert not stale.ok and "customer has written again" in stale.message
        conv = await gw.rt.store.load(conv_id)
        assert conv is not None and conv.state is ConversationState.WAITING and conv.resolves == 1
    finally:
        await gw.close()


async def test_the_bots_silence_check_loses_to_a_claim_made_as_it_resolves(
    redis: aioredis.Redis, redis_url: str, tmp_path: Path, callback: Callback
) -> None:
    """It wrote "resolved by the bot" over the claim: the agent's claim (and capacity) stayed held on a
    resolved conversation, and the learner was told the bot succeeded at what a person was taking on."""
    gw = await start_gateway(make_settings(redis_url, tmp_path, api_callback_url=callback.url))
    try:
        conv_id, follow = await _bot_answered_on_card(gw, redis, "race-7")
        async def claim(conversation_id: str, conv: Conversation | None) -> None:
            assert (await gw.rt.ops.claim(conversation_id, "U0CAROL")).ok

        follow.store = AfterRead(gw.rt.store, claim)  # type: ignore[assignment]
        assert await follow.tick() == 0
        conv = await gw.rt.store.load(conv_id)
        assert conv is not None and conv.state is ConversationState.CLAIMED and conv.claimed_by == "U0CAROL"
        assert not [o for o in await outcomes(redis) if o["kind"] == "automation_resolved"]
    finally:
        await gw.close()


async def test_resolve_counts_of_the_release_before_are_honoured_during_a_rolling_deploy(
    race_gw: Gateway, redis: aioredis.Redis
) -> None:
    """The release before counted resolves in `sb:conv:<id>:resolves`: a form it opened after its resolve and the
    customer's reopen carried 1 while the conversation's own count read 0, and was refused as stale."""
    gw = race_gw
    conv_id = await _carded(gw, "race-8")
    await redis.set(keys.resolves(conv_id), 1)  # an old process resolved it once; the customer then wrote again
    conv = await gw.rt.store.load(conv_id)
    assert conv is not None and await gw.rt.store.resolve_count(conv) == 1
    stale = await gw.rt.ops.resolve(conv_id, "U0BOB", skill="billing", urgency=None, mood=None, seen_resolves=0)
    assert not stale.ok and "customer has written again" in stale.message  # opened before that resolve
    fresh = await gw.rt.ops.resolve(conv_id, "U0BOB", skill="billing", urgency=None, mood=None, seen_resolves=1)
    assert fresh.ok, fresh
    conv = await gw.rt.store.load(conv_id)
    assert conv is not None and conv.resolves == 2
    assert await redis.get(keys.resolves(conv_id)) == b"2"  # still counted where old processes look


@dataclasses.dataclass
class LosesSaves:
    """The real store, except that its next `save_if` sends the write and loses the answer (`applied`), or is
    refused before it reaches Redis: the connection dropped either way."""

    inner: Any
    applied: bool

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def save_if(self, *args: Any, **kwargs: Any) -> bool:
        if self.applied:
            await self.inner.save_if(*args, **kwargs)
        raise ConnectionError("Connection closed by server.")


@pytest.mark.parametrize("applied", [False, True], ids=["write-lost", "answer-lost"])
async def test_a_claim_whose_state_write_fails_is_given_back_or_kept_as_written(race_gw: Gateway,
                                                                                applied: bool) -> None:
    """The claim key is taken by a script, then the state written by a second step. Before: an error in that
    second step left the key held on a conversation reading unclaimed, and every other agent was told "Already
    claimed by <@U_AGENT>", with the SLA ladder escalating a card nobody could claim. Now the claim is given back,
    unless the write did land (its answer was lost): then the conversation reads claimed and the key stays."""
    gw = race_gw
    conv_id = await _carded(gw, f"race-lost-{applied}")
    failing = DeskOps(gw.rt.redis, LosesSaves(gw.rt.store, applied), gw.rt.ops.policies,  # type: ignore[arg-type]
                      gw.rt.ops.sla)
    with pytest.raises(ConnectionError):
        await failing.claim(conv_id, "U_AGENT")
    conv = await gw.rt.store.load(conv_id)
    assert conv is not None
    if applied:
        assert conv.claimed_by == "U_AGENT" and await gw.rt.ops.holder(conv_id) == "U_AGENT"
    else:
        assert conv.claimed_by is None and conv.state is ConversationState.WAITING
        assert await gw.rt.ops.holder(conv_id) is None
        assert await gw.rt.redis.smembers(keys.agent_open("U_AGENT")) == set()
        assert (await gw.rt.ops.claim(conv_id, "U_OTHER")).ok
