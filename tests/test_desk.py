"""The Slack desk through signed requests to the real gateway: claim, reply, resolve, transfer."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from gateway import keys
from gateway.app import EMULATOR
from gateway.domain import ChannelKind, Conversation, Message, Outcome
from gateway.outbound import report_undelivered
from gateway.ports import Delivery
from integrations.slack.emulator import EMULATOR_DESK
from learners.outcomes import OUTCOMES_STREAM, labels_of
from tests.conftest import Callback
from tests.harness import Gateway, cards, eventually, make_settings, start_gateway
from tests.slack_requests import SlackSender


@pytest.fixture
async def desk_gw(redis: aioredis.Redis, redis_url: str, tmp_path: Path, callback: Callback) -> AsyncIterator[Gateway]:
    gw = await start_gateway(make_settings(redis_url, tmp_path, api_callback_url=callback.url))
    yield gw
    await gw.close()


def sender(gw: Gateway) -> SlackSender:
    return SlackSender(gw.session, f"{gw.url}/slack/events", gw.rt.slack.signing_secret)


async def new_card(
    gw: Gateway,
    text: str = "I was charged twice on my invoice",
    customer: str = "c-1",
    channel: str = "support-billing",
) -> tuple[str, dict[str, Any], str]:
    status, body = await gw.post_message({"customer_id": customer, "message_id": f"{customer}-m1", "text": text})
    assert status == 202
    card = (await eventually(lambda: cards(gw.slack, channel)))[-1]
    await eventually(lambda: _card_stored(gw, body["conversation_id"]))
    return body["conversation_id"], card, gw.slack.channel_id(channel)


async def _card_stored(gw: Gateway, conv_id: str) -> bool:
    conv = await gw.rt.store.load(conv_id)
    return bool(conv and conv.card_ts)


async def resolve_form(gw: Gateway, user: str, channel: str, card: dict[str, Any], conv_id: str) -> dict[str, Any]:
    """Click Resolve on the card as `user`; the form Slack opened (the newest `views.open`)."""
    await sender(gw).click(user, channel, card, {"type": "button", "action_id": "sb_resolve", "value": conv_id})
    opened = await eventually(lambda: gw.slack.calls_to("views.open"))
    view = opened[-1].params["view"]
    return json.loads(view) if isinstance(view, str) else dict(view)


def card_message(gw: Gateway, channel: str, ts: str) -> dict[str, Any]:
    return next(m for m in gw.slack.messages(channel) if m["ts"] == ts)


async def test_fifty_agents_claim_at_once_exactly_one_wins(desk_gw: Gateway) -> None:
    conv_id, card, channel = await new_card(desk_gw)
    slack = sender(desk_gw)
    users = [f"U{i:04d}AGENT" for i in range(50)]
    action = {"type": "button", "action_id": "sb_claim", "value": conv_id}
    statuses = await asyncio.gather(*(slack.click(u, channel, card, action) for u in users))
    assert all(s == 200 for s, _ in statuses)
    holder = await eventually(lambda: desk_gw.rt.ops.holder(conv_id))
    assert holder in users
    refused = await eventually(lambda: len(desk_gw.slack.calls_to("chat.postEphemeral")) == 49 or None, timeout=15)
    assert refused
    texts = {c.params["text"] for c in desk_gw.slack.calls_to("chat.postEphemeral")}
    assert texts == {f"Already claimed by <@{holder}>."}
    updated = await eventually(lambda: "Claimed by" in json.dumps(card_message(desk_gw, "support-billing", card["ts"])))
    assert updated
    conv = await desk_gw.rt.store.load(conv_id)
    assert conv is not None and conv.claimed_by == holder and conv.state.value == "claimed"


async def test_claimer_reply_reaches_customer_others_are_asked_to_claim(desk_gw: Gateway, callback: Callback) -> None:
    conv_id, card, channel = await new_card(desk_gw)
    slack = sender(desk_gw)
    # Reply before anyone claimed: refused, nothing sent.
    await slack.message("U0BOB", channel, "hi there", thread_ts=card["ts"])
    await eventually(lambda: desk_gw.slack.calls_to("chat.postEphemeral"))
    await slack.click("U0ALICE", channel, card, {"type": "button", "action_id": "sb_claim", "value": conv_id})
    await eventually(lambda: desk_gw.rt.ops.holder(conv_id))
    reply_ts = await slack.message(
        "U0ALICE", channel, "Sorry about that &amp; refunding now <@U0BOB>", thread_ts=card["ts"]
    )
    await eventually(lambda: callback.received)
    assert callback.received[0]["text"] == "Sorry about that & refunding now"
    assert callback.received[0]["author"]  # the agent's display name, never a Slack id
    assert not callback.received[0]["author"].startswith("U0")
    await eventually(
        lambda: [
            c
            for c in desk_gw.slack.calls_to("reactions.add")
            if c.params.get("timestamp") == reply_ts and c.params.get("name") == "white_check_mark"
        ]
    )
    # Internal note: stays in Slack.
    await slack.message("U0ALICE", channel, "note: customer is a reseller", thread_ts=card["ts"])
    await eventually(lambda: [c for c in desk_gw.slack.calls_to("reactions.add") if c.params.get("name") == "memo"])
    await asyncio.sleep(0.3)
    assert len(callback.received) == 1
    conv = await desk_gw.rt.store.load(conv_id)
    assert conv is not None and conv.messages[-1].direction.value == "outbound"


async def test_retried_event_is_relayed_once(desk_gw: Gateway, callback: Callback) -> None:
    conv_id, card, channel = await new_card(desk_gw)
    slack = sender(desk_gw)
    await slack.click("U0ALICE", channel, card, {"type": "button", "action_id": "sb_claim", "value": conv_id})
    await eventually(lambda: desk_gw.rt.ops.holder(conv_id))
    ts = "1700000000.000100"
    event = {
        "type": "message",
        "channel": channel,
        "user": "U0ALICE",
        "text": "once only",
        "ts": ts,
        "thread_ts": card["ts"],
        "event_ts": ts,
        "channel_type": "channel",
    }
    for retry in (None, 1, 2):
        status, _ = await slack.event(event, event_id="EvRETRY0001", retry=retry)
        assert status == 200
    await eventually(lambda: callback.received)
    await asyncio.sleep(0.5)
    assert [r["text"] for r in callback.received] == ["once only"]


async def test_reply_to_customer_whose_channel_is_down_is_marked_failed_then_retried(
    desk_gw: Gateway, callback: Callback
) -> None:
    conv_id, card, channel = await new_card(desk_gw)
    slack = sender(desk_gw)
    await slack.click("U0ALICE", channel, card, {"type": "button", "action_id": "sb_claim", "value": conv_id})
    await eventually(lambda: desk_gw.rt.ops.holder(conv_id))
    callback.fail_with = 503
    await slack.message("U0ALICE", channel, "are you still there?", thread_ts=card["ts"])
    notes = await eventually(
        lambda: [m for m in desk_gw.slack.replies(channel, card["ts"]) if "Not delivered" in m.get("text", "")],
        timeout=15,
    )
    assert "503" in notes[0]["text"]
    callback.fail_with = None
    await eventually(lambda: callback.received, timeout=20)
    assert [r["text"] for r in callback.received] == ["are you still there?"]


@dataclass
class RefusingChannel:
    """A customer channel whose provider refuses the number for good (Twilio 21610: unsubscribed)."""

    kind: ChannelKind = ChannelKind.API
    sent: list[str] = field(default_factory=list)

    async def send(self, conversation: Conversation, message: Message) -> Delivery:
        self.sent.append(message.text)
        return Delivery(ok=False, error="HTTP 400: 21610 unsubscribed recipient", permanent=True)


async def test_a_reply_the_provider_refuses_for_good_is_reported_at_once_not_retried(
    desk_gw: Gateway, redis: aioredis.Redis
) -> None:
    conv_id, card, channel = await new_card(desk_gw)
    refusing = RefusingChannel()
    desk_gw.rt.pipeline.channels = {**desk_gw.rt.pipeline.channels, ChannelKind.API: refusing}
    slack = sender(desk_gw)
    await slack.click("U0ALICE", channel, card, {"type": "button", "action_id": "sb_claim", "value": conv_id})
    await eventually(lambda: desk_gw.rt.ops.holder(conv_id))
    await slack.message("U0ALICE", channel, "your refund is on its way", thread_ts=card["ts"])
    notes = await eventually(
        lambda: [m for m in desk_gw.slack.replies(channel, card["ts"]) if "Not delivered" in m.get("text", "")],
        timeout=15,
    )
    assert "refused" in notes[0]["text"] and "21610" in notes[0]["text"] and "❌" in notes[0]["text"]
    assert refusing.sent == ["your refund is on its way"]
    assert await redis.zcard("sb:retry") == 0 and await redis.xlen(keys.DEAD) == 1


async def test_a_reply_reported_undelivered_later_is_told_in_the_thread(desk_gw: Gateway) -> None:
    """The web process learns it from a provider's status webhook; the note goes through the worker."""
    conv_id, card, channel = await new_card(desk_gw)
    await report_undelivered(desk_gw.rt.store, conv_id, "WhatsApp", "131047 Re-engagement message")
    notes = await eventually(
        lambda: [m for m in desk_gw.slack.replies(channel, card["ts"]) if "could not deliver" in m.get("text", "")])
    assert "WhatsApp" in notes[0]["text"] and "131047" in notes[0]["text"]


