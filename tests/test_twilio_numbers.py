"""Several numbers on one webhook: the reply goes out from the number the customer wrote to."""

from __future__ import annotations

import redis.asyncio as aioredis

from integrations.twilio.signature import compute
from tests.harness import Gateway, eventually, stored_card
from tests.test_desk import sender
from tests.test_twilio import PUBLIC, SHOP, TOKEN, sms
from tests.twilio_gateway import sms_gw
from tests.twilio_standin import StandIn

__all__ = ["sms_gw"]
SUPPORT_LINE = "+18005550199"


async def test_the_reply_comes_from_the_number_the_customer_texted(sms_gw: tuple[Gateway, StandIn],
                                                                  redis: aioredis.Redis) -> None:
    """It came from TWILIO_FROM_NUMBER, a number the customer had never written to (and whose opt-out list
    and WhatsApp window are not theirs)."""
    gw, standin = sms_gw
    form = {**sms(sid="SM" + "1" * 32, body="I was charged twice on my invoice"), "To": SUPPORT_LINE}
    signed = compute(TOKEN, f"{PUBLIC}/channels/twilio", form.items())
    async with gw.session.post(f"{gw.url}/channels/twilio", data=form, headers={"X-Twilio-Signature": signed}) as r:
        assert r.status == 200
    card, conv_id = await stored_card(gw, "support-billing")
    assert (await gw.rt.ops.claim(conv_id, "U0ALICE")).ok
    await sender(gw).message("U0ALICE", gw.slack.channel_id("support-billing"), "Refunded", thread_ts=card["ts"])
    (sent,) = await eventually(lambda: [c for c in standin.calls if c["form"]["Body"] == "Refunded"])
    assert sent["form"]["From"] == SUPPORT_LINE != SHOP
