"""A card gone from Slack (deleted, or the local emulator restarted) is posted again for the next follow-up.

Each follow-up failed with `thread_not_found` ten times, holding the customer's partition for over a minute,
and was parked with no card to say so in: no agent saw it.
"""

from __future__ import annotations

from pathlib import Path

import redis.asyncio as aioredis

from gateway import keys
from tests.conftest import Callback
from tests.harness import Gateway, cards, eventually, make_settings, start_gateway, stored_card
from tests.test_desk import sender


async def test_a_deleted_card_comes_back_with_the_follow_up_under_it(redis: aioredis.Redis, redis_url: str,
                                                                     tmp_path: Path, callback: Callback) -> None:
    gw: Gateway = await start_gateway(make_settings(redis_url, tmp_path, api_callback_url=callback.url))
    try:
        await gw.post_message({"customer_id": "gone-1", "message_id": "g1", "text": "Charged twice. Unacceptable"})
        card, conv_id = await stored_card(gw, "support-billing")
        gw.slack.remove_message(gw.slack.channel("support-billing"), card["ts"])
        await gw.post_message({"customer_id": "gone-1", "message_id": "g2", "text": "hello? anyone there?"})
        (again,) = await eventually(lambda: cards(gw.slack, "support-billing"), timeout=10)
        assert again["ts"] != card["ts"] and "Charged twice" in str(again["blocks"])
        billing = gw.slack.channel_id("support-billing")
        assert await eventually(lambda: ["anyone there" in m.get("text", "") for m in
                                         gw.slack.replies(billing, again["ts"])[1:]] == [True])
        conv = await gw.rt.store.load(conv_id)
        assert conv is not None and conv.card_ts == again["ts"]
        assert await redis.xlen(keys.DEAD) == 0
        # The new thread is indexed: an agent's reply there reaches the customer.
        assert (await gw.rt.ops.claim(conv_id, "U0ALICE")).ok
        await sender(gw).message("U0ALICE", billing, "Refund on its way", thread_ts=again["ts"])
        assert await eventually(lambda: [r for r in callback.received if r["text"] == "Refund on its way"])
    finally:
        await gw.close()
