"""Desk actions that arrive after the conversation moved on: a Resolve form opened before someone else's
resolve, a Transfer or Back to bot on a resolved card, and the rating prompt of a second resolve."""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from gateway import keys
from gateway.desk_ops import DeskOps
from integrations.webchat import outbox
from tests.conftest import Callback
from tests.harness import Gateway, cards, eventually, make_settings, outcomes, start_gateway, stored_card
from tests.slack_requests import SlackSender
from tests.test_desk import sender

VALUES = {
    "skill": {"value": {"type": "static_select", "selected_option": {"value": "billing"}}},
    "csat": {"value": {"type": "static_select", "selected_option": {"value": "no"}}},
}
ASK = {**VALUES, "csat": {"value": {"type": "static_select", "selected_option": {"value": "yes"}}}}


@pytest.fixture
async def stale_gw(redis: aioredis.Redis, redis_url: str, tmp_path: Path, callback: Callback) -> AsyncIterator[Gateway]:
    gw = await start_gateway(make_settings(redis_url, tmp_path, api_callback_url=callback.url))
    yield gw
    await gw.close()


def _view(call: Any) -> dict[str, Any]:
    view = call.params["view"]
    return json.loads(view) if isinstance(view, str) else dict(view)


async def _state(gw: Gateway, conv_id: str) -> str | None:
    conv = await gw.rt.store.load(conv_id)
    return conv.state.value if conv else None


async def _open_forms(gw: Gateway, slack: SlackSender, channel: str, card: dict[str, Any], conv_id: str,
                      users: tuple[str, ...]) -> list[dict[str, Any]]:
    before = len(gw.slack.calls_to("views.open"))
    for user in users:
        await slack.click(user, channel, card, {"type": "button", "action_id": "sb_resolve", "value": conv_id})
    opened = await eventually(lambda: len(gw.slack.calls_to("views.open")) == before + len(users)
                              and gw.slack.calls_to("views.open"))
    return [_view(c) for c in opened[before:]]


async def _resolved_then_reopened(gw: Gateway, callback: Callback) -> tuple[str, dict[str, Any], str, dict[str, Any]]:
    """Alice and Bob both open Resolve; Alice submits; the customer writes again. Returns Bob's form."""
    status, _ = await gw.post_message({"customer_id": "c-1", "message_id": "m1",
                                       "text": "I was charged twice on my invoice"})
    assert status == 202
    card, conv_id = await stored_card(gw, "support-billing")
    channel = gw.slack.channel_id("support-billing")
    slack = sender(gw)
    alice, bob = await _open_forms(gw, slack, channel, card, conv_id, ("U0ALICE", "U0BOB"))
    status, _ = await slack.submit_view("U0ALICE", alice, VALUES)
    assert status == 200
    await eventually(lambda: callback.received)
    assert await _state(gw, conv_id) == "resolved"
    await gw.post_message({"customer_id": "c-1", "message_id": "m2", "text": "also, I need a VAT invoice please"})

    async def reopened() -> bool:
        return await _state(gw, conv_id) == "waiting"

    await eventually(reopened)
    return conv_id, card, channel, bob


async def _nothing_more_resolved(gw: Gateway, callback: Callback, redis: aioredis.Redis, conv_id: str) -> None:
    await asyncio.sleep(0.5)
    assert await _state(gw, conv_id) == "waiting"
    assert len([m for m in callback.received if "has been resolved" in m["text"]]) == 1
    assert len([o for o in await outcomes(redis) if o["kind"] == "resolved"]) == 1
    assert not await redis.exists(keys.closed(conv_id))


async def test_a_resolve_form_opened_before_a_resolve_and_reopen_cannot_close_the_new_question(
    stale_gw: Gateway, callback: Callback, redis: aioredis.Redis
) -> None:
    gw = stale_gw
    conv_id, _, _, bob = await _resolved_then_reopened(gw, callback)
    status, answer = await sender(gw).submit_view("U0BOB", bob, VALUES)
    assert status == 200 and answer, "the stale form was accepted"
    refused = json.loads(answer)
    assert refused["response_action"] == "errors" and "customer has written again" in refused["errors"]["skill"]
    await _nothing_more_resolved(gw, callback, redis, conv_id)
    # A form opened now (after the reopen) resolves it.
    card, _ = await stored_card(gw, "support-billing")
    (fresh,) = await _open_forms(gw, sender(gw), gw.slack.channel_id("support-billing"), card, conv_id, ("U0BOB",))
    assert (await sender(gw).submit_view("U0BOB", fresh, VALUES))[1] == ""

    async def resolved() -> bool:
        return await _state(gw, conv_id) == "resolved"

    assert await eventually(resolved)


