"""Transfers ride the customer's partition stream: ordered with their messages, retried like them.

Posts are never resent by slack_sdk (chat.postMessage has no idempotency key), so when the emulator
fails `chat.postMessage` four times the worker's own retries (0.2 + 0.4 + 0.8 + 1.6 s of back-off) are
what moves the card, and the test has that long to act while the move is pending.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from gateway import keys
from gateway.desk_ops import DeskOps
from gateway.domain import Conversation, Decision, Outcome
from learners.outcomes import labels_of
from router.sla import ActionKind, SlaAction, SlaStep
from tests.conftest import Callback
from tests.harness import Gateway, cards, eventually, make_settings, outcomes, start_gateway
from tests.slack_requests import SlackSender
from tests.test_desk import card_message, new_card, sender

FAILED_POSTS = 4


@pytest.fixture
async def gw(redis: aioredis.Redis, redis_url: str, tmp_path: Path, callback: Callback) -> AsyncIterator[Gateway]:
    gateway = await start_gateway(make_settings(redis_url, tmp_path, api_callback_url=callback.url))
    yield gateway
    await gateway.close()


@pytest.fixture
async def idle_gw(redis: aioredis.Redis, redis_url: str, tmp_path: Path, callback: Callback
                  ) -> AsyncIterator[Gateway]:
    """No worker until the test starts one, so the test decides when queued work runs."""
    gateway = await start_gateway(make_settings(redis_url, tmp_path, api_callback_url=callback.url),
                                  with_worker=False)
    yield gateway
    await gateway.close()


def _transfer_to(conv_id: str, skill: str) -> dict[str, Any]:
    return {"type": "static_select", "action_id": "sb_transfer",
            "selected_option": {"text": {"type": "plain_text", "text": skill}, "value": f"{conv_id}|{skill}"}}


async def _transfer(gw: Gateway, slack: SlackSender, conv_id: str, card: dict[str, Any], channel: str,
                    skill: str) -> None:
    """Click, then wait for the desk's write: from then on the move is queued on the stream."""
    await slack.click("U0ALICE", channel, card, _transfer_to(conv_id, skill))

    async def skill_set() -> bool:
        conv = await gw.rt.store.load(conv_id)
        return conv is not None and conv.skill == skill

    assert await eventually(skill_set)


def _thread_texts(gw: Gateway, channel: str, ts: str) -> str:
    return json.dumps([m.get("text", "") for m in gw.slack.replies(gw.slack.channel_id(channel), ts)])


async def test_follow_up_after_a_transfer_lands_under_the_new_card_even_when_slack_fails(gw: Gateway) -> None:
    conv_id, card, channel = await new_card(gw)
    gw.slack.fail_next("chat.postMessage", 500, count=FAILED_POSTS)
    await _transfer(gw, sender(gw), conv_id, card, channel, "technical")
    status, _ = await gw.post_message({"customer_id": "c-1", "message_id": "c-1-m2", "text": "still waiting!!"})
    assert status == 202

    moved = await eventually(lambda: cards(gw.slack, "support-technical"), timeout=30)
    assert len(moved) == 1 and "transferred from billing" in json.dumps(moved[0]["blocks"])
    assert await eventually(lambda: "still waiting" in _thread_texts(gw, "support-technical", moved[0]["ts"]))
    assert "still waiting" not in _thread_texts(gw, "support-billing", card["ts"])
    assert await eventually(lambda: not _live(gw, "support-billing", card["ts"]))  # queued behind the follow-up
    assert "Transferred to" in json.dumps(card_message(gw, "support-billing", card["ts"]))
    conv = await gw.rt.store.load(conv_id)
    assert conv is not None and conv.card_ts == moved[0]["ts"]
    assert conv.slack_channel == gw.slack.channel_id("support-technical")
    assert conv.decision is not None and conv.decision.channel == "support-technical"


