"""A reply to a customer whose channel this gateway has no credentials for (SMS without Twilio settings)."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis

from gateway import keys
from gateway.domain import ChannelKind, InboundMessage
from gateway.retries import RETRY_KEY
from tests.harness import Gateway, eventually, stored_card
from tests.test_desk import sender


async def test_a_reply_on_a_channel_not_configured_is_refused_at_once(gateway: Gateway, redis: aioredis.Redis) -> None:
    """It was retried for half an hour as if the channel were down, before the agent heard of it."""
    sms = InboundMessage(channel=ChannelKind.SMS, customer_id="+491701234567", message_id="SM1",
                         text="I was charged twice on my invoice")
    await gateway.rt.store.ingest(sms)
    card, conv_id = await stored_card(gateway, "support-billing")
    channel = gateway.slack.channel_id("support-billing")
    assert (await gateway.rt.ops.claim(conv_id, "U0ALICE")).ok
    await sender(gateway).message("U0ALICE", channel, "Refunded", thread_ts=card["ts"])
    (note,) = await eventually(lambda: [m["text"] for m in gateway.slack.replies(channel, card["ts"])
                                        if "Not delivered" in m.get("text", "")])
    assert "refused (no sms channel configured)" in note
    parked: Any = await redis.xrange(keys.DEAD)
    assert [f[b"text"] for _, f in parked] == [b"Refunded"]
    assert await redis.zcard(RETRY_KEY) == 0
