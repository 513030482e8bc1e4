"""After an undone merge, a customer whose own conversation is resolved stays out of the other's open one.

Found in review: Bob (SMS) had resolved his conversation; an API message for Alice carried Bob's phone by mistake
and joined them. Bob's next text went into Alice's open conversation (his own was closed), which pointed his number
at it and switched its replies to his phone. A lead undid the merge, but the undo left his number pointing there
and the conversation replying to his phone: his next text landed in Alice's conversation again (and it joined his
history), and the agent's reply in Alice's thread was texted to him.

Through the real gateway, worker, Redis, the Slack emulator (the lead's `/switchboard unmerge`), a Twilio stand-in
and the API callback.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from aiohttp import web

from gateway import keys
from gateway.redis_conn import as_str
from tests.conftest import Callback
from tests.harness import Gateway, cards, eventually, make_settings, serve_app, start_gateway
from tests.test_commands_support import Slash
from tests.test_desk import sender
from tests.test_optout import _text
from tests.test_twilio import PUBLIC, SHOP, SID, TOKEN
from tests.twilio_standin import StandIn

PHONE = "+491701234567"
AGENT, LEAD = "U0ALICE", "U0CAROL"  # the Slack emulator's agent and lead


@pytest.fixture
async def gw(redis: aioredis.Redis, redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
             callback: Callback) -> AsyncIterator[tuple[Gateway, StandIn]]:
    """The real gateway with Twilio (a stand-in of its Messages API), the API callback and a team lead; no bot, so
    every message has a card whatever the bot would make of it (with one, a CI run at 23:08 on a Saturday saw the
    bot keep Alice's first message, and her card never came)."""
    standin = StandIn(url="")
    twilio_app = web.Application()
    standin.mount(twilio_app)
    standin.url, twilio_runner = await serve_app(twilio_app)
    for name, value in {"TWILIO_AUTH_TOKEN": TOKEN, "TWILIO_ACCOUNT_SID": SID, "TWILIO_FROM_NUMBER": SHOP,
                        "TWILIO_API_URL": standin.url, "SWITCHBOARD_PUBLIC_URL": PUBLIC}.items():
        monkeypatch.setenv(name, value)
    gateway = await start_gateway(make_settings(redis_url, tmp_path, api_callback_url=callback.url,
                                                agents_raw=AGENT, leads_raw=LEAD, automation="off"))
    yield gateway, standin
    await gateway.close()
    await twilio_runner.cleanup()


@dataclass
class Undone:
    alice_conv: str
    bob_conv: str
    bob_person: str
    alice_card: dict[str, Any]
    channel: str


async def _card(gw: Gateway, conv_id: str) -> dict[str, Any]:
    """The card of the conversation, once the conversation is stored with it."""

    async def stored() -> dict[str, Any] | None:
        conv = await gw.rt.store.load(conv_id)
        found = [c for c in cards(gw.slack, "support-billing")
                 if c["metadata"]["event_payload"]["conversation_id"] == conv_id]
        return found[-1] if found and conv is not None and conv.card_ts else None

    card: dict[str, Any] = await eventually(stored)
    return card


async def _transcript(redis: aioredis.Redis, conv_id: str) -> list[str]:
    return [json.loads(raw)["text"] for raw in await redis.lrange(keys.transcript(conv_id), 0, -1)]


async def _convs(redis: aioredis.Redis, person: str) -> set[str]:
    return {as_str(c) for c in await redis.zrange(keys.person_conversations(person), 0, -1)}


async def _customer_key(gw: Gateway, conv_id: str) -> str:
    conv = await gw.rt.store.load(conv_id)
    assert conv is not None
    return conv.customer.key


async def _merged_while_bobs_was_resolved_then_undone(gw: Gateway, redis: aioredis.Redis,
                                                      same_second: bool = False) -> Undone:
    """`same_second`: Alice's conversation starts in the second of the merge (her next message joins them);
    otherwise a second before it."""
    await _text(gw, 1, "I was charged twice on my invoice", frm=PHONE)
    bob_conv = as_str(await eventually(lambda: redis.get(keys.customer_conversation(f"sms:{PHONE}"))))
    await _card(gw, bob_conv)
    bob_person = as_str(await redis.get(keys.ident(f"sms:{PHONE}")))
    assert (await gw.rt.ops.claim(bob_conv, AGENT)).ok
    assert (await gw.rt.ops.resolve(bob_conv, AGENT, skill="billing", urgency=None, mood=None)).ok
    await eventually(lambda: redis.exists(keys.closed(bob_conv)))

    if same_second:
        await asyncio.sleep(1.01 - time.time() % 1)
    status, body = await gw.post_message({"customer_id": "alice", "message_id": "a1",
                                          "text": "My invoice shows the wrong amount, please refund it"})
    assert status == 202, body
    alice_conv = str(body["conversation_id"])
    if not same_second:
        await _card(gw, alice_conv)
        await asyncio.sleep(1.01 - time.time() % 1)
    # Alice's system sends Bob's phone on her profile by mistake: the two are joined.
    status, body = await gw.post_message({"customer_id": "alice", "message_id": "a2", "text": "any news?",
                                          "customer": {"phone": PHONE}})
    assert status == 202 and body["conversation_id"] == alice_conv, body
    alice_card = await _card(gw, alice_conv)
    await eventually(lambda: redis.xlen(keys.MERGES))
    merges: Any = await redis.xrange(keys.MERGES)
    ((record, _),) = merges

    # Bob's own conversation is resolved: while merged, his text joins Alice's open one, and its replies follow him.
    await _text(gw, 2, "hello again, a second charge appeared", frm=PHONE)
    assert await eventually(lambda: redis.get(keys.customer_conversation(f"sms:{PHONE}"))) == alice_conv.encode()

    async def switched() -> bool:
        return await _customer_key(gw, alice_conv) == f"sms:{PHONE}"

    await eventually(switched)

    done = await Slash(gw).text(f"unmerge {as_str(record)}", user=LEAD)
    assert done.startswith(f"↩️ Merge `{as_str(record)}` undone"), done
    assert as_str(await redis.get(keys.ident(f"sms:{PHONE}"))) == bob_person
    return Undone(alice_conv, bob_conv, bob_person, alice_card, gw.slack.channel_id("support-billing"))


async def _bobs_next_text_stays_his(gw: Gateway, redis: aioredis.Redis, undone: Undone) -> None:
    text = "still charged twice, please check"
    await _text(gw, 3, text, frm=PHONE)

    async def landed() -> str | None:
        for conv in (undone.alice_conv, *await _convs(redis, undone.bob_person)):
            if text in await _transcript(redis, conv):
                return conv
        return None

    conv = await eventually(landed)
    assert conv != undone.alice_conv
    assert conv == undone.bob_conv  # his own, resolved within the reopen window: reopened
    assert text not in await _transcript(redis, undone.alice_conv)
    assert undone.alice_conv not in await _convs(redis, undone.bob_person)
    assert as_str(await redis.get(keys.customer_conversation(f"sms:{PHONE}"))) == undone.bob_conv


async def test_after_the_undo_bobs_next_text_lands_in_his_own_conversation(
    gw: tuple[Gateway, StandIn], redis: aioredis.Redis
) -> None:
    gateway, _ = gw
    undone = await _merged_while_bobs_was_resolved_then_undone(gateway, redis)
    await _bobs_next_text_stays_his(gateway, redis, undone)


async def test_the_undo_leaves_alice_the_conversation_she_started_in_the_merges_second(
    gw: tuple[Gateway, StandIn], redis: aioredis.Redis
) -> None:
    """It replied to Bob's phone since his text: the undo took it for one Bob started while merged (as for one
    started after the merge) and gave it to him; his next text landed in it, her next message started another."""
    gateway, _ = gw
    undone = await _merged_while_bobs_was_resolved_then_undone(gateway, redis, same_second=True)
    alice = as_str(await redis.get(keys.ident("api:alice")))
    assert undone.alice_conv in await _convs(redis, alice)
    await _bobs_next_text_stays_his(gateway, redis, undone)
    status, body = await gateway.post_message({"customer_id": "alice", "message_id": "a3", "text": "hello?"})
    assert status == 202 and body["conversation_id"] == undone.alice_conv, body


async def test_the_ingest_ignores_a_channel_pointer_at_another_persons_conversation(
    gw: tuple[Gateway, StandIn], redis: aioredis.Redis
) -> None:
    """A number left pointing at the other customer's conversation (as an undo of an earlier version left it)."""
    gateway, _ = gw
    undone = await _merged_while_bobs_was_resolved_then_undone(gateway, redis)
    await redis.set(keys.customer_conversation(f"sms:{PHONE}"), undone.alice_conv)
    await _bobs_next_text_stays_his(gateway, redis, undone)


async def test_after_the_undo_a_reply_in_alices_thread_goes_to_alice_not_to_bobs_phone(
    gw: tuple[Gateway, StandIn], redis: aioredis.Redis, callback: Callback
) -> None:
    gateway, standin = gw
    undone = await _merged_while_bobs_was_resolved_then_undone(gateway, redis)
    assert (await gateway.rt.ops.claim(undone.alice_conv, AGENT)).ok
    texted = len(standin.calls)
    reply = "Refunded the wrong amount, sorry Alice"
    await sender(gateway).message(AGENT, undone.channel, reply, thread_ts=undone.alice_card["ts"])

    def delivered() -> tuple[list[dict[str, Any]], list[dict[str, Any]]] | None:
        to_alice = [r for r in callback.received if r["text"] == reply]
        to_phone = [c for c in standin.calls[texted:] if c["form"].get("Body") == reply]
        return (to_alice, to_phone) if to_alice or to_phone else None

    to_alice, to_phone = await eventually(delivered)
    assert to_phone == [], "Alice's agent's reply was texted to Bob's phone"
    assert [r["conversation_id"] for r in to_alice] == [undone.alice_conv]
    assert await _customer_key(gateway, undone.alice_conv) == "api:alice"
