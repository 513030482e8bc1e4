"""SLA escalation through the real worker pieces, with a controllable clock instead of sleeps."""

from __future__ import annotations

import dataclasses
import json
from typing import Any, cast

import pytest
import redis.asyncio as aioredis

from gateway import keys
from gateway.desk_ops import DeskOps
from gateway.domain import Conversation, Decision
from gateway.policy_admin import Change, PolicyAdmin
from gateway.sla import PLANNED_UNDER, RUNNERS, STEP_RETRY_S
from gateway.store import ConversationStore
from router.sla import ActionKind, SlaAction, SlaStep
from tests.harness import Gateway, cards, eventually, sla_on_manual_clock
from tests.interleave import AfterRead
from tests.slack_requests import SlackSender
from tests.test_transfer_order import ActsWhilePosting


async def _card(gw: Gateway) -> tuple[str, dict]:
    status, body = await gw.post_message({"customer_id": "sla-1", "message_id": "m1", "text": "my invoice is wrong"})
    assert status == 202
    card = (await eventually(lambda: cards(gw.slack, "support-billing")))[0]

    async def planned() -> bool:
        return bool(await gw.rt.sla.scheduler.pending(body["conversation_id"]))

    await eventually(planned)
    return body["conversation_id"], card


async def test_unclaimed_conversation_repings_then_escalates(gateway: Gateway, redis: aioredis.Redis) -> None:
    clock = await sla_on_manual_clock(gateway)
    conv_id, card = await _card(gateway)
    first_response = (await gateway.rt.policies.current()).route_for("billing").sla.first_response

    assert await gateway.rt.sla.tick() == 0  # nothing due yet
    clock.advance(first_response * 0.75 + 1)
    assert await gateway.rt.sla.tick() == 1
    reping = gateway.slack.replies("support-billing", card["ts"])[-1]
    assert "⏰" in reping["text"] and "still unclaimed" in reping["text"]

    clock.advance(first_response * 0.25)
    assert await gateway.rt.sla.tick() == 1
    moved = await eventually(lambda: cards(gateway.slack, "support-leads"))
    assert "escalated: first-response SLA" in json.dumps(moved[0]["blocks"])
    old = next(m for m in gateway.slack.messages("support-billing") if m["ts"] == card["ts"])
    assert "Escalated to #support-leads" in json.dumps(old["blocks"])
    conv = await gateway.rt.store.load(conv_id)
    assert conv is not None and conv.card_ts == moved[0]["ts"]
    history = await gateway.rt.sla.scheduler.escalations(conv_id)
    assert [h["step"] for h in history] == ["escalate", "warn"]
    assert all(h["reason"] for h in history)
    # The leads step: the card is in the leads channel already (the default escalation), so it is pinged
    # there, not posted a second time.
    clock.advance((await gateway.rt.policies.current()).escalation.leads_after + 1)
    assert await gateway.rt.sla.tick() == 1
    assert len(cards(gateway.slack, "support-leads")) == 1
    assert "⏰" in gateway.slack.replies("support-leads", moved[0]["ts"])[-1]["text"]


async def test_claimed_conversation_without_reply_goes_back_to_queue(gateway: Gateway) -> None:
    clock = await sla_on_manual_clock(gateway)
    conv_id, card = await _card(gateway)
    slack = SlackSender(gateway.session, f"{gateway.url}/slack/events", gateway.rt.slack.signing_secret)
    channel = gateway.slack.channel_id("support-billing")
    await slack.click("U0ALICE", channel, card, {"type": "button", "action_id": "sb_claim", "value": conv_id})
    await eventually(lambda: gateway.rt.ops.holder(conv_id))
    first_response = (await gateway.rt.policies.current()).route_for("billing").sla.first_response
    clock.advance(first_response + 1)
    assert await gateway.rt.sla.tick() == 1
    assert await gateway.rt.ops.holder(conv_id) is None
    conv = await gateway.rt.store.load(conv_id)
    assert conv is not None and conv.state.value == "waiting" and conv.claimed_by is None
    note = gateway.slack.replies("support-billing", card["ts"])[-1]["text"]
    assert "U0ALICE has not replied" in note


