"""A WhatsApp location shared through Twilio, through the real server and the whole gateway.

Before: it has no Body, so the webhook took it for an empty message, answered 200 (Twilio never resends) and
stored nothing; the customer's "deliver it here" never reached the agent. The same pin through Meta's Cloud
API was kept as `[location lat,long name, address]`, which is the form agents now see for both.
"""

from __future__ import annotations

import redis.asyncio as aioredis

from integrations.twilio.signature import compute
from integrations.whatsapp.payload import WaMessage
from integrations.whatsapp.payload import message_text as meta_text
from tests.harness import Gateway, eventually, stored_card, transcript_of
from tests.test_twilio import PUBLIC, SHOP, TOKEN, Env, env, sms
from tests.twilio_gateway import sms_gw
from tests.twilio_standin import StandIn

__all__ = ["env", "sms_gw"]

CUSTOMER = "whatsapp:+4917155555555"


def _location(sid: str, **pin: str) -> dict[str, str]:
    """Twilio's form for a shared pin: an empty Body, NumMedia 0, and the pin's fields."""
    return sms(sid=sid, frm=CUSTOMER, body="") | {"To": f"whatsapp:{SHOP}", "ProfileName": "Tom", **pin}


PIN = {"Latitude": "52.5200", "Longitude": "13.4050", "Address": "Alexanderplatz 1, Berlin", "Label": "Home"}


async def test_a_shared_location_is_stored_as_meta_renders_it(env: Env) -> None:
    resp = await env.post(_location("SM" + "1" * 32, **PIN))
    assert resp.status == 200
    [line] = await env.transcript(CUSTOMER)
    assert line["channel"] == "whatsapp" and line["external_id"] == "SM" + "1" * 32
    meta = meta_text(WaMessage.model_validate({
        "from": "4917155555555", "id": "wamid.1", "timestamp": "1700000000", "type": "location",
        "location": {"latitude": 52.52, "longitude": 13.405, "name": "Home", "address": "Alexanderplatz 1, Berlin"},
    }))
    assert line["text"] == meta == "[location 52.52,13.405 Home, Alexanderplatz 1, Berlin]"


async def test_a_bare_pin_and_a_pin_with_a_caption(env: Env) -> None:
    assert (await env.post(_location("SM" + "2" * 32, Latitude="-33.8688", Longitude="151.2093"))).status == 200
    pinned = sms(sid="SM" + "3" * 32, frm=CUSTOMER, body="the back door, please") | {
        "To": f"whatsapp:{SHOP}", "Latitude": "48.1374", "Longitude": "11.5755", "Label": "  "}
    assert (await env.post(pinned)).status == 200
    texts = [m["text"] for m in await env.transcript(CUSTOMER)]
    assert texts == ["[location -33.8688,151.2093]", "the back door, please\n[location 48.1374,11.5755]"]


async def test_an_empty_message_is_still_ignored(env: Env) -> None:
    """Only a pin with both coordinates is a message: a half pin (or nothing at all) stays ignored as before."""
    assert (await env.post(_location("SM" + "4" * 32, Latitude="52.52"))).status == 200
    assert await env.transcript(CUSTOMER) == []


async def test_a_location_reaches_the_agent_in_the_cards_thread(
    sms_gw: tuple[Gateway, StandIn], redis: aioredis.Redis
) -> None:
    gw, _ = sms_gw

    async def post(form: dict[str, str]) -> None:
        signed = compute(TOKEN, f"{PUBLIC}/channels/twilio", form.items())
        async with gw.session.post(f"{gw.url}/channels/twilio", data=form,
                                   headers={"X-Twilio-Signature": signed}) as r:
            assert r.status == 200

    await post(sms(sid="SM" + "5" * 32, frm=CUSTOMER, body="My parcel never arrived, where is my order?")
               | {"To": f"whatsapp:{SHOP}"})
    card, _ = await stored_card(gw, "support-shipping")
    await post(_location("SM" + "6" * 32, **PIN))
    channel = gw.slack.channel_id("support-shipping")
    (threaded,) = await eventually(
        lambda: [m["text"] for m in gw.slack.replies(channel, card["ts"]) if "[location" in m["text"]])
    assert "52.52,13.405 Home, Alexanderplatz 1, Berlin" in threaded
    assert [m["text"] for m in await transcript_of(redis, CUSTOMER)][-1].startswith("[location 52.52,13.405")
