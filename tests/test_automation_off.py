"""With no bot configured (`SWITCHBOARD_AUTOMATION=off`) nothing is routed to automation, so nothing is handed off.

The router used to pick "automation" for routine questions anyway; the pipeline then found no bot and handed
over, telling every such customer "I'm passing you to a member of our team" when there had been no bot to pass
them from, and leads' dry runs counted conversations "to the bot" that none would ever get.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import redis.asyncio as aioredis

from gateway.domain import ChannelKind, Conversation, Customer, Direction, Message, Scores
from integrations.slack.commands.replay import replay
from router.policy import load_policy
from tests.harness import eventually, make_settings, start_gateway

ROUTINE = "How long does shipping usually take?"


async def test_a_routine_question_goes_to_people_without_a_handoff(redis: aioredis.Redis, redis_url: str,
                                                                  tmp_path: Path) -> None:
    gw = await start_gateway(make_settings(redis_url, tmp_path, automation="off"))
    try:
        status, body = await gw.post_message({"customer_id": "c-nobot", "message_id": "m1", "text": ROUTINE})
        assert status == 202
        card = await eventually(lambda: gw.slack.messages("support-shipping"), timeout=15)
        conv = await gw.rt.store.load(body["conversation_id"])
        assert conv is not None and conv.decision is not None
        assert "no automation configured" in conv.decision.reasons
        assert not any(r.startswith("handoff") for r in conv.decision.reasons)
        assert [m.direction for m in conv.messages] == [Direction.INBOUND]  # no hand-off notice to the customer
        assert "no automation configured" in str(card[0]["blocks"])
    finally:
        await gw.close()


def test_a_dry_run_without_a_bot_sends_nothing_to_it() -> None:
    live = load_policy()
    paused = live.model_copy(update={"automation_paused": True, "version": live.version + 1})
    at = datetime(2026, 11, 25, 11, 0, tzinfo=UTC)
    customer = Customer(key="webchat:c1", channel=ChannelKind.WEBCHAT, external_id="c1")
    conv = Conversation(
        id="conv_1", customer=customer,
        messages=[Message(id="m1", direction=Direction.INBOUND, channel=ChannelKind.WEBCHAT, text=ROUTINE, at=at)],
        scores=Scores(sentiment=0.0, urgency=0.2, skill={s: (0.8 if s == "shipping" else 0.05) for s in live.skills},
                      automation_success=0.9),
    )
    assert replay([conv], live, paused).moves == {("bot", "#support-shipping"): 1}
    without = replay([conv], live, paused, automation=False)
    assert (without.replayed, without.changed) == (1, 0)  # it never went to a bot: pausing changes nothing