async def test_a_transfer_overtaken_by_another_posts_no_card_of_its_own(gw: Gateway) -> None:
    conv_id, card, channel = await new_card(gw)
    slack = sender(gw)
    gw.slack.fail_next("chat.postMessage", 500, count=FAILED_POSTS)
    await _transfer(gw, slack, conv_id, card, channel, "technical")
    # The first move is still failing and backing off.
    await _transfer(gw, slack, conv_id, card, channel, "shipping")

    moved = await eventually(lambda: cards(gw.slack, "support-shipping"), timeout=30)
    assert len(moved) == 1 and "transferred from technical" in json.dumps(moved[0]["blocks"])
    assert cards(gw.slack, "support-technical") == []
    assert await eventually(lambda: "Transferred to" in json.dumps(card_message(gw, "support-billing", card["ts"])))
    conv = await gw.rt.store.load(conv_id)
    assert conv is not None and conv.card_ts == moved[0]["ts"] and conv.skill == "shipping"


def _live(gw: Gateway, channel: str, ts: str) -> bool:
    return any(b["type"] == "actions" for b in card_message(gw, channel, ts)["blocks"])


@dataclasses.dataclass
class ActsWhilePosting:
    """The real desk; right after it posts the first transfer card, `then()` runs (another actor), and with
    `crash` that attempt then dies, so its result never reaches Redis and the entry is redelivered."""

    inner: Any
    then: Callable[[], Awaitable[None]]
    crash: bool = False
    acted: bool = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def post_card(self, conversation: Conversation, decision: Decision, *args: Any, **kwargs: Any) -> Any:
        ref = await self.inner.post_card(conversation, decision, *args, **kwargs)
        if not self.acted and str(kwargs.get("tag", "")).startswith("transfer:"):
            self.acted = True
            await self.then()
            if self.crash:
                raise RuntimeError("worker died after posting")
        return ref


async def test_a_card_posted_by_a_crashed_move_is_retired_when_the_move_is_overtaken(gw: Gateway) -> None:
    conv_id, card, _ = await new_card(gw)

    async def transfer_again() -> None:
        assert (await gw.rt.ops.transfer(conv_id, "U0BOB", "shipping")).ok

    gw.rt.pipeline.desk = ActsWhilePosting(gw.rt.desk, transfer_again, crash=True)
    assert (await gw.rt.ops.transfer(conv_id, "U0ALICE", "technical")).ok

    shipping = await eventually(lambda: cards(gw.slack, "support-shipping"), timeout=30)
    (orphan,) = cards(gw.slack, "support-technical")
    assert await eventually(lambda: not _live(gw, "support-technical", orphan["ts"]))
    assert "overtaken" in json.dumps(card_message(gw, "support-technical", orphan["ts"]))
    assert await eventually(lambda: not _live(gw, "support-billing", card["ts"]))
    assert len(shipping) == 1 and _live(gw, "support-shipping", shipping[0]["ts"])
    conv = await gw.rt.store.load(conv_id)
    assert conv is not None and conv.card_ts == shipping[0]["ts"] and conv.skill == "shipping"


async def test_a_failed_post_is_not_mistaken_for_an_older_card_of_the_same_conversation(gw: Gateway) -> None:
    """Back and forth within seconds: the retry's lookup must not take the first move's card for its own."""
    conv_id, _, _ = await new_card(gw)

    async def on(skill: str) -> Conversation | None:
        conv = await gw.rt.store.load(conv_id)
        return conv if conv is not None and conv.decision is not None and conv.decision.skill == skill else None

    assert (await gw.rt.ops.transfer(conv_id, "U0ALICE", "technical")).ok
    first = await eventually(lambda: on("technical"))
    assert (await gw.rt.ops.transfer(conv_id, "U0ALICE", "billing")).ok
    await eventually(lambda: on("billing"))
    gw.slack.fail_next("chat.postMessage", 500, count=1)
    assert (await gw.rt.ops.transfer(conv_id, "U0ALICE", "technical")).ok
    third = await eventually(lambda: on("technical"), timeout=20)

    assert third.card_ts != first.card_ts
    assert len(cards(gw.slack, "support-technical")) == 2
    assert _live(gw, "support-technical", third.card_ts)
    assert await eventually(lambda: not _live(gw, "support-technical", first.card_ts))