async def test_a_stale_form_whose_check_raced_is_refused_by_the_resolve_itself(
    stale_gw: Gateway, callback: Callback, redis: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The form's own check passed (the change landed just after it): the resolve refuses, and says so in
    the card's channel, since the form has closed by then."""
    gw = stale_gw
    conv_id, _, channel, bob = await _resolved_then_reopened(gw, callback)

    async def passes(self: DeskOps, conversation_id: str, seen: int | None) -> None:
        return None

    monkeypatch.setattr(DeskOps, "resolve_refusal", passes)
    before = len(gw.slack.calls_to("chat.postEphemeral"))
    assert (await sender(gw).submit_view("U0BOB", bob, VALUES))[1] == ""
    told = await eventually(lambda: gw.slack.calls_to("chat.postEphemeral")[before:])
    assert told[0].params["channel"] == channel and told[0].params["user"] == "U0BOB"
    assert "customer has written again" in told[0].params["text"]
    await _nothing_more_resolved(gw, callback, redis, conv_id)


async def test_transfer_and_back_to_bot_on_a_resolved_card_are_refused(
    stale_gw: Gateway, redis: aioredis.Redis
) -> None:
    gw = stale_gw
    await gw.post_message({"customer_id": "c-9", "message_id": "m1", "text": "I was charged twice on my invoice"})
    card, conv_id = await stored_card(gw, "support-billing")
    channel = gw.slack.channel_id("support-billing")
    assert (await gw.rt.ops.resolve(conv_id, "U0ALICE", skill="billing", urgency=None, mood=None)).ok
    # The card still on Bob's screen, drawn before the resolve.
    slack = sender(gw)
    transfer = {"type": "static_select", "action_id": "sb_transfer",
                "selected_option": {"text": {"type": "plain_text", "text": "technical"},
                                    "value": f"{conv_id}|technical"}}
    await slack.click("U0BOB", channel, card, transfer)
    await slack.click("U0BOB", channel, card, {"type": "button", "action_id": "sb_to_bot", "value": conv_id})
    await slack.click("U0BOB", channel, card, {"type": "button", "action_id": "sb_resolve", "value": conv_id})
    told = await eventually(lambda: len(gw.slack.calls_to("chat.postEphemeral")) >= 3
                            and gw.slack.calls_to("chat.postEphemeral"))
    assert all("already resolved" in c.params["text"] for c in told), [c.params["text"] for c in told]
    again = await gw.rt.ops.resolve(conv_id, "U0BOB", skill="billing", urgency=None, mood=None)
    assert not again.ok and "already resolved" in again.message
    await asyncio.sleep(0.5)
    assert gw.slack.calls_to("views.open") == []
    assert await _state(gw, conv_id) == "resolved" and await redis.exists(keys.closed(conv_id))
    assert cards(gw.slack, "support-technical") == []
    assert [o["kind"] for o in await outcomes(redis)] == ["resolved"]


async def test_resolving_a_reopened_web_chat_again_shows_the_rating_prompt_again(
    stale_gw: Gateway, redis: aioredis.Redis
) -> None:
    gw = stale_gw
    async with gw.session.post(f"{gw.url}/webchat/session", json={}, headers={"Origin": gw.url}) as resp:
        session = await resp.json()
    conv_id = session["conversation_id"]
    ws = await gw.session.ws_connect(f"{gw.url}/webchat/ws?token={session['token']}&since=0",
                                     headers={"Origin": gw.url})
    try:
        await ws.send_json({"type": "message", "client_id": "c1", "text": "I was charged twice on my invoice"})
        card, stored = await stored_card(gw, "support-billing")
        assert stored == conv_id
        channel, slack = gw.slack.channel_id("support-billing"), sender(gw)

        async def asked(n: int) -> bool:
            frames = await outbox.read(redis, conv_id, 0)
            return len([f for _, f in frames if f["type"] == "csat_request"]) == n

        for attempt, text in enumerate(("thanks", "one more thing: is VAT included?")):
            (form,) = await _open_forms(gw, slack, channel, card, conv_id, ("U0ALICE",))
            assert (await slack.submit_view("U0ALICE", form, ASK))[1] == ""
            assert await eventually(functools.partial(asked, attempt + 1))
            await ws.send_json({"type": "message", "client_id": f"c{attempt + 2}", "text": text})

            async def reopened() -> bool:
                return await _state(gw, conv_id) == "waiting"

            await eventually(reopened)
        await asyncio.sleep(0.3)
        assert await asked(2)  # and not asked twice for one resolve
    finally:
        await ws.close()