async def test_agent_who_claims_an_overdue_conversation_keeps_it_for_a_full_window(gateway: Gateway) -> None:
    """Counting from the customer's message sent it back to the queue at the very next tick."""
    clock = await sla_on_manual_clock(gateway)
    conv_id, card = await _card(gateway)
    first_response = (await gateway.rt.policies.current()).route_for("billing").sla.first_response
    clock.advance(first_response * 2)  # overdue before anyone claims it
    slack = SlackSender(gateway.session, f"{gateway.url}/slack/events", gateway.rt.slack.signing_secret)
    channel = gateway.slack.channel_id("support-billing")
    await slack.click("U0ALICE", channel, card, {"type": "button", "action_id": "sb_claim", "value": conv_id})
    await eventually(lambda: gateway.rt.ops.holder(conv_id))

    clock.advance(1)
    assert await gateway.rt.sla.tick() == 0
    assert await gateway.rt.ops.holder(conv_id) == "U0ALICE"
    clock.advance(60)  # clicking Claim again on a card she holds does not restart her window
    assert (await gateway.rt.ops.claim(conv_id, "U0ALICE")).ok
    clock.advance(first_response * 0.75 - 60)
    assert await gateway.rt.sla.tick() == 1  # nudged
    assert "U0ALICE has not replied for 7m 31s" in gateway.slack.replies("support-billing", card["ts"])[-1]["text"]
    assert await gateway.rt.ops.holder(conv_id) == "U0ALICE"
    clock.advance(first_response * 0.25)
    assert await gateway.rt.sla.tick() == 1  # a full window without a reply: back to the queue
    assert await gateway.rt.ops.holder(conv_id) is None


async def test_handed_back_to_bot_nothing_fires_even_after_a_stale_replan(gateway: Gateway) -> None:
    """A worker that read the conversation before "Back to bot" re-plans its ladder afterwards."""
    clock = await sla_on_manual_clock(gateway)
    conv_id, _ = await _card(gateway)
    before = await gateway.rt.store.load(conv_id)
    assert before is not None
    assert (await gateway.rt.ops.to_bot(conv_id, "U0ALICE")).ok
    await gateway.rt.sla.replan(before, new_wait=True)  # the stale snapshot still says "waiting"
    assert await gateway.rt.sla.scheduler.pending(conv_id)
    clock.advance(24 * 3600)
    assert await gateway.rt.sla.tick() == 0
    assert await gateway.rt.sla.scheduler.pending(conv_id) == []


@dataclasses.dataclass
class ClaimsWhilePosting:
    """The real desk, with an agent claiming on the old card while the escalation card is posted."""

    inner: Any
    ops: DeskOps

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def post_card(self, conversation: Conversation, decision: Decision, *args: Any, **kwargs: Any) -> Any:
        ref = await self.inner.post_card(conversation, decision, *args, **kwargs)
        assert (await self.ops.claim(conversation.id, "U0ALICE")).ok
        return ref