async def test_replies_under_a_moved_card_are_not_relayed_and_the_agent_is_told(gw: Gateway, callback: Callback
                                                                                 ) -> None:
    conv_id, card, channel = await new_card(gw)
    slack = sender(gw)
    await _transfer(gw, slack, conv_id, card, channel, "technical")
    (moved,) = await eventually(lambda: cards(gw.slack, "support-technical"))
    assert await eventually(lambda: not _live(gw, "support-billing", card["ts"]))
    assert (await gw.rt.ops.claim(conv_id, "U0ALICE")).ok
    await slack.message("U0ALICE", channel, "here is your refund", thread_ts=card["ts"])
    told = await eventually(lambda: [c for c in gw.slack.calls_to("chat.postEphemeral")
                                     if "was moved to" in c.params["text"]])
    assert told[0].params["user"] == "U0ALICE"
    await slack.message("U0ALICE", gw.slack.channel_id("support-technical"), "refund sent", thread_ts=moved["ts"])
    delivered = await eventually(lambda: [r for r in callback.received if "refund sent" in r["text"]])
    assert delivered and not [r for r in callback.received if "here is your refund" in r["text"]]


async def _routed_without_worker(gw: Gateway) -> tuple[str, dict[str, Any], str]:
    """A card routed by a worker that is then stopped, so the test decides when the next one runs."""
    gw.start_worker()
    routed = await new_card(gw)
    await gw.stop_worker()
    return routed


async def _drained(gw: Gateway, redis: aioredis.Redis) -> bool:
    """Every queued entry handled (the worker is idle)."""
    groups = [await redis.xinfo_groups(f"sb:in:{p}") for p in range(gw.settings.partitions)]
    return all(int(g["pending"]) == 0 and int(g["lag"] or 0) == 0 for gs in groups for g in gs)


async def test_transfer_to_its_own_skill_is_refused_and_a_move_the_bot_overtook_posts_nothing(
    idle_gw: Gateway, redis: aioredis.Redis
) -> None:
    gw = idle_gw
    conv_id, _, _ = await _routed_without_worker(gw)
    result = await gw.rt.ops.transfer(conv_id, "U0ALICE", "billing")
    assert not result.ok and "already with billing" in result.message
    assert (await gw.rt.ops.transfer(conv_id, "U0ALICE", "technical")).ok
    assert (await gw.rt.ops.to_bot(conv_id, "U0ALICE")).ok  # before any worker got to the move
    gw.start_worker()
    assert await eventually(lambda: _drained(gw, redis))
    assert cards(gw.slack, "support-technical") == []  # the bot has it: no human card


async def _transferred_outcomes(redis: aioredis.Redis, conv_id: str) -> list[dict[str, Any]]:
    return [o for o in await outcomes(redis) if o["conversation_id"] == conv_id and o["kind"] == "transferred"]


async def test_a_second_transfer_click_before_the_move_lands_queues_nothing_and_labels_once(
    idle_gw: Gateway, redis: aioredis.Redis
) -> None:
    gw = idle_gw
    conv_id, _, _ = await _routed_without_worker(gw)
    assert (await gw.rt.ops.transfer(conv_id, "U0ALICE", "technical")).ok
    again = await gw.rt.ops.transfer(conv_id, "U0BOB", "technical")  # the move has not landed yet
    assert not again.ok and "already on its way to technical" in again.message
    gw.start_worker()
    (moved,) = await eventually(lambda: cards(gw.slack, "support-technical"))

    async def landed() -> Conversation | None:
        conv = await gw.rt.store.load(conv_id)
        return conv if conv is not None and conv.card_ts == moved["ts"] else None

    conv = await eventually(landed)
    assert conv.moving_ref is None and conv.skill == "technical"
    assert len(await _transferred_outcomes(redis, conv_id)) == 1
    rows: Any = await redis.xrange(keys.AUDIT)
    audit = [json.loads(f[b"data"]) for _, f in rows]
    assert [a["action"] for a in audit if a["conversation_id"] == conv_id] == ["transfer"]
    # Landed: the same skill is refused as before, and another one moves again.
    assert "already with technical" in (await gw.rt.ops.transfer(conv_id, "U0BOB", "technical")).message
    assert (await gw.rt.ops.transfer(conv_id, "U0BOB", "shipping")).ok
    await eventually(lambda: cards(gw.slack, "support-shipping"))


