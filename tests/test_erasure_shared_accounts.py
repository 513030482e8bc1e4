"""Whose data an erasure reaches when one person holds several accounts. Through the real gateway, worker,
Redis and the Slack emulator.

Two API accounts that share a verified email (a shared billing mailbox) are one person for history but may be two
people: `DELETE /v1/customers/api:acct-bob` erased Alice's open conversation too, blanked her card and deleted
her profile, because the erasure covered the whole person. Now a ref naming one account erases that account (and
the shared email, which is the requester's data too), keeps the other account's conversations and says so; the
person id still erases everyone, and one human with one account per channel (API and SMS) is erased whole.
"""

from __future__ import annotations

import json
from typing import Any

import redis.asyncio as aioredis

from gateway import keys
from gateway.domain import ChannelKind, InboundMessage
from gateway.redis_conn import as_str
from tests.harness import Gateway, cards, eventually, forget
from tests.test_identity import JANE, _everything_in, _routed, merged_jane
from tests.test_transfer_order import _drained

SHARED = "billing@acme.example"
ALICE_TEXT = "Where is my invoice for March?"
BOB_TEXT = "Please delete my account and all my data"


async def _alice_and_bob(gw: Gateway, redis: aioredis.Redis) -> tuple[str, str]:
    """The finding's repro: two accounts, one mailbox, one open conversation each (Alice's claimed)."""
    _, alice = await gw.post_message({"customer_id": "acct-alice", "message_id": "a-1", "text": ALICE_TEXT,
                                      "customer": {"name": "Alice Shop", "email": SHARED}})
    _, bob = await gw.post_message({"customer_id": "acct-bob", "message_id": "b-1", "text": BOB_TEXT,
                                    "customer": {"name": "Bob Shop", "email": SHARED}})
    assert alice["conversation_id"] != bob["conversation_id"]
    assert await redis.get(keys.ident("api:acct-bob")) == await redis.get(keys.ident("api:acct-alice"))  # one person
    await eventually(lambda: _routed(gw, alice["conversation_id"]))
    await eventually(lambda: _routed(gw, bob["conversation_id"]))
    assert (await gw.rt.ops.claim(alice["conversation_id"], "U0ALICE")).ok
    await eventually(lambda: _drained(gw, redis))
    return alice["conversation_id"], bob["conversation_id"]


def _slack(gw: Gateway) -> str:
    """Every card and thread message in every channel the gateway posted to, as one text."""
    return json.dumps([gw.slack.replies(c, m["ts"]) for c in sorted(gw.slack.channels) for m in gw.slack.messages(c)])


def _card_of(gw: Gateway, conv_id: str) -> dict[str, Any]:
    (card,) = [c for name in sorted(gw.slack.channels) for c in cards(gw.slack, name)
               if c["metadata"]["event_payload"]["conversation_id"] == conv_id]
    return card


async def test_erasing_one_account_keeps_the_other_account_sharing_its_email(
    gateway: Gateway, redis: aioredis.Redis
) -> None:
    alice_conv, bob_conv = await _alice_and_bob(gateway, redis)
    report = await forget(gateway, "api:acct-bob")

    # Alice keeps her conversation, its claim, her card and her profile.
    alice = await gateway.rt.store.load(alice_conv)
    assert alice is not None, "Alice's conversation was erased with Bob's"
    assert [m.text for m in alice.inbound] == [ALICE_TEXT] and alice.claimed_by == "U0ALICE"
    assert alice.customer.profile.name == "Alice Shop"
    alice_card = json.dumps(_card_of(gateway, alice_conv))
    assert "erased" not in alice_card and "Where is my invoice" in alice_card
    # The report says what was kept and why.
    assert report["scope"] == "account" and report["conversations"] == 1
    assert report["accounts_kept"] == ["api:acct-alice"]
    assert any("other account" in line for line in report["kept"])
    # Bob is gone: his conversation, identity, words, name, everywhere in Redis and Slack.
    assert await gateway.rt.store.load(bob_conv) is None
    assert await redis.get(keys.ident("api:acct-bob")) is None
    assert await redis.get(keys.ident(f"email:{SHARED}")) is None  # the shared email is his data too
    left, slack = await _everything_in(redis), _slack(gateway)
    for trace in ("acct-bob", "Bob Shop", "delete my account"):
        assert trace not in left, trace
    for trace in ("Bob Shop", "delete my account"):
        assert trace not in slack, trace
    assert "Customer data erased" in json.dumps(_card_of(gateway, bob_conv))

    # Alice writes again: her own conversation, still hers, under her card.
    _, again = await gateway.post_message({"customer_id": "acct-alice", "message_id": "a-2", "text": "any news?",
                                           "customer": {"name": "Alice Shop", "email": SHARED}})
    assert again["conversation_id"] == alice_conv
    person = await redis.get(keys.ident("api:acct-alice"))
    assert person is not None and await redis.get(keys.ident(f"email:{SHARED}")) == person  # the index heals