async def test_resolve_with_corrected_skill_emits_outcome_and_tells_customer(
    desk_gw: Gateway, callback: Callback, redis: aioredis.Redis
) -> None:
    conv_id, card, channel = await new_card(desk_gw)
    slack = sender(desk_gw)
    await slack.click("U0ALICE", channel, card, {"type": "button", "action_id": "sb_claim", "value": conv_id})
    await eventually(lambda: desk_gw.rt.ops.holder(conv_id))
    view = await resolve_form(desk_gw, "U0ALICE", channel, card, conv_id)
    assert view["callback_id"] == "sb_resolve"
    values = {
        "skill": {"value": {"type": "static_select", "selected_option": {"value": "technical"}}},
        "urgency": {"value": {"type": "static_select", "selected_option": {"value": "high"}}},
        "mood": {"value": {"type": "static_select", "selected_option": {"value": "negative"}}},
        "note": {"value": {"type": "plain_text_input", "value": "refund issued"}},
        "csat": {"value": {"type": "static_select", "selected_option": {"value": "yes"}}},
    }
    status, _ = await slack.submit_view("U0ALICE", view, values)
    assert status == 200
    entries = await eventually(lambda: redis.xrange(OUTCOMES_STREAM))
    outcome = json.loads(entries[-1][1][b"data"])
    assert outcome["kind"] == "resolved" and outcome["final_skill"] == "technical"
    assert outcome["urgency"] == 0.75 and outcome["mood"] == "negative" and "charged twice" in outcome["text"]
    received = await eventually(lambda: callback.received)
    assert "resolved" in received[0]["text"] and "1 (poor) to 5" in received[0]["text"]
    conv = await desk_gw.rt.store.load(conv_id)
    assert conv is not None and conv.state.value == "resolved" and await desk_gw.rt.ops.holder(conv_id) is None
    assert "Resolved by" in json.dumps(card_message(desk_gw, "support-billing", card["ts"]))
    # A follow-up reopens it, in the same thread, broadcast to the channel.
    assert await redis.exists(keys.closed(conv_id))
    await desk_gw.post_message({"customer_id": "c-1", "message_id": "c-1-m2", "text": "actually, one more thing"})
    broadcast = await eventually(
        lambda: [m for m in desk_gw.slack.messages("support-billing") if "reopened" in m.get("text", "")]
    )
    assert broadcast
    reopened = await desk_gw.rt.store.load(conv_id)
    assert reopened is not None and reopened.state.value == "waiting"
    # Open again: the reopen window counts from its next resolve, not from the first one (which split a
    # conversation reopened near the window's end in two when the customer wrote again).
    assert not await redis.exists(keys.closed(conv_id))