async def test_transferring_back_before_the_move_lands_keeps_the_card_where_it_is(
    idle_gw: Gateway, redis: aioredis.Redis
) -> None:
    gw = idle_gw
    conv_id, card, channel = await _routed_without_worker(gw)
    assert (await gw.rt.ops.transfer(conv_id, "U0ALICE", "technical")).ok
    await sender(gw).click("U0ALICE", channel, card, _transfer_to(conv_id, "billing"))  # changed their mind
    assert await eventually(lambda: "Kept with billing" in json.dumps(card_message(gw, "support-billing",
                                                                                   card["ts"])["blocks"]))
    gw.start_worker()
    assert await eventually(lambda: _drained(gw, redis))
    assert cards(gw.slack, "support-technical") == []
    conv = await gw.rt.store.load(conv_id)
    assert conv is not None and conv.skill == "billing" and conv.card_ts == card["ts"]
    assert conv.moving_ref is None and _live(gw, "support-billing", card["ts"])
    assert await _transferred_outcomes(redis, conv_id) == []  # a move taken back before it landed teaches nothing
    # Nothing pending any more: technical can be chosen again, and this time it moves.
    assert (await gw.rt.ops.transfer(conv_id, "U0ALICE", "technical")).ok
    await eventually(lambda: cards(gw.slack, "support-technical"))


async def test_a_resolve_while_the_new_card_is_posted_wins_and_that_card_is_retired(gw: Gateway) -> None:
    conv_id, card, _ = await new_card(gw)

    async def resolve() -> None:
        assert (await gw.rt.ops.resolve(conv_id, "U0BOB", skill="technical", urgency=None, mood=None)).ok

    gw.rt.pipeline.desk = ActsWhilePosting(gw.rt.desk, resolve)
    assert (await gw.rt.ops.transfer(conv_id, "U0ALICE", "technical")).ok
    (late,) = await eventually(lambda: cards(gw.slack, "support-technical"))
    assert await eventually(lambda: not _live(gw, "support-technical", late["ts"]))
    conv = await gw.rt.store.load(conv_id)
    assert conv is not None and conv.state.value == "resolved" and conv.card_ts == card["ts"]
    listed = await gw.rt.redis.smembers(keys.cards(conv_id))  # it quotes the customer: erasure must find it
    assert f"{gw.slack.channel_id('support-technical')}|{late['ts']}".encode() in listed


@dataclasses.dataclass
class ClicksTwice:
    """The real store; the agent's second click on Claim completes between the first click's read and write."""

    inner: Any
    ops: DeskOps
    clicked: bool = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def load(self, conversation_id: str) -> Conversation | None:
        conv = await self.inner.load(conversation_id)
        if not self.clicked:
            self.clicked = True
            assert (await self.ops.claim(conversation_id, "U0ALICE")).ok
        return conv


async def test_a_double_click_on_claim_keeps_the_claim(gw: Gateway) -> None:
    conv_id, _, _ = await new_card(gw)
    first_click = DeskOps(gw.rt.redis, ClicksTwice(gw.rt.store, gw.rt.ops), gw.rt.ops.policies,  # type: ignore[arg-type]
                          gw.rt.ops.sla)
    assert (await first_click.claim(conv_id, "U0ALICE")).ok
    conv = await gw.rt.store.load(conv_id)
    assert conv is not None and conv.claimed_by == "U0ALICE"
    assert await gw.rt.ops.holder(conv_id) == "U0ALICE"
    assert await gw.rt.redis.smembers(keys.agent_open("U0ALICE")) == {conv_id.encode()}
    assert not (await gw.rt.ops.claim(conv_id, "U0BOB")).ok