async def test_the_person_id_still_erases_every_account_and_a_shared_email_only_itself(
    gateway: Gateway, redis: aioredis.Redis
) -> None:
    """The shared email names both accounts: which of the two asked, nothing tells, so it erases only itself (the
    report names both accounts). The person id is the operator's way to erase everyone, as before."""
    alice_conv, bob_conv = await _alice_and_bob(gateway, redis)
    person = as_str(await redis.get(keys.ident("api:acct-alice")) or b"")
    by_email = await forget(gateway, f"email:{SHARED}")
    assert await gateway.rt.store.load(alice_conv) is not None and await gateway.rt.store.load(bob_conv) is not None
    assert by_email["scope"] == "identifier" and by_email["conversations"] == 0
    assert by_email["accounts_kept"] == ["api:acct-alice", "api:acct-bob"]
    assert await redis.get(keys.ident(f"email:{SHARED}")) is None

    everyone = await forget(gateway, person)
    assert everyone["scope"] == "person" and everyone["conversations"] == 2
    left, slack = await _everything_in(redis), _slack(gateway)
    for trace in ("acct-alice", "acct-bob", "Alice Shop", "Bob Shop", SHARED, "invoice for March", "delete my account"):
        assert trace not in left, trace
        assert trace not in slack, trace


async def test_one_person_on_api_and_sms_is_still_erased_whole(gateway: Gateway, redis: aioredis.Redis) -> None:
    """One account per channel is one human (the carrier vouches for the phone their API profile gave): erasing
    either ref erases both conversations."""
    _, first = await gateway.post_message({"customer_id": "crm-7", "message_id": "a1", "customer": JANE,
                                           "text": "my invoice is wrong"})
    conv_id = first["conversation_id"]
    await eventually(lambda: _routed(gateway, conv_id))
    assert (await gateway.rt.ops.resolve(conv_id, "U0ALICE", skill="billing", urgency=None, mood=None)).ok
    await redis.set(keys.closed(conv_id), 0)  # long resolved: the text starts a second conversation
    texted = await gateway.rt.store.ingest(InboundMessage(
        channel=ChannelKind.SMS, customer_id="+491701234567", message_id="SM1", text="parcel 8812 never came"))
    assert texted.conversation_id != conv_id
    await eventually(lambda: _routed(gateway, texted.conversation_id))
    await eventually(lambda: _drained(gateway, redis))

    report = await forget(gateway, "api:crm-7")
    assert report["conversations"] == 2
    left, slack = await _everything_in(redis), _slack(gateway)
    for trace in ("crm-7", "Jane", "jane@example.com", "1234567", "invoice is wrong", "parcel 8812"):
        assert trace not in left, trace
    for trace in ("Jane", "invoice is wrong", "parcel 8812"):
        assert trace not in slack, trace


async def test_two_accounts_joined_by_a_later_merge_are_each_erased_on_their_own_or_both_by_the_person(
    gateway: Gateway, redis: aioredis.Redis
) -> None:
    """`test_identity`'s merged customer (two API ids joined by a later message carrying the shared email): by
    the same rule, erasing `api:shop-9` leaves `crm-1`'s conversation, and the person id leaves no trace of
    either, the merge log included."""
    person = await merged_jane(gateway, redis)

    shop_only = await forget(gateway, "api:shop-9")
    left = await _everything_in(redis)
    assert "invoice is wrong" in left and await redis.get(keys.ident("api:crm-1")) is not None
    for trace in ("shop-9", "4711"):
        assert trace not in left, trace
    assert shop_only["scope"] == "account" and shop_only["accounts_kept"] == ["api:crm-1"]

    await forget(gateway, person)
    left = await _everything_in(redis)
    for trace in ("jane", "Jane", "1234567", "4711", "invoice is wrong", "hello again", "crm-1", "shop-9"):
        assert trace not in left, trace