async def test_transfer_moves_card_and_records_misroute(desk_gw: Gateway, redis: aioredis.Redis) -> None:
    conv_id, card, channel = await new_card(desk_gw)
    slack = sender(desk_gw)
    action = {
        "type": "static_select",
        "action_id": "sb_transfer",
        "selected_option": {"text": {"type": "plain_text", "text": "technical"}, "value": f"{conv_id}|technical"},
    }
    await slack.click("U0ALICE", channel, card, action)
    moved = await eventually(lambda: cards(desk_gw.slack, "support-technical"))
    assert conv_id in json.dumps(moved[0]["blocks"]) and "transferred from billing" in json.dumps(moved[0]["blocks"])
    await eventually(lambda: "Transferred to" in json.dumps(card_message(desk_gw, "support-billing", card["ts"])))
    entries = await eventually(lambda: redis.xrange(OUTCOMES_STREAM))
    outcome = json.loads(entries[-1][1][b"data"])
    assert outcome["kind"] == "transferred" and outcome["correction"] == "misrouted: really technical"
    conv = await desk_gw.rt.store.load(conv_id)
    assert conv is not None and conv.skill == "technical" and conv.card_ts == moved[0]["ts"]


async def test_non_agents_are_refused(redis: aioredis.Redis, redis_url: str, tmp_path: Path) -> None:
    gw = await start_gateway(make_settings(redis_url, tmp_path, agents_raw="U0ALICE"))
    try:
        conv_id, card, channel = await new_card(gw)
        await sender(gw).click(
            "U0MALLORY", channel, card, {"type": "button", "action_id": "sb_claim", "value": conv_id}
        )
        refused = await eventually(lambda: gw.slack.calls_to("chat.postEphemeral"))
        assert "Only support agents" in refused[0].params["text"]
        assert await gw.rt.ops.holder(conv_id) is None
    finally:
        await gw.close()


