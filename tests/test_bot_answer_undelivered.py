"""A bot answer the customer's channel did not take is no answer: the hand-off that follows is timed by the SLA.

Found while testing escalations: the answer was written to the transcript before it was sent, so when the channel
refused it (no callback configured here; an SMS provider down elsewhere) the card showed an answer the customer
never got, and the SLA read the conversation as answered: no deadline was planned, so it never re-pinged or
escalated, however long the customer waited.
"""

from __future__ import annotations

from pathlib import Path

import redis.asyncio as aioredis

from gateway.domain import BOT_AUTHOR, Direction
from tests.harness import cards, eventually, make_settings, start_gateway


async def test_an_undelivered_bot_answer_leaves_the_customer_waiting(redis: aioredis.Redis, redis_url: str,
                                                                    tmp_path: Path) -> None:
    gw = await start_gateway(make_settings(redis_url, tmp_path))  # API customers, and no callback URL to reach them
    try:
        status, body = await gw.post_message({"customer_id": "c-undelivered", "message_id": "m1",
                                              "text": "my invoice"})
        assert status == 202
        conv_id = body["conversation_id"]
        card = (await eventually(lambda: cards(gw.slack, "support-billing")))[0]

        async def planned() -> list[object]:
            return list(await gw.rt.sla.scheduler.pending(conv_id))

        assert await eventually(planned)
        conv = await gw.rt.store.load(conv_id)
        assert conv is not None
        assert not [m for m in conv.messages if m.author == BOT_AUTHOR and m.id.startswith("bot-")]
        assert conv.messages[0].direction is Direction.INBOUND
        assert "Every invoice is available" not in str(card["blocks"])
        assert any("bot answer not delivered" in r for r in (conv.decision.reasons if conv.decision else []))
    finally:
        await gw.close()
