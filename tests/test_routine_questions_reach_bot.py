"""Routine questions the default KB answers reach the bot even without a skill keyword.

"Can I pay with PayPal?", "Do you ship to Canada?", "How do I unsubscribe from the newsletter?" scored 0.58 with
the cold-start rules (no policy keyword caps the prior under the 0.6 floor), so each became a card and an API or
SMS customer heard nothing until a person opened. A routine-question opener now counts; a problem asked as a
how-to ("how do I file a complaint?"), a request for a person, or an angry, urgent or long message still stays
under the floor. Scores against the shipped policy's thresholds; the pipeline through the real gateway.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from integrations.automation.acknowledge import REPLY
from learners.coldstart import ColdStartScorer
from router.policy import load_policy
from tests.conftest import Callback
from tests.harness import Gateway, cards, eventually, make_settings, outcomes, start_gateway

POLICY = load_policy()
FLOOR = POLICY.thresholds.automation_success_floor
SCORER = ColdStartScorer()


def auto(text: str) -> float:
    return SCORER.score(text, POLICY.skill_keywords()).automation_success


@pytest.mark.parametrize(
    "text",
    [
        "Can I pay with PayPal?",
        "How do I unsubscribe from the newsletter?",
        "How can I leave a review?",
        "Do you ship to Canada?",
        "Hi, do you take Apple Pay",
        "where can I submit feedback",
    ],
)
def test_a_calm_routine_question_without_a_skill_keyword_clears_the_floor(text: str) -> None:
    assert auto(text) >= FLOOR


@pytest.mark.parametrize(
    "text",
    [
        "how do I make a complaint?",  # a problem, asked as a how-to
        "where can I report a trouble with payments?",
        "can i speak with somebody from customer service?",  # a request for a person
        "Do you ship to Canada? This is ridiculous",  # angry
        "Can I pay with PayPal? I need it urgently",  # urgent
        "can I pay again, it failed and the order is stuck",  # describes a problem
        "So what now",  # no routine opener, no keyword
    ],
)
def test_problems_people_and_unclear_messages_stay_under_the_floor(text: str) -> None:
    assert auto(text) < FLOOR


@pytest.fixture
async def gw(redis: aioredis.Redis, redis_url: str, tmp_path: Path, callback: Callback) -> AsyncIterator[Gateway]:
    gateway = await start_gateway(make_settings(redis_url, tmp_path, api_callback_url=callback.url))
    yield gateway
    await gateway.close()


async def test_paypal_question_is_answered_by_the_bot_and_the_thanks_too(
    gw: Gateway, redis: aioredis.Redis, callback: Callback
) -> None:
    status, body = await gw.post_message({"customer_id": "pp-1", "message_id": "m1", "text": "Can I pay with PayPal?"})
    assert status == 202
    await eventually(lambda: callback.received)
    assert "PayPal" in callback.received[0]["text"] and "member of our team" not in callback.received[0]["text"]
    await gw.post_message({"customer_id": "pp-1", "message_id": "m2", "text": "ok thanks"})
    await eventually(lambda: len(callback.received) == 2)
    assert callback.received[1]["text"] == REPLY
    conv = await gw.rt.store.load(body["conversation_id"])
    assert conv is not None and conv.card_ts is None
    assert [c for channel in POLICY.channels() for c in cards(gw.slack, channel)] == []
    assert await outcomes(redis) == []