async def test_claim_during_escalation_wins_and_the_new_card_says_so(gateway: Gateway) -> None:
    clock = await sla_on_manual_clock(gateway)
    conv_id, card = await _card(gateway)
    gateway.rt.sla.desk = ClaimsWhilePosting(gateway.rt.desk, gateway.rt.ops)
    first_response = (await gateway.rt.policies.current()).route_for("billing").sla.first_response
    clock.advance(first_response + 1)
    assert await gateway.rt.sla.tick() == 0  # the escalation lost to the claim: nothing fired
    conv = await gateway.rt.store.load(conv_id)
    assert conv is not None and conv.claimed_by == "U0ALICE" and conv.state.value == "claimed"
    assert (conv.slack_channel, conv.card_ts) == (gateway.slack.channel_id("support-billing"), card["ts"])
    (late,) = [m for m in gateway.slack.messages("support-leads") if m["ts"] != card["ts"]]
    assert "Handled on its earlier card meanwhile" in json.dumps(late["blocks"])
    assert not [b for b in late["blocks"] if b["type"] == "actions"], "a retired card keeps no buttons"
    listed = await gateway.rt.redis.smembers(keys.cards(conv_id))  # it quotes the customer: erasure finds it
    assert f"{gateway.slack.channel_id('support-leads')}|{late['ts']}".encode() in listed
    old = next(m for m in gateway.slack.messages("support-billing") if m["ts"] == card["ts"])
    assert "Escalated" not in json.dumps(old["blocks"])
    # The claim's own ladder stands: the lost escalation neither counts as done nor re-plans over it.
    assert await gateway.rt.sla._done(conv_id) == frozenset()
    pending = await gateway.rt.sla.scheduler.pending(conv_id)
    assert sorted(d.kind for d in pending) == ["nudge", "reassign"]
    clock.advance(first_response * 0.75 + 1)  # claimed_at is stored to the microsecond: a second's margin
    assert await gateway.rt.sla.tick() == 1  # the agent is nudged on time
    assert await gateway.rt.ops.holder(conv_id) == "U0ALICE"


async def test_reassign_from_a_stale_read_leaves_a_new_claim_alone(gateway: Gateway) -> None:
    """The tick read the conversation claimed by Alice; she released it and Bob claimed it since."""
    conv_id, _ = await _card(gateway)
    assert (await gateway.rt.ops.claim(conv_id, "U0ALICE")).ok
    stale = await gateway.rt.store.load(conv_id)
    assert stale is not None
    assert (await gateway.rt.ops.release(conv_id, "U0ALICE")).ok
    assert (await gateway.rt.ops.claim(conv_id, "U0BOB")).ok
    action = SlaAction(ActionKind.REASSIGN, SlaStep.REASSIGN, conv_id, "support-billing", "late", agent="U0ALICE")
    policy = await gateway.rt.policies.current()
    assert not await RUNNERS[ActionKind.REASSIGN](gateway.rt.sla, stale, action, policy)
    assert await gateway.rt.ops.holder(conv_id) == "U0BOB"
    conv = await gateway.rt.store.load(conv_id)
    assert conv is not None and conv.claimed_by == "U0BOB" and conv.state.value == "claimed"
    # From a current read it goes through, and Bob's claim and capacity go with it in the same step.
    assert await gateway.rt.redis.sismember(keys.agent_open("U0BOB"), conv_id)
    bob_late = SlaAction(ActionKind.REASSIGN, SlaStep.REASSIGN, conv_id, "support-billing", "late", agent="U0BOB")
    assert await RUNNERS[ActionKind.REASSIGN](gateway.rt.sla, conv, bob_late, policy)
    assert await gateway.rt.ops.holder(conv_id) is None
    assert not await gateway.rt.redis.sismember(keys.agent_open("U0BOB"), conv_id)


async def test_answered_conversation_has_no_deadlines(gateway: Gateway) -> None:
    conv_id, _ = await _card(gateway)
    await gateway.rt.ops.resolve(conv_id, "U0ALICE", skill="billing", urgency=None, mood=None)
    assert await gateway.rt.sla.scheduler.pending(conv_id) == []