async def test_capacity_is_enforced(desk_gw: Gateway, redis: aioredis.Redis) -> None:
    policy = await desk_gw.rt.policies.current()
    await redis.set("sb:policy", policy.with_changes(capacity={"U0ALICE": 1}).to_json())
    await desk_gw.rt.policies.current(force=True)
    first, card1, channel = await new_card(desk_gw, customer="c-1")
    second, card2, _ = await new_card(desk_gw, customer="c-2")
    slack = sender(desk_gw)
    await slack.click("U0ALICE", channel, card1, {"type": "button", "action_id": "sb_claim", "value": first})
    await eventually(lambda: desk_gw.rt.ops.holder(first))
    await slack.click("U0ALICE", channel, card2, {"type": "button", "action_id": "sb_claim", "value": second})
    refused = await eventually(lambda: desk_gw.slack.calls_to("chat.postEphemeral"))
    assert "capacity" in refused[0].params["text"]
    assert await desk_gw.rt.ops.holder(second) is None


async def test_socket_mode_carries_clicks_and_thread_replies(
    redis: aioredis.Redis, redis_url: str, tmp_path: Path, callback: Callback
) -> None:
    """With SLACK_APP_TOKEN the gateway opens a WebSocket to Slack; clicks arrive over it, not HTTP."""
    gw = await start_gateway(make_settings(redis_url, tmp_path, api_callback_url=callback.url,
                                           slack_app_token="xapp-emulator"))
    try:
        await eventually(lambda: gw.slack.sockets.connected)
        conv_id, card, channel = await new_card(gw)
        desk = gw.app[EMULATOR][EMULATOR_DESK]
        assert await desk.click(channel, card["ts"], "sb_claim", user="U0ALICE", value=conv_id) == 200
        await eventually(lambda: gw.rt.ops.holder(conv_id))
        await desk.post_as_user(channel, "Hello from the socket", user="U0ALICE", thread_ts=card["ts"])
        await eventually(lambda: callback.received)
        assert callback.received[0]["text"] == "Hello from the socket"
        assert {r.url for r in gw.slack.outbound} == {"socket-mode"}
    finally:
        await gw.close()


