"""Only configured agents may act on conversations; everyone else is refused and nothing changes.

There are no slash commands registered on the bolt app yet (integrations/slack/listeners.py), so the
checks cover every button, the transfer menu, the resolve modal and thread replies.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from learners.outcomes import OUTCOMES_STREAM
from tests.conftest import Callback
from tests.harness import Gateway, cards, eventually, make_settings, start_gateway
from tests.slack_requests import SlackSender

MALLORY = "U0BOB"  # a workspace member (the emulator refuses ephemerals to strangers), not an agent


@pytest.fixture
async def agents_gw(redis: aioredis.Redis, redis_url: str, tmp_path: Path, callback: Callback
                    ) -> AsyncIterator[Gateway]:
    gw = await start_gateway(make_settings(redis_url, tmp_path, agents_raw="U0ALICE", automation="off",
                                           api_callback_url=callback.url))
    yield gw
    await gw.close()


async def card_of(gw: Gateway) -> tuple[str, dict, str]:
    status, body = await gw.post_message({"customer_id": "authz", "message_id": "m-1", "text": "invoice wrong"})
    assert status == 202
    card = (await eventually(lambda: cards(gw.slack, "support-billing")))[0]

    async def stored() -> bool:
        conv = await gw.rt.store.load(body["conversation_id"])
        return bool(conv and conv.card_ts)

    await eventually(stored)
    return body["conversation_id"], card, gw.slack.channel_id("support-billing")


async def test_non_agent_buttons_transfer_and_modal_are_refused(
    agents_gw: Gateway, redis: aioredis.Redis, callback: Callback
) -> None:
    conv_id, card, channel = await card_of(agents_gw)
    slack = SlackSender(agents_gw.session, f"{agents_gw.url}/slack/events", agents_gw.rt.slack.signing_secret)
    for action_id in ("sb_claim", "sb_release", "sb_resolve", "sb_to_bot"):
        status, _ = await slack.click(MALLORY, channel, card, {"type": "button", "action_id": action_id,
                                                               "value": conv_id})
        assert status == 200, action_id
    transfer = {"type": "static_select", "action_id": "sb_transfer",
                "selected_option": {"text": {"type": "plain_text", "text": "technical"},
                                    "value": f"{conv_id}|technical"}}
    await slack.click(MALLORY, channel, card, transfer)
    view = {"callback_id": "sb_resolve", "private_metadata": conv_id, "type": "modal"}
    values = {"skill": {"value": {"type": "static_select", "selected_option": {"value": "technical"}}},
              "urgency": {"value": {"type": "static_select", "selected_option": {"value": "high"}}},
              "mood": {"value": {"type": "static_select", "selected_option": {"value": "negative"}}},
              "note": {"value": {"type": "plain_text_input", "value": "x"}},
              "csat": {"value": {"type": "static_select", "selected_option": {"value": "no"}}}}
    await slack.submit_view(MALLORY, view, values)
    refusals = await eventually(lambda: len(agents_gw.slack.calls_to("chat.postEphemeral")) >= 5 or None)
    assert refusals
    texts = [c.params["text"] for c in agents_gw.slack.calls_to("chat.postEphemeral")]
    assert all(t.startswith("Only support agents") for t in texts), texts
    assert agents_gw.slack.calls_to("views.open") == []
    await asyncio.sleep(0.3)
    conv = await agents_gw.rt.store.load(conv_id)
    assert conv is not None and conv.state.value == "waiting" and conv.claimed_by is None and conv.skill == "billing"
    assert await agents_gw.rt.ops.holder(conv_id) is None
    assert await redis.xlen(OUTCOMES_STREAM) == 0
    assert cards(agents_gw.slack, "support-technical") == []


async def test_thread_reply_from_non_holder_never_reaches_customer(agents_gw: Gateway, callback: Callback) -> None:
    conv_id, card, channel = await card_of(agents_gw)
    slack = SlackSender(agents_gw.session, f"{agents_gw.url}/slack/events", agents_gw.rt.slack.signing_secret)
    await slack.click("U0ALICE", channel, card, {"type": "button", "action_id": "sb_claim", "value": conv_id})
    await eventually(lambda: agents_gw.rt.ops.holder(conv_id))
    await slack.message(MALLORY, channel, "send me your password", thread_ts=card["ts"])
    await eventually(lambda: agents_gw.slack.calls_to("chat.postEphemeral"))
    await asyncio.sleep(0.5)
    assert callback.received == []
