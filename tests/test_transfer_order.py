"""Transfers ride the customer's partition stream: ordered with their messages, retried like them.

The emulator fails `chat.postMessage` four times in a row (slack_sdk's three retries included), so the
first attempt to post the new card fails for good and only a retry from the stream can move it.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from tests.conftest import Callback
from tests.harness import Gateway, cards, eventually, make_settings, start_gateway
from tests.slack_requests import SlackSender
from tests.test_desk import card_message, new_card, sender

ALL_SDK_ATTEMPTS = 4


@pytest.fixture
async def gw(redis: aioredis.Redis, redis_url: str, tmp_path: Path, callback: Callback) -> AsyncIterator[Gateway]:
    gateway = await start_gateway(make_settings(redis_url, tmp_path, api_callback_url=callback.url))
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
    gw.slack.fail_next("chat.postMessage", 500, count=ALL_SDK_ATTEMPTS)
    await _transfer(gw, sender(gw), conv_id, card, channel, "technical")
    status, _ = await gw.post_message({"customer_id": "c-1", "message_id": "c-1-m2", "text": "still waiting!!"})
    assert status == 202

    moved = await eventually(lambda: cards(gw.slack, "support-technical"), timeout=30)
    assert len(moved) == 1 and "transferred from billing" in json.dumps(moved[0]["blocks"])
    assert await eventually(lambda: "still waiting" in _thread_texts(gw, "support-technical", moved[0]["ts"]))
    assert "still waiting" not in _thread_texts(gw, "support-billing", card["ts"])
    old = card_message(gw, "support-billing", card["ts"])
    assert "Transferred to" in json.dumps(old) and "actions" not in json.dumps(old["blocks"])
    conv = await gw.rt.store.load(conv_id)
    assert conv is not None and conv.card_ts == moved[0]["ts"]
    assert conv.slack_channel == gw.slack.channel_id("support-technical")
    assert conv.decision is not None and conv.decision.channel == "support-technical"


async def test_a_transfer_overtaken_by_another_posts_no_card_of_its_own(gw: Gateway) -> None:
    conv_id, card, channel = await new_card(gw)
    slack = sender(gw)
    gw.slack.fail_next("chat.postMessage", 500, count=ALL_SDK_ATTEMPTS)
    await _transfer(gw, slack, conv_id, card, channel, "technical")
    # The first move is still failing inside slack_sdk's retries (about 3.5 s of back-off).
    await _transfer(gw, slack, conv_id, card, channel, "shipping")

    moved = await eventually(lambda: cards(gw.slack, "support-shipping"), timeout=30)
    assert len(moved) == 1 and "transferred from technical" in json.dumps(moved[0]["blocks"])
    assert cards(gw.slack, "support-technical") == []
    assert await eventually(lambda: "Transferred to" in json.dumps(card_message(gw, "support-billing", card["ts"])))
    conv = await gw.rt.store.load(conv_id)
    assert conv is not None and conv.card_ts == moved[0]["ts"] and conv.skill == "shipping"
