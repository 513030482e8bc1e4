"""Sends the channel is bound to refuse (STOP on SMS, WhatsApp's 24-hour window), through the real gateway,
worker, Redis, the Slack emulator and a Twilio stand-in.

Before: "STOP" was scored and routed like any message (the bot answered it, Twilio refused with 21610 and
a card said so), and an agent's later reply was sent and refused by Twilio."""

from __future__ import annotations

import time

import redis.asyncio as aioredis

from gateway.optout import opt_out_key
from gateway.scheduler import ManualClock
from integrations.twilio.signature import compute
from tests.harness import Gateway, cards, eventually, stored_card
from tests.test_desk import sender
from tests.test_twilio import PUBLIC, TOKEN, sms
from tests.twilio_gateway import sms_gw
from tests.twilio_standin import StandIn

__all__ = ["sms_gw"]


async def _text(gw: Gateway, n: int, body: str, frm: str = "+14155550123") -> None:
    form = sms(sid=f"SM{n:032d}", frm=frm, body=body)
    signed = compute(TOKEN, f"{PUBLIC}/channels/twilio", form.items())
    async with gw.session.post(f"{gw.url}/channels/twilio", data=form, headers={"X-Twilio-Signature": signed}) as r:
        assert r.status == 200


async def test_stop_silences_every_reply_until_start(sms_gw: tuple[Gateway, StandIn], redis: aioredis.Redis) -> None:
    gw, standin = sms_gw
    await _text(gw, 1, "I was charged twice on my invoice")
    card, conv_id = await stored_card(gw, "support-billing")
    channel = gw.slack.channel_id("support-billing")
    assert (await gw.rt.ops.claim(conv_id, "U0ALICE")).ok

    def thread(text: str) -> list[str]:
        return [m["text"] for m in gw.slack.replies(channel, card["ts"]) if text in m["text"]]

    sent_before = len(standin.calls)
    await _text(gw, 2, "STOP")
    (note,) = await eventually(lambda: thread("opted out"))
    assert "*STOP*" in note and "until they text START" in note
    assert await redis.exists(opt_out_key("sms:+14155550123"))
    await sender(gw).message("U0ALICE", channel, "Refunded, sorry about that", thread_ts=card["ts"])
    (refused,) = await eventually(lambda: thread("Not delivered"))
    assert "opted out (texted STOP)" in refused
    assert len(standin.calls) == sent_before  # neither the keyword nor the reply got an answer out

    await _text(gw, 3, "Start")
    await eventually(lambda: thread("replies reach them again"))
    await sender(gw).message("U0ALICE", channel, "Refunded now", thread_ts=card["ts"])
    (sent,) = await eventually(lambda: [c for c in standin.calls if c["form"]["Body"] == "Refunded now"])
    assert sent["form"]["To"] == "+14155550123"


async def test_a_first_message_that_is_stop_gets_no_card_and_no_answer(sms_gw: tuple[Gateway, StandIn],
                                                                       redis: aioredis.Redis) -> None:
    gw, standin = sms_gw
    await _text(gw, 1, "stop", frm="+14155550199")
    await eventually(lambda: redis.exists(opt_out_key("sms:+14155550199")))
    await _text(gw, 2, "Where is my parcel?", frm="+14155550100")  # handled after it (same worker, in order)
    await eventually(lambda: cards(gw.slack, "support-shipping") or standin.calls)
    assert all(c["form"]["To"] != "+14155550199" for c in standin.calls)
    assert all("stop" not in str(c.get("blocks", "")).lower()
               for ch in ("support-billing", "support-general", "support-shipping") for c in cards(gw.slack, ch))


async def test_a_whatsapp_reply_outside_the_24_hour_window_is_refused_at_once(
    sms_gw: tuple[Gateway, StandIn]
) -> None:
    """Business-hours SLAs make it common: Friday evening's message is answered on Monday. The reply showed ✅
    until Twilio reported 63016 (if it had a URL to report to at all)."""
    gw, standin = sms_gw
    await _text(gw, 1, "I was charged twice on my invoice", frm="whatsapp:+14155550123")
    card, conv_id = await stored_card(gw, "support-billing")
    channel = gw.slack.channel_id("support-billing")
    assert (await gw.rt.ops.claim(conv_id, "U0ALICE")).ok
    await sender(gw).message("U0ALICE", channel, "Looking into it", thread_ts=card["ts"])
    await eventually(lambda: [c for c in standin.calls if c["form"]["Body"] == "Looking into it"])
    gw.rt.sla.clock = ManualClock(time.time() + 25 * 3600)  # the next working day
    await sender(gw).message("U0ALICE", channel, "Refunded", thread_ts=card["ts"])
    (refused,) = await eventually(lambda: [m["text"] for m in gw.slack.replies(channel, card["ts"])
                                           if "Not delivered" in m["text"]])
    assert "WhatsApp takes replies only within 24 h of the customer's last message (25h ago)" in refused
    assert not [c for c in standin.calls if c["form"]["Body"] == "Refunded"]


async def test_yes_from_a_customer_who_never_opted_out_is_an_answer(sms_gw: tuple[Gateway, StandIn],
                                                                   redis: aioredis.Redis) -> None:
    """Found in review: "Yes" (Twilio's opt-in word) to an agent's question was swallowed, never threaded,
    and reported as an opt-in. A STOP with a card is threaded too, so the agent sees the customer's words."""
    gw, _ = sms_gw
    await _text(gw, 1, "I was charged twice on my invoice")
    card, _ = await stored_card(gw, "support-billing")
    channel = gw.slack.channel_id("support-billing")

    def thread() -> list[str]:
        return [m["text"] for m in gw.slack.replies(channel, card["ts"])[1:]]

    await _text(gw, 2, "Yes")
    await eventually(lambda: any("Yes" in t for t in thread()))
    assert not any("reach them again" in t for t in thread())
    await _text(gw, 3, "Cancel")
    await eventually(lambda: any("opted out" in t for t in thread()))
    assert any("Cancel" in t and "opted out" not in t for t in thread())
