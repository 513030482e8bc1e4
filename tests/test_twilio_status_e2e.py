"""An SMS reply Twilio accepted and later could not deliver: the whole way from Twilio's status callback to
a line in the card's thread, through the real gateway, worker, Redis and the Slack emulator."""

from __future__ import annotations

import json

from integrations.twilio.signature import compute
from tests.harness import Gateway, eventually, stored_card
from tests.test_desk import sender
from tests.test_twilio import PUBLIC, SHOP, SID, TOKEN, sms
from tests.twilio_gateway import sms_gw
from tests.twilio_standin import StandIn

__all__ = ["sms_gw"]


async def test_an_sms_reply_reported_undelivered_is_told_in_the_thread(sms_gw: tuple[Gateway, StandIn]) -> None:
    gw, standin = sms_gw
    async def twilio_post(path: str, form: dict[str, str]) -> int:
        signed = compute(TOKEN, f"{PUBLIC}{path}", form.items())
        async with gw.session.post(f"{gw.url}{path}", data=form, headers={"X-Twilio-Signature": signed}) as r:
            return r.status

    assert await twilio_post("/channels/twilio", sms(body="I was charged twice on my invoice")) == 200
    card, conv_id = await stored_card(gw, "support-billing")
    channel = gw.slack.channel_id("support-billing")
    assert (await gw.rt.ops.claim(conv_id, "U0ALICE")).ok
    await sender(gw).message("U0ALICE", channel, "Refunded, sorry about that", thread_ts=card["ts"])
    (sent,) = await eventually(lambda: [c for c in standin.calls if "Refunded" in c["form"]["Body"]])
    assert sent["form"]["StatusCallback"] == f"{PUBLIC}/channels/twilio/status"

    status = {"MessageSid": f"SM{len(standin.calls):032d}", "MessageStatus": "undelivered", "ErrorCode": "30003",
              "AccountSid": SID, "To": sent["form"]["To"], "From": SHOP}
    assert await twilio_post("/channels/twilio/status", status) == 204

    def told() -> list[str]:
        return [m["text"] for m in gw.slack.replies(channel, card["ts"]) if "could not deliver" in m["text"]]

    (note,) = await eventually(told)
    assert "SMS" in note and "30003: the handset is unreachable" in note
    assert await twilio_post("/channels/twilio/status", status) == 204  # repeated: told once
    assert len(told()) == 1
    assert "could not deliver" not in json.dumps(gw.slack.messages("support-billing"))  # in the thread only