async def test_the_holder_replying_under_the_card_an_escalation_left_behind_reaches_the_customer(
    gw: Gateway, callback: Callback
) -> None:
    """An escalation redraws the old card with its buttons: it still works, unlike a transferred one."""
    conv_id, card, channel = await new_card(gw)
    conv = await gw.rt.store.load(conv_id)
    assert conv is not None and gw.rt.sla is not None
    action = SlaAction(ActionKind.MOVE, SlaStep.ESCALATE, conv_id, "support-leads", "waited too long")
    assert await gw.rt.sla._run(conv, action, await gw.rt.ops.policies.current())
    assert _live(gw, "support-billing", card["ts"])
    assert (await gw.rt.ops.claim(conv_id, "U0ALICE")).ok
    await sender(gw).message("U0ALICE", channel, "here is your refund", thread_ts=card["ts"])
    assert await eventually(lambda: [r for r in callback.received if "here is your refund" in r["text"]])


async def test_a_skill_corrected_at_resolve_can_still_be_transferred_to_after_a_reopen(gw: Gateway) -> None:
    conv_id, _, _ = await new_card(gw)
    assert (await gw.rt.ops.resolve(conv_id, "U0BOB", skill="technical", urgency=None, mood=None)).ok
    status, _ = await gw.post_message({"customer_id": "c-1", "message_id": "c-1-m2", "text": "it broke again"})
    assert status == 202

    async def reopened() -> bool:
        conv = await gw.rt.store.load(conv_id)
        return conv is not None and conv.state.value == "waiting"

    assert await eventually(reopened)
    assert (await gw.rt.ops.transfer(conv_id, "U0ALICE", "technical")).ok  # the card is still billing's
    assert await eventually(lambda: cards(gw.slack, "support-technical"))


async def test_retiring_a_card_deleted_in_slack_does_not_hold_up_the_customer(gw: Gateway) -> None:
    conv_id, card, _ = await new_card(gw)
    gw.slack.remove_message(gw.slack.channel("support-billing"), card["ts"])
    assert (await gw.rt.ops.transfer(conv_id, "U0ALICE", "technical")).ok
    (moved,) = await eventually(lambda: cards(gw.slack, "support-technical"))
    status, _ = await gw.post_message({"customer_id": "c-1", "message_id": "c-1-m2", "text": "anyone there?"})
    assert status == 202
    assert await eventually(lambda: "anyone there" in _thread_texts(gw, "support-technical", moved["ts"]), timeout=5)
    assert await gw.rt.redis.xlen("sb:dead") == 0


async def _landed(gw: Gateway, conv_id: str) -> None:
    """The move is carried out (its label published with it)."""

    async def moved() -> bool:
        conv = await gw.rt.store.load(conv_id)
        return (conv is not None and conv.moving_ref is None and conv.decision is not None
                and conv.decision.skill == conv.skill)

    await eventually(moved)


async def test_a_resolve_before_the_move_lands_teaches_its_own_skill_once(gw: Gateway, redis: aioredis.Redis) -> None:
    """The move is overtaken and posts nothing, so it teaches nothing either: the resolve is the one label."""
    conv_id, _, _ = await new_card(gw)
    await gw.stop_worker()
    assert (await gw.rt.ops.transfer(conv_id, "U0ALICE", "technical")).ok
    assert (await gw.rt.ops.resolve(conv_id, "U0ALICE", skill="technical", urgency=None, mood=None)).ok
    gw.start_worker()
    assert await eventually(lambda: _drained(gw, redis))
    published = [Outcome.model_validate(o) for o in await outcomes(redis) if o["conversation_id"] == conv_id]
    assert [(o.kind, o.final_skill, o.skill_taught) for o in published] == [("resolved", "technical", False)]