async def test_an_escalation_fired_while_a_transfer_is_posting_is_redone_on_the_new_card(gateway: Gateway) -> None:
    """The misrouted conversation is the overdue one: its transfer re-plans a ladder that is due at once. An
    escalation that fires on the old card before the move lands is retired by the move, which plans the
    ladder again on the new card, so the leads see the conversation where it now is."""
    clock = await sla_on_manual_clock(gateway)
    conv_id, _ = await _card(gateway)
    policy = await gateway.rt.policies.current()
    clock.advance(max(policy.route_for(s).sla.first_response for s in ("billing", "technical")) + 1)
    fired: list[int] = []

    async def tick_meanwhile() -> None:
        fired.append(await gateway.rt.sla.tick())

    gateway.rt.pipeline.desk = ActsWhilePosting(gateway.rt.desk, tick_meanwhile)
    assert (await gateway.rt.ops.transfer(conv_id, "U0ALICE", "technical")).ok
    (first,) = await eventually(lambda: cards(gateway.slack, "support-leads"))
    (moved,) = await eventually(lambda: cards(gateway.slack, "support-technical"))

    async def retired() -> bool:
        leads = next(m for m in gateway.slack.messages("support-leads") if m["ts"] == first["ts"])
        return not [b for b in leads["blocks"] if b["type"] == "actions"]

    assert fired and fired[0] >= 1 and await eventually(retired)
    assert await gateway.rt.sla.tick() >= 1  # the ladder planned with the move: overdue here too
    second = await eventually(lambda: [m for m in cards(gateway.slack, "support-leads") if m["ts"] != first["ts"]])
    assert "technical" in json.dumps(second[0]["blocks"])
    conv = await gateway.rt.store.load(conv_id)
    assert conv is not None and conv.skill == "technical" and conv.card_ts == second[0]["ts"]
    assert "Escalated to #support-leads" in json.dumps(
        next(m for m in gateway.slack.messages("support-technical") if m["ts"] == moved["ts"])["blocks"])


@dataclasses.dataclass
class FailsFor:
    """The real desk, except that Slack refuses every thread note for one conversation."""

    inner: Any
    failing: str

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def note_in_thread(self, conversation: Conversation, text: str, broadcast: bool = False,
                             note_id: str | None = None) -> str | None:
        if conversation.id == self.failing:
            raise RuntimeError("Slack answered 500")
        result: str | None = await self.inner.note_in_thread(conversation, text, broadcast, note_id)
        return result


async def test_a_step_that_fails_is_retried_and_the_others_due_with_it_still_fire(gateway: Gateway) -> None:
    clock = await sla_on_manual_clock(gateway)
    ids = []
    for i in range(3):
        _, body = await gateway.post_message({"customer_id": f"sla-f{i}", "message_id": "m1",
                                              "text": "my invoice is wrong"})
        ids.append(body["conversation_id"])

    async def planned() -> bool:
        return all([bool(await gateway.rt.sla.scheduler.pending(c)) for c in ids])

    await eventually(planned)
    gateway.rt.sla.desk = FailsFor(gateway.rt.desk, ids[0])
    first_response = (await gateway.rt.policies.current()).route_for("billing").sla.first_response
    clock.advance(first_response * 0.75 + 5)
    assert await gateway.rt.sla.tick() == 2  # the other two, whatever order they popped in

    async def steps(conv_id: str) -> list[str]:
        return [h["step"] for h in await gateway.rt.sla.scheduler.escalations(conv_id)]

    assert await steps(ids[0]) == [] and await steps(ids[1]) == await steps(ids[2]) == ["warn"]
    gateway.rt.sla.desk = gateway.rt.desk  # Slack is back
    clock.advance(1)
    assert await gateway.rt.sla.tick() == 0  # not hammered every second
    clock.advance(STEP_RETRY_S)
    assert await gateway.rt.sla.tick() == 1 and await steps(ids[0]) == ["warn"]