async def test_alias_is_what_the_customer_sees_and_policy_can_open_replies(
    redis: aioredis.Redis, redis_url: str, tmp_path: Path, callback: Callback
) -> None:
    gw = await start_gateway(make_settings(redis_url, tmp_path, api_callback_url=callback.url,
                                           aliases_raw="U0BOB=Bob from Support"))
    try:
        policy = await gw.rt.policies.current()
        await redis.set("sb:policy", policy.with_changes(anyone_can_reply=True).to_json())
        await gw.rt.policies.current(force=True)
        conv_id, card, channel = await new_card(gw)
        # Unclaimed, but the policy lets any agent answer.
        await sender(gw).message("U0BOB", channel, "Hello, Bob here", thread_ts=card["ts"])
        received = await eventually(lambda: callback.received)
        assert received[0]["author"] == "Bob from Support" and received[0]["text"] == "Hello, Bob here"
        assert await gw.rt.ops.holder(conv_id) is None
    finally:
        await gw.close()


async def test_agents_can_be_a_slack_user_group(redis: aioredis.Redis, redis_url: str, tmp_path: Path) -> None:
    """SWITCHBOARD_AGENTS may name a user group (S…); membership comes from usergroups.users.list."""
    gw = await start_gateway(make_settings(redis_url, tmp_path, agents_raw="S0LEADS"))
    try:
        conv_id, card, channel = await new_card(gw)
        claim = {"type": "button", "action_id": "sb_claim", "value": conv_id}
        await sender(gw).click("U0ALICE", channel, card, claim)  # not in the group
        refused = await eventually(lambda: gw.slack.calls_to("chat.postEphemeral"))
        assert "Only support agents" in refused[0].params["text"]
        await sender(gw).click("U0CAROL", channel, card, claim)  # in S0LEADS
        assert await eventually(lambda: gw.rt.ops.holder(conv_id)) == "U0CAROL"
    finally:
        await gw.close()


def test_slack_client_logger_level_is_explicit_so_the_sdk_skips_building_debug_lines() -> None:
    """slack_sdk checks `logger.level` (its own, NOTSET = 0 unless set) before formatting every request."""
    import logging

    from integrations.slack.desk import make_client

    client = make_client("xoxb-test", "http://127.0.0.1:9/api/")
    assert client.logger.level != logging.NOTSET
    assert client.logger.level == client.logger.getEffectiveLevel()


