"""Two accounts joined by a shared email are one person for history, never one conversation, on any channel.

A text from the phone on one account's profile joined the person's current conversation, which was the other
account's; the worker then switched that conversation to SMS, so replies about one account were texted to the
other account's owner.
"""

from __future__ import annotations

import redis.asyncio as aioredis

from gateway import keys
from gateway.domain import ChannelKind, CustomerProfile, InboundMessage
from gateway.store import ConversationStore
from tests.harness import Gateway, eventually

SHARED = "billing@acme.example"
BOB_PHONE = "+4917012345678"


async def _routed(gw: Gateway, conv_id: str) -> bool:
    conv = await gw.rt.store.load(conv_id)
    return bool(conv and conv.card_ts)


def _message(channel: ChannelKind, customer_id: str, message_id: str, **profile: str) -> InboundMessage:
    return InboundMessage(channel=channel, customer_id=customer_id, message_id=message_id, text=f"text {message_id}",
                          customer=CustomerProfile(**profile))


async def test_a_text_from_one_accounts_phone_never_joins_the_other_accounts_conversation(
    gateway: Gateway, redis: aioredis.Redis
) -> None:
    await gateway.post_message({"customer_id": "acct-bob", "message_id": "b1", "text": "I was charged twice",
                                "customer": {"email": SHARED, "phone": BOB_PHONE, "name": "Bob"}})
    _, alice = await gateway.post_message({"customer_id": "acct-alice", "message_id": "a1",
                                           "text": "refund my card ending 4242",
                                           "customer": {"email": SHARED, "name": "Alice"}})
    await eventually(lambda: _routed(gateway, alice["conversation_id"]))
    texted = await gateway.rt.store.ingest(_message(ChannelKind.SMS, BOB_PHONE, "SM1"))
    assert texted.conversation_id != alice["conversation_id"]
    assert await redis.get(keys.ident(f"sms:{BOB_PHONE}")) == await redis.get(keys.ident("api:acct-alice"))
    await eventually(lambda: _routed(gateway, texted.conversation_id))
    conv = await gateway.rt.store.load(alice["conversation_id"])
    assert conv is not None and conv.customer.key == "api:acct-alice"  # replies still go to Alice
    assert [m.text for m in conv.inbound] == ["refund my card ending 4242"]
    again = await gateway.rt.store.ingest(_message(ChannelKind.SMS, BOB_PHONE, "SM2"))
    assert again.conversation_id == texted.conversation_id
    _, alice_again = await gateway.post_message({"customer_id": "acct-alice", "message_id": "a2", "text": "news?"})
    assert alice_again["conversation_id"] == alice["conversation_id"]


async def test_an_account_never_joins_the_texted_conversation_of_the_other_account(redis: aioredis.Redis) -> None:
    """The other way round: Alice's own conversation is over, and the person's current one is Bob's SMS one."""
    store = ConversationStore(redis, 4)
    bob = await store.ingest(_message(ChannelKind.API, "acct-bob", "b1", email=SHARED, phone=BOB_PHONE))
    await redis.set(keys.closed(bob.conversation_id), 0)
    texted = await store.ingest(_message(ChannelKind.SMS, BOB_PHONE, "SM1"))
    alice = await store.ingest(_message(ChannelKind.API, "acct-alice", "a1", email=SHARED))
    assert len({bob.conversation_id, texted.conversation_id, alice.conversation_id}) == 3
    assert (await store.ingest(_message(ChannelKind.SMS, BOB_PHONE, "SM2"))).conversation_id == texted.conversation_id
    await redis.set(keys.closed(alice.conversation_id), 0)  # resolved long ago
    later = await store.ingest(_message(ChannelKind.API, "acct-alice", "a2"))
    assert later.conversation_id not in (alice.conversation_id, texted.conversation_id)


async def test_one_account_still_carries_its_conversation_across_channels(redis: aioredis.Redis) -> None:
    """With one account per channel the person is one customer: API, then SMS, then WhatsApp is one conversation,
    also after a second email joins the person."""
    store = ConversationStore(redis, 4)
    first = await store.ingest(_message(ChannelKind.API, "crm-1", "a1", email="jane@example.com", phone=BOB_PHONE))
    texted = await store.ingest(_message(ChannelKind.SMS, BOB_PHONE, "SM1"))
    whatsapp = await store.ingest(_message(ChannelKind.WHATSAPP, BOB_PHONE, "WA1"))
    again = await store.ingest(_message(ChannelKind.API, "crm-1", "a2", email="jane@work.example"))
    assert {texted.conversation_id, whatsapp.conversation_id, again.conversation_id} == {first.conversation_id}