async def test_a_resolve_confirming_a_transfer_teaches_the_skill_once(gw: Gateway, redis: aioredis.Redis) -> None:
    """The transfer said "misrouted: really technical"; a resolve as technical said it again, so the skill
    learner took two labels from one conversation. The transfer is counted; the resolve teaches. A resolve
    naming another skill teaches that one."""
    conv_id, _, _ = await new_card(gw)
    assert (await gw.rt.ops.transfer(conv_id, "U0ALICE", "technical")).ok
    await _landed(gw, conv_id)
    assert (await gw.rt.ops.resolve(conv_id, "U0ALICE", skill="technical", urgency=None, mood=None)).ok
    published = [Outcome.model_validate(o) for o in await outcomes(redis) if o["conversation_id"] == conv_id]
    assert [(o.kind, o.final_skill, o.skill_taught) for o in published] == [
        ("transferred", "technical", True), ("resolved", "technical", False)]
    assert [labels_of(o).pairs.get("skill", (None, None))[1] for o in published] == [None, "technical"]

    other, _, _ = await new_card(gw, customer="cust-other")
    assert (await gw.rt.ops.transfer(other, "U0ALICE", "technical")).ok
    await _landed(gw, other)
    assert (await gw.rt.ops.resolve(other, "U0ALICE", skill="account", urgency=None, mood=None)).ok
    (resolved,) = [Outcome.model_validate(o) for o in await outcomes(redis)
                   if o["conversation_id"] == other and o["kind"] == "resolved"]
    assert not resolved.skill_taught and labels_of(resolved).pairs["skill"][1] == "account"


async def test_a_reopened_episode_resolved_under_the_transferred_skill_teaches_it(gw: Gateway,
                                                                                 redis: aioredis.Redis) -> None:
    """Found in review: `taught_skill` outlived the resolve it was for, so every later resolve of the same
    conversation (a reopen with a new problem) was marked taught and taught nothing."""
    conv_id, _, _ = await new_card(gw)
    assert (await gw.rt.ops.transfer(conv_id, "U0ALICE", "technical")).ok
    await _landed(gw, conv_id)
    assert (await gw.rt.ops.resolve(conv_id, "U0ALICE", skill="technical", urgency=None, mood=None)).ok
    await gw.post_message({"customer_id": "c-1", "message_id": "c-1-m2", "text": "the app crashes on login now"})

    async def reopened() -> bool:
        conv = await gw.rt.store.load(conv_id)
        return conv is not None and conv.state.value != "resolved"

    await eventually(reopened)
    assert (await gw.rt.ops.resolve(conv_id, "U0BOB", skill="technical", urgency=None, mood=None)).ok
    resolved = [Outcome.model_validate(o) for o in await outcomes(redis)
                if o["conversation_id"] == conv_id and o["kind"] == "resolved"]
    assert [o.skill_taught for o in resolved] == [False, False]
    assert labels_of(resolved[-1]).pairs["skill"][1] == "technical"


async def test_a_chain_of_transfers_teaches_only_where_it_ends(gw: Gateway, redis: aioredis.Redis) -> None:
    """Found in review: shipping → technical → billing taught "technical" and "billing" for the same text, and
    the resolve (marked taught) could not outweigh the wrong stop; a learner cannot take a label back."""
    conv_id, _, _ = await new_card(gw)  # billing's
    for skill in ("technical", "account"):
        assert (await gw.rt.ops.transfer(conv_id, "U0ALICE", skill)).ok
        await _landed(gw, conv_id)
    assert (await gw.rt.ops.resolve(conv_id, "U0BOB", skill="account", urgency=None, mood=None)).ok
    published = [Outcome.model_validate(o) for o in await outcomes(redis) if o["conversation_id"] == conv_id]
    assert [o.kind for o in published] == ["transferred", "transferred", "resolved"]
    assert [s for o in published if (s := labels_of(o).pairs.get("skill", (None, None))[1])] == ["account"]