async def test_the_resolve_form_does_not_put_the_models_guesses_in_the_agents_mouth(
    desk_gw: Gateway, redis: aioredis.Redis
) -> None:
    """Urgency and mood were prefilled with the models' scores: a resolve the agent did not touch taught the
    learners their own guess back. They now start empty, and left empty they teach nothing."""
    conv_id, card, channel = await new_card(desk_gw)
    slack = sender(desk_gw)
    await slack.click("U0ALICE", channel, card, {"type": "button", "action_id": "sb_resolve", "value": conv_id})
    opened = await eventually(lambda: desk_gw.slack.calls_to("views.open"))
    view = opened[0].params["view"]
    view = json.loads(view) if isinstance(view, str) else view
    blocks = {b["block_id"]: b for b in view["blocks"]}
    for name in ("urgency", "mood"):
        assert blocks[name]["optional"] and "initial_option" not in blocks[name]["element"], name
    assert blocks["skill"]["element"]["initial_option"]["value"] == "billing"  # where it was handled
    values = {
        "skill": {"value": {"type": "static_select", "selected_option": {"value": "billing"}}},
        "urgency": {"value": {"type": "static_select", "selected_option": None}},
        "mood": {"value": {"type": "static_select", "selected_option": None}},
        "note": {"value": {"type": "plain_text_input", "value": None}},
        "csat": {"value": {"type": "static_select", "selected_option": {"value": "no"}}},
    }
    status, _ = await slack.submit_view("U0ALICE", view, values)
    assert status == 200
    entries = await eventually(lambda: redis.xrange(OUTCOMES_STREAM))
    outcome = Outcome.model_validate(json.loads(entries[-1][1][b"data"]))
    assert (outcome.kind, outcome.final_skill, outcome.urgency, outcome.mood) == ("resolved", "billing", None, None)
    assert set(labels_of(outcome).pairs) == {"skill"}


async def test_a_note_prefix_is_matched_whatever_its_case(redis: aioredis.Redis, redis_url: str, tmp_path: Path,
                                                          callback: Callback) -> None:
    """`SWITCHBOARD_NOTE_PREFIX=Internal:` was compared with lowercased text: every note went to the customer."""
    gw = await start_gateway(make_settings(redis_url, tmp_path, note_prefix="Internal:",
                                           api_callback_url=callback.url))
    try:
        conv_id, card, channel = await new_card(gw)
        slack = sender(gw)
        await slack.click("U0ALICE", channel, card, {"type": "button", "action_id": "sb_claim", "value": conv_id})
        await eventually(lambda: gw.rt.ops.holder(conv_id))
        notes = ("Internal: legacy plan, our bug", "internal: lowercase too", "  INTERNAL: and shouted",
                 "*Internal:* made bold in Slack", "_internal: in italics_")  # the last two: security review
        for note in notes:
            await slack.message("U0ALICE", channel, note, thread_ts=card["ts"])
        await eventually(lambda: len([c for c in gw.slack.calls_to("reactions.add")
                                      if c.params.get("name") == "memo"]) == len(notes))
        await slack.message("U0ALICE", channel, "Refund is on its way", thread_ts=card["ts"])
        await eventually(lambda: callback.received)
        await asyncio.sleep(0.3)
        assert [r["text"] for r in callback.received] == ["Refund is on its way"]
    finally:
        await gw.close()


async def test_a_lead_works_cards_without_being_listed_as_an_agent(redis: aioredis.Redis, redis_url: str,
                                                                   tmp_path: Path, callback: Callback) -> None:
    """The SLA ladder sends overdue cards to the leads; a lead missing from SWITCHBOARD_AGENTS could not claim one."""
    gw = await start_gateway(make_settings(redis_url, tmp_path, agents_raw="U0ALICE", leads_raw="U0CAROL",
                                           api_callback_url=callback.url))
    try:
        conv_id, card, channel = await new_card(gw)
        slack = sender(gw)
        await slack.click("U0CAROL", channel, card, {"type": "button", "action_id": "sb_claim", "value": conv_id})
        assert await eventually(lambda: gw.rt.ops.holder(conv_id)) == "U0CAROL"
        await slack.message("U0CAROL", channel, "I'm the team lead, sorting this now", thread_ts=card["ts"])
        await eventually(lambda: callback.received)
        assert callback.received[0]["text"] == "I'm the team lead, sorting this now"
        await slack.click("U0MALLORY", channel, card, {"type": "button", "action_id": "sb_claim", "value": conv_id})
        refused = await eventually(lambda: gw.slack.calls_to("chat.postEphemeral"))
        assert "Only support agents" in refused[-1].params["text"]
    finally:
        await gw.close()
