"""A reply Twilio took but whose answer was lost is not sent again: the customer gets one text, not two.

Twilio's Messages API has no idempotency key; before any resend that could double a text the sender looks
the part up among the recent messages to that number (`integrations.twilio.landed`).
"""

from __future__ import annotations

import redis.asyncio as aioredis

from gateway.domain import ChannelKind, Conversation, Customer, Direction, Message
from integrations.twilio import TwilioChannel
from integrations.twilio.signature import compute
from tests.harness import Gateway, eventually, stored_card
from tests.test_desk import sender
from tests.test_twilio import PUBLIC, TOKEN, Env, env, sms
from tests.twilio_gateway import sms_gw
from tests.twilio_standin import TAKEN_THEN_502, TAKEN_THEN_HANG, StandIn

__all__ = ["env", "sms_gw"]
CUSTOMER = "+14155550123"


def _conv() -> Conversation:
    return Conversation(id="conv_once", customer=Customer(key=f"sms:{CUSTOMER}", channel=ChannelKind.SMS,
                                                          external_id=CUSTOMER))


def _reply(text: str = "Your refund is on its way.", mid: str = "msg_once") -> Message:
    return Message(id=mid, direction=Direction.OUTBOUND, channel=ChannelKind.SMS, text=text, author="Alice")


async def test_taken_but_answered_502_is_looked_up_not_sent_again(env: Env) -> None:
    env.standin.script = [TAKEN_THEN_502]
    delivery = await env.channel.send(_conv(), _reply())
    assert delivery.ok and delivery.external_id == env.standin.created[0]["sid"]
    assert len(env.standin.created) == 1 and len(env.standin.calls) == 1 and env.standin.lookups == 1


async def test_taken_but_timed_out_is_looked_up_not_sent_again(env: Env) -> None:
    env.channel.timeout_s = 0.3
    env.standin.script = [TAKEN_THEN_HANG]
    delivery = await env.channel.send(_conv(), _reply())
    assert delivery.ok and [m["body"] for m in env.standin.created] == ["Your refund is on its way."]
    assert len(env.standin.calls) == 1


async def test_a_send_tried_again_later_finds_the_text_an_earlier_attempt_got_out(env: Env) -> None:
    """The worker's own retry, or a worker killed between Twilio's 201 and recording it: same message id."""
    first = await env.channel.send(_conv(), _reply())
    again = await env.channel.send(_conv(), _reply())
    assert first.ok and again.ok and again.external_id == first.external_id
    assert len(env.standin.created) == 1 and env.standin.lookups == 1


async def test_answers_that_say_nothing_was_taken_are_retried_without_a_lookup(env: Env) -> None:
    env.standin.script = [429, 500]  # a 429 was refused; a 500 may not have been: looked up before the resend
    delivery = await env.channel.send(_conv(), _reply())
    assert delivery.ok and len(env.standin.created) == 1 and env.standin.lookups == 1


async def test_an_older_text_with_the_same_words_is_not_taken_for_this_one(env: Env) -> None:
    """"Thanks!" sent a minute ago is not this reply's "Thanks!": this one still goes out."""
    assert (await env.channel.send(_conv(), _reply("Thanks!", "msg_a"))).ok
    env.standin.created[0]["date_created"] = "Sat, 05 Dec 2020 03:24:50 +0000"
    env.standin.script = [500]
    delivery = await env.channel.send(_conv(), _reply("Thanks!", "msg_b"))
    assert delivery.ok and env.standin.lookups == 1
    assert [m["body"] for m in env.standin.created] == ["Thanks!", "Thanks!"]
    assert delivery.external_id == env.standin.created[1]["sid"]


async def test_a_lookup_that_fails_sends_again_rather_than_lose_the_reply(env: Env) -> None:
    """At least once: a text twice beats a reply the customer never gets."""
    env.standin.list_status = 503
    env.standin.script = [TAKEN_THEN_502]
    delivery = await env.channel.send(_conv(), _reply())
    assert delivery.ok and env.standin.lookups == 1 and len(env.standin.created) == 2


async def test_an_agent_reply_taken_but_timed_out_reaches_the_customer_once(
    sms_gw: tuple[Gateway, StandIn], redis: aioredis.Redis
) -> None:
    """Through the whole gateway: the worker's send times out after Twilio queued the text."""
    gw, standin = sms_gw
    channel = gw.rt.pipeline.channels[ChannelKind.SMS]
    assert isinstance(channel, TwilioChannel)
    channel.timeout_s = 0.5
    async with gw.session.post(f"{gw.url}/channels/twilio", data=(form := sms(body="I was charged twice")),
                               headers={"X-Twilio-Signature": compute(TOKEN, f"{PUBLIC}/channels/twilio",
                                                                      form.items())}) as r:
        assert r.status == 200
    card, conv_id = await stored_card(gw, "support-billing")
    assert (await gw.rt.ops.claim(conv_id, "U0ALICE")).ok
    standin.script = [TAKEN_THEN_HANG]
    await sender(gw).message("U0ALICE", gw.slack.channel_id("support-billing"), "Refunded", thread_ts=card["ts"])
    await eventually(lambda: standin.lookups >= 1)
    await eventually(lambda: [c for c in gw.slack.calls_to("reactions.add")
                              if c.params.get("name") == "white_check_mark"])
    assert [m["body"] for m in standin.created if m["body"] == "Refunded"] == ["Refunded"]