async def test_a_reassigned_conversation_gets_a_full_queue_window_before_it_escalates(gateway: Gateway) -> None:
    """Claimed, then the agent stayed silent: reassigned back to the queue. The queue's ladder used to count
    from the customer's first message, long past, so the next tick escalated it a second after the reassign."""
    clock = await sla_on_manual_clock(gateway)
    conv_id, _ = await _card(gateway)
    first_response = (await gateway.rt.policies.current()).route_for("billing").sla.first_response
    clock.advance(first_response * 0.75 + 1)
    assert await gateway.rt.sla.tick() == 1  # warn: still unclaimed
    assert (await gateway.rt.ops.claim(conv_id, "U0ALICE")).ok
    clock.advance(first_response + 1)
    assert await gateway.rt.sla.tick() == 1  # Alice never replied: reassigned
    conv = await gateway.rt.store.load(conv_id)
    assert conv is not None and conv.claimed_by is None and conv.requeued_at is not None
    assert "Back in the queue" in json.dumps(gateway.slack.messages("support-billing")[0]["blocks"])
    clock.advance(1)
    assert await gateway.rt.sla.tick() == 0  # not escalated at the next tick
    assert cards(gateway.slack, "support-leads") == []
    clock.advance(first_response - 2)
    assert await gateway.rt.sla.tick() == 0
    clock.advance(2)  # a full first-response window after the reassign, unclaimed: escalated
    assert await gateway.rt.sla.tick() == 1
    moved = await eventually(lambda: cards(gateway.slack, "support-leads"))
    assert "unclaimed for 10m" in json.dumps(moved[0]["blocks"])
    assert [h["step"] for h in await gateway.rt.sla.scheduler.escalations(conv_id)] == ["escalate", "reassign", "warn"]
    # A release does not: claiming and releasing every few minutes must not hold the leads off.
    assert (await gateway.rt.ops.claim(conv_id, "U0BOB")).ok
    clock.advance(first_response // 2)
    assert (await gateway.rt.ops.release(conv_id, "U0BOB")).ok
    leads_after = (await gateway.rt.policies.current()).escalation.leads_after
    clock.advance(leads_after)
    assert await gateway.rt.sla.tick() == 1  # the leads: counted from the reassign, not from the release


async def test_a_tightened_sla_reaches_the_conversations_already_waiting(gateway: Gateway) -> None:
    """A lead's `sla billing first=2m`: the pending ladders were planned under 10 minutes and kept them until
    each conversation's next change."""
    clock = await sla_on_manual_clock(gateway)
    conv_id, card = await _card(gateway)
    assert await gateway.rt.sla.tick() == 0
    admin = PolicyAdmin(gateway.rt.redis, gateway.rt.policies)
    tighter = Change("sla billing first=2m", lambda p: p.with_skill_changes(
        "billing", sla={**p.skills["billing"].sla.model_dump(mode="json"), "first_response": 120}))
    applied = await admin.apply(tighter, "U0LEAD")
    await gateway.rt.policies.current(force=True)
    clock.advance(120 * 0.75 + 1)
    assert await gateway.rt.sla.tick() == 1  # warned on the new target
    assert "SLA 2m" in gateway.slack.replies("support-billing", card["ts"])[-1]["text"]
    (planned,) = {d.due for d in await gateway.rt.sla.scheduler.pending(conv_id) if d.kind == "escalate"}
    assert planned == pytest.approx(clock.now() - 91 + 120, abs=2)
    # Once per version: the next ticks (and other workers) see it done.
    assert await gateway.rt.redis.get(PLANNED_UNDER) == str(applied.after.version).encode()
    assert await gateway.rt.sla.follow_policy() == 0


async def test_the_policy_re_plan_never_writes_over_a_newer_plan(gateway: Gateway) -> None:
    """Found in review: the re-plan loaded, then wrote with no check, so an agent's resolve in between got
    the waiting ladder back (and the leads would be pinged about a resolved conversation)."""
    conv_id, _ = await _card(gateway)
    sla = gateway.rt.sla
    real = sla.store
    async def resolve(conversation_id: str, conv: Conversation | None) -> None:  # an agent, just after the read
        assert (await gateway.rt.ops.resolve(conversation_id, "U0ALICE", skill="billing", urgency=None, mood=None)).ok

    sla.store = cast(ConversationStore, AfterRead(real, resolve))  # the real one, plus an actor
    try:
        tighter = Change("sla billing first=2m", lambda p: p.with_skill_changes(
            "billing", sla={**p.skills["billing"].sla.model_dump(mode="json"), "first_response": 120}))
        await PolicyAdmin(gateway.rt.redis, gateway.rt.policies).apply(tighter, "U0LEAD")
        await gateway.rt.policies.current(force=True)
        assert await sla.follow_policy() == 1
    finally:
        sla.store = real
    assert await sla.scheduler.pending(conv_id) == []
