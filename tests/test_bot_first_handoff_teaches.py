"""A message the router gave the bot, which it could not answer, teaches the automation learner that it failed.

Found in the learning review: only a bot that had answered before was labelled, so the bot handed off 126 times
while `sb:outcomes` held 1 failure against 35 successes, and the automation model predicted 0.93 success for texts
it never once answered: they kept going to the bot first, and the customer kept waiting for the hand-off.
"""

from __future__ import annotations

from pathlib import Path

import redis.asyncio as aioredis

from gateway.domain import Outcome
from learners.outcomes import labels_of
from tests.conftest import Callback
from tests.harness import cards, eventually, make_settings, outcomes, start_gateway

UNANSWERABLE = "How do I become a reseller?"  # a routine question: the router tries the bot; the KB has no answer


async def test_a_first_hand_off_is_an_automation_failure_label(redis: aioredis.Redis, redis_url: str,
                                                              tmp_path: Path, callback: Callback) -> None:
    gw = await start_gateway(make_settings(redis_url, tmp_path, api_callback_url=callback.url))
    try:
        status, body = await gw.post_message({"customer_id": "c-reseller", "message_id": "m1", "text": UNANSWERABLE})
        assert status == 202
        await eventually(lambda: [c for ch in ("support-general", "support-account", "support-billing")
                                  for c in cards(gw.slack, ch)])
        published = await eventually(lambda: outcomes(redis))
        mine = [Outcome.model_validate(o) for o in published if o["conversation_id"] == body["conversation_id"]]
        assert [(o.kind, o.automation_failed) for o in mine] == [("automation_handoff", True)]
        assert mine[0].text == UNANSWERABLE and "no matching answer" in (mine[0].correction or "")
        assert labels_of(mine[0]).pairs["automation"][1] is False
    finally:
        await gw.close()
