"""Single customer view: one person across channels, history on the card, CSAT, merges, erasure."""

from __future__ import annotations

import json
from typing import Any

import pytest
import redis.asyncio as aioredis

from gateway import csat, dead_letters, keys
from gateway.identity import Identity
from gateway.redis_conn import as_str
from integrations.webhook.signature import sign
from tests.conftest import Callback
from tests.harness import API_SECRET, Gateway, cards, eventually, forget, outcomes
from tests.test_transfer_order import _drained

JANE = {"name": "Jane Doe", "email": "jane@example.com", "phone": "+49 170 1234567"}


async def _routed(gw: Gateway, conv_id: str) -> bool:
    conv = await gw.rt.store.load(conv_id)
    return bool(conv and conv.card_ts)


async def test_verified_email_joins_two_api_ids_and_card_shows_history(gateway: Gateway) -> None:
    _, first = await gateway.post_message({"customer_id": "crm-1", "message_id": "a1", "customer": JANE,
                                           "text": "my invoice is wrong"})
    await eventually(lambda: _routed(gateway, first["conversation_id"]))
    await gateway.rt.ops.resolve(first["conversation_id"], "U0ALICE", skill="billing", urgency=None, mood=None)
    await gateway.rt.redis.set(keys.closed(first["conversation_id"]), 0)  # resolved long ago: a new conversation
    # Another system knows her by another id but the same verified email: same person.
    _, second = await gateway.post_message({"customer_id": "shop-9", "message_id": "b1",
                                            "customer": {"email": "JANE@example.com"},
                                            "text": "my parcel never arrived"})
    assert second["conversation_id"] != first["conversation_id"]
    await eventually(lambda: _routed(gateway, second["conversation_id"]))
    first_conv = await gateway.rt.store.load(first["conversation_id"])
    second_conv = await gateway.rt.store.load(second["conversation_id"])
    assert first_conv and second_conv
    assert first_conv.customer.person_id == second_conv.customer.person_id
    card = next(c for c in cards(gateway.slack, "support-shipping"))
    text = json.dumps(card["blocks"])
    assert "Earlier conversations" in text and first["conversation_id"] in text and "resolved" in text


async def test_unverified_webchat_email_never_merges(gateway: Gateway, redis: aioredis.Redis) -> None:
    from gateway.domain import ChannelKind, CustomerProfile, InboundMessage

    await gateway.post_message({"customer_id": "crm-1", "message_id": "a1", "customer": JANE, "text": "hello"})
    visitor = InboundMessage(channel=ChannelKind.WEBCHAT, customer_id="v-anon", message_id="w1", text="hi",
                             customer=CustomerProfile(email="jane@example.com"))
    accepted = await gateway.rt.store.ingest(visitor)
    a = await redis.get(keys.ident("api:crm-1"))
    w = await redis.get(keys.ident("webchat:v-anon"))
    assert a and w and a != w
    assert accepted.conversation_id


async def test_customer_moving_from_api_to_sms_continues_the_conversation(gateway: Gateway) -> None:
    _, first = await gateway.post_message({"customer_id": "crm-1", "message_id": "a1", "customer": JANE,
                                           "text": "my invoice is wrong"})
    await eventually(lambda: _routed(gateway, first["conversation_id"]))
    from gateway.domain import ChannelKind, InboundMessage

    sms = InboundMessage(channel=ChannelKind.SMS, customer_id="+491701234567", message_id="SM1",
                         text="also, I texted you from my phone")
    accepted = await gateway.rt.store.ingest(sms)
    assert accepted.conversation_id == first["conversation_id"]

    async def switched() -> bool:
        conv = await gateway.rt.store.load(first["conversation_id"])
        return bool(conv and conv.customer.channel is ChannelKind.SMS)

    await eventually(switched)
    card = cards(gateway.slack, "support-billing")[0]
    reply = await eventually(lambda: gateway.slack.replies("support-billing", card["ts"])[1:])
    assert "(sms)" in reply[0]["text"]


async def test_merge_is_recorded_and_reversible(gateway: Gateway, redis: aioredis.Redis) -> None:
    await gateway.post_message({"customer_id": "crm-1", "message_id": "a1", "text": "hello",
                                "customer": {"email": "jane@example.com"}})
    await gateway.post_message({"customer_id": "crm-2", "message_id": "b1", "text": "hi",
                                "customer": {"phone": "+491701234567"}})
    p1, p2 = await redis.get(keys.ident("api:crm-1")), await redis.get(keys.ident("api:crm-2"))
    assert p1 != p2
    # One message proves both facts belong to one person: the two are merged.
    await gateway.post_message({"customer_id": "crm-3", "message_id": "c1", "text": "it's me",
                                "customer": {"email": "jane@example.com", "phone": "+491701234567"}})
    merges = await eventually(lambda: redis.xrange(keys.MERGES))
    assert await redis.get(keys.ident("api:crm-2")) == p1 == await redis.get(keys.ident("phone:+491701234567"))
    record = merges[0][0].decode()
    assert await Identity(redis).unmerge(record)
    assert await redis.get(keys.ident("api:crm-2")) == p2


async def test_csat_reply_after_resolution_is_recorded_not_reopened(
    redis: aioredis.Redis, redis_url: str, tmp_path, callback: Callback
) -> None:
    from tests.harness import make_settings, start_gateway

    gw = await start_gateway(make_settings(redis_url, tmp_path, api_callback_url=callback.url))
    try:
        text = "my invoice is wrong, a person please"
        _, body = await gw.post_message({"customer_id": "c9", "message_id": "m1", "text": text})
        await eventually(lambda: _routed(gw, body["conversation_id"]))
        await gw.rt.ops.resolve(body["conversation_id"], "U0ALICE", skill="billing", urgency=None, mood=None)
        await csat.ask(redis, body["conversation_id"], "resolve-1")  # what Resolve does with "ask for a rating"
        await gw.post_message({"customer_id": "c9", "message_id": "m2", "text": "5"})
        thanks = await eventually(lambda: [r for r in callback.received if "rating" in r["text"]])
        assert thanks
        conv = await gw.rt.store.load(body["conversation_id"])
        assert conv is not None and conv.csat == 5 and conv.state.value == "resolved"
        published = await outcomes(redis)
        assert [o.get("csat") for o in published if o.get("csat")] == [5]
        # Asked once, answered once: a later lone "2" is the customer writing again, not a second rating.
        await gw.post_message({"customer_id": "c9", "message_id": "m3", "text": "2"})

        async def reopened() -> bool:
            latest = await gw.rt.store.load(body["conversation_id"])
            return latest is not None and latest.state.value == "waiting"

        assert await eventually(reopened)
        assert [o.get("csat") for o in await outcomes(redis) if o.get("csat")] == [5]
    finally:
        await gw.close()


async def _transferred_and_resolved(gateway: Gateway) -> str:
    """Jane's conversation: a card in billing, moved to technical (so two cards quote her), resolved."""
    _, body = await gateway.post_message({"customer_id": "crm-1", "message_id": "a1", "customer": JANE,
                                          "text": "my invoice is wrong"})
    conv_id = body["conversation_id"]
    await eventually(lambda: _routed(gateway, conv_id))
    await gateway.post_message({"customer_id": "crm-1", "message_id": "a2", "text": "hello again?"})
    card = cards(gateway.slack, "support-billing")[0]
    await eventually(lambda: gateway.slack.replies("support-billing", card["ts"])[1:])
    # Transferred: the old card's thread keeps the customer's text, so the erasure must find it too.
    assert (await gateway.rt.ops.transfer(conv_id, "U0ALICE", "technical")).ok
    (moved,) = await eventually(lambda: cards(gateway.slack, "support-technical"))
    await gateway.post_message({"customer_id": "crm-1", "message_id": "a3", "text": "still double charged"})
    await eventually(lambda: gateway.slack.replies("support-technical", moved["ts"])[1:])
    await gateway.rt.ops.resolve(conv_id, "U0ALICE", skill="billing", urgency=None, mood="negative")
    return conv_id


@pytest.mark.parametrize("index_lost", [False, True], ids=["indexed", "index-lost"])
async def test_forget_erases_everywhere(gateway: Gateway, redis: aioredis.Redis, index_lost: bool) -> None:
    """`index-lost`: the list of the conversation's cards is gone (cards from before it existed, or one an
    escalation posted just before a crash): `deep` finds the old card in the channel's history instead."""
    conv_id = await _transferred_and_resolved(gateway)
    assert await redis.lrange(keys.RECENT, 0, -1)
    if index_lost:
        assert await redis.delete(keys.cards(conv_id)) == 1

    path = "/v1/customers/email:jane@example.com"
    async with gateway.session.delete(f"{gateway.url}{path}", headers={"X-Switchboard-Signature": "t=1,v1=x"}) as r:
        assert r.status == 401
    report = await forget(gateway, "email:jane@example.com", deep=index_lost)
    signed = json.dumps({"customer": "email:jane@example.com", "deep": index_lost}).encode()  # again: gone now
    assert report["conversations"] == 1 and report["messages"] == 3
    for pattern in ("sb:conv:*", "sb:ident:*", "sb:person:*", "sb:dedupe:*", "sb:cust:*"):
        assert await redis.keys(pattern) == [], pattern
    assert await redis.lrange(keys.RECENT, 0, -1) == []
    assert all(o["conversation_id"] != conv_id for o in await outcomes(redis))
    everything = json.dumps([gateway.slack.messages(c) + gateway.slack.replies(c, m["ts"])
                             for c in ("support-billing", "support-technical") for m in gateway.slack.messages(c)])
    for text in ("invoice is wrong", "hello again", "still double charged"):
        assert text not in everything
    assert "Customer data erased" in everything
    async with gateway.session.delete(f"{gateway.url}{path}", data=signed,
                                      headers={"X-Switchboard-Signature": sign(API_SECRET, signed)}) as r:
        assert r.status == 404


async def test_a_deep_erasure_that_cannot_read_a_channel_still_erases_and_says_so(
    gateway: Gateway, redis: aioredis.Redis
) -> None:
    await _transferred_and_resolved(gateway)
    gateway.slack.fail_next("conversations.history", 400, count=100)  # e.g. missing scope, rate limited
    path = "/v1/customers/email:jane@example.com?deep=1"  # deep asked for in the query this time
    signed = json.dumps({"customer": "email:jane@example.com"}).encode()
    async with gateway.session.delete(f"{gateway.url}{path}", data=signed,
                                      headers={"X-Switchboard-Signature": sign(API_SECRET, signed)}) as r:
        report = await r.json()
        assert r.status == 200, report
    assert report["conversations"] == 1 and await redis.keys("sb:conv:*") == []
    assert any("not searched" in line for line in report["kept"])
    everything = json.dumps([gateway.slack.replies(c, m["ts"])
                             for c in ("support-billing", "support-technical") for m in gateway.slack.messages(c)])
    assert "invoice is wrong" not in everything  # the listed cards were erased all the same


async def test_returning_customer_goes_back_to_the_previous_agent(gateway: Gateway) -> None:
    _, first = await gateway.post_message({"customer_id": "ret-1", "message_id": "a1", "text": "my invoice is wrong"})
    await eventually(lambda: _routed(gateway, first["conversation_id"]))
    assert (await gateway.rt.ops.claim(first["conversation_id"], "U0ALICE")).ok
    await gateway.rt.ops.resolve(first["conversation_id"], "U0ALICE", skill="billing", urgency=None, mood=None)
    await gateway.rt.redis.set(keys.closed(first["conversation_id"]), 0)  # long closed: a new conversation
    _, second = await gateway.post_message({"customer_id": "ret-1", "message_id": "a2",
                                            "text": "the refund for my invoice has not arrived"})
    assert second["conversation_id"] != first["conversation_id"]
    await eventually(lambda: _routed(gateway, second["conversation_id"]))
    card = cards(gateway.slack, "support-billing")[-1]
    text = json.dumps(card["blocks"])
    assert "returning customer: previous agent U0ALICE available" in text
    assert "Suggested agent: <@U0ALICE>" in text


async def test_bot_resolution_by_silence_and_failure_on_comeback(
    redis: aioredis.Redis, redis_url: str, tmp_path, callback: Callback
) -> None:
    from tests.harness import bot_answered, make_settings, start_gateway

    gw = await start_gateway(make_settings(redis_url, tmp_path, api_callback_url=callback.url))
    try:
        follow, clock, conv_id = await bot_answered(gw, "q-1")
        assert callback.received
        assert await follow.tick() == 0
        clock.advance(follow.quiet_s + 1)
        assert await follow.tick() == 1
        conv = await gw.rt.store.load(conv_id)
        assert conv is not None and conv.state.value == "resolved"
        kinds = [o["kind"] for o in await outcomes(redis)]
        assert kinds == ["automation_resolved"]
        assert conv.scores is not None
        answered_on = conv.scores.model_dump(mode="json")
        # The customer comes back: that success was not one.
        comeback = "it still has not arrived, I want a person"
        # Slack refuses its card a few times: each retry of the message published another failure label.
        gw.slack.fail_next("chat.postMessage", 500, count=3)
        await gw.post_message({"customer_id": "q-1", "message_id": "m2", "text": comeback})
        await eventually(lambda: cards(gw.slack, "support-shipping") or cards(gw.slack, "support-general"),
                         timeout=30)
        published = await outcomes(redis)
        (failed,) = [o for o in published if o["kind"] == "automation_handoff"]
        assert failed["correction"] == "reopened within window"
        # Paired with what the bot answered on, like the success it takes back (not the complaint's scores).
        assert failed["predicted"] == answered_on and comeback not in failed["text"]
        # The person who then resolves it adds no second "bot failed" label.
        assert (await gw.rt.ops.resolve(conv_id, "U0ALICE", skill="shipping", urgency=None, mood=None)).ok
        resolved = [o for o in await outcomes(redis) if o["kind"] == "resolved"]
        assert resolved and resolved[0].get("automation_failed") is None
    finally:
        await gw.close()


READERS: dict[str, Any] = {
    "string": lambda r, k: r.get(k), "hash": lambda r, k: r.hgetall(k), "list": lambda r, k: r.lrange(k, 0, -1),
    "set": lambda r, k: r.smembers(k), "zset": lambda r, k: r.zrange(k, 0, -1), "stream": lambda r, k: r.xrange(k),
}


async def _everything_in(redis: aioredis.Redis) -> str:
    """Every key and value in Redis, as one text to search: what an erasure must leave no trace in."""
    out = []
    async for key in redis.scan_iter(count=500):
        value = await READERS[as_str(await redis.type(key))](redis, key)
        out.append(f"{key!r} {value!r}")
    return "\n".join(out)


async def merged_jane(gateway: Gateway, redis: aioredis.Redis) -> str:
    """Two API accounts, `shop-9` (with Jane's email) and `crm-1`, joined into one person by a later message of
    `crm-1`'s carrying the same email; both routed and every entry handled. Returns the person id."""
    _, shop = await gateway.post_message({"customer_id": "shop-9", "message_id": "s1", "text": "order 4711 is late",
                                          "customer": {"email": "jane@example.com", "name": "Jane Doe"}})
    _, crm = await gateway.post_message({"customer_id": "crm-1", "message_id": "a1", "text": "my invoice is wrong"})
    await eventually(lambda: _routed(gateway, crm["conversation_id"]))
    await gateway.post_message({"customer_id": "crm-1", "message_id": "a2", "customer": JANE,
                                "text": "hello again?"})  # the email joins the two persons
    await eventually(lambda: redis.xlen(keys.MERGES))
    await eventually(lambda: _routed(gateway, shop["conversation_id"]))
    await eventually(lambda: _drained(gateway, redis))  # "hello again" handled too: this is not the race test
    return as_str(await redis.get(keys.ident("api:crm-1")) or b"")


async def test_forget_leaves_no_trace_in_redis_even_of_a_merged_customer(gateway: Gateway,
                                                                         redis: aioredis.Redis) -> None:
    """Two API customers are one person (the same verified email): an erasure of the person removes both,
    from every key and stream (the partition streams, the merge log, parked work) not only the obvious. (An
    erasure naming one of the two accounts erases that account only: two ids of one channel may be two people
    sharing a mailbox, see tests/test_erasure_shared_accounts.py.)"""
    person = await merged_jane(gateway, redis)
    assert "Jane Doe" in await _everything_in(redis)
    await forget(gateway, person)
    left = await _everything_in(redis)
    for trace in ("jane", "Jane", "1234567", "4711", "invoice is wrong", "hello again", "crm-1", "shop-9"):
        assert trace not in left, trace


async def test_after_a_merge_each_channel_keeps_writing_into_its_own_open_conversation(
    gateway: Gateway, redis: aioredis.Redis
) -> None:
    """Two customer ids, each with an open conversation, turn out to be one person (a later message carries
    both facts). The merge pointed the person at the shop conversation, so Jane's next CRM message moved
    there, away from the agent working on her claimed CRM conversation."""
    _, crm = await gateway.post_message({"customer_id": "crm-1", "message_id": "a1", "text": "my invoice is wrong",
                                         "customer": {"email": "jane@example.com"}})
    await eventually(lambda: _routed(gateway, crm["conversation_id"]))
    assert (await gateway.rt.ops.claim(crm["conversation_id"], "U0ALICE")).ok
    _, shop = await gateway.post_message({"customer_id": "shop-9", "message_id": "s1", "text": "order 4711 is late"})
    assert shop["conversation_id"] != crm["conversation_id"]
    await gateway.post_message({"customer_id": "shop-9", "message_id": "s2", "text": "it's Jane",
                                "customer": {"email": "jane@example.com"}})  # the email joins the two persons
    await eventually(lambda: redis.xlen(keys.MERGES))
    _, more = await gateway.post_message({"customer_id": "crm-1", "message_id": "a2", "text": "and the invoice?"})
    assert more["conversation_id"] == crm["conversation_id"]
    _, again = await gateway.post_message({"customer_id": "shop-9", "message_id": "s3", "text": "any news?"})
    assert again["conversation_id"] == shop["conversation_id"]
    # Once the CRM conversation is resolved (and its reopen window over), the CRM id starts a new one: two ids
    # of one channel are two accounts, which never share a conversation (an agent's reply would reach the other).
    assert (await gateway.rt.ops.resolve(crm["conversation_id"], "U0ALICE", skill="billing", urgency=None,
                                         mood=None)).ok
    await redis.set(keys.closed(crm["conversation_id"]), 0)
    _, later = await gateway.post_message({"customer_id": "crm-1", "message_id": "a3", "text": "thanks!"})
    assert later["conversation_id"] not in (crm["conversation_id"], shop["conversation_id"])


async def test_two_accounts_sharing_an_email_never_share_a_conversation(
    gateway: Gateway, redis: aioredis.Redis, callback: Callback
) -> None:
    """A shared billing mailbox: two API customer ids with one verified email are one person for history,
    but Bob's message was appended to Alice's open conversation, and the agent's reply to Alice reached Bob."""
    shared = {"email": "ap@acme.example"}
    _, alice = await gateway.post_message({"customer_id": "acct-alice", "message_id": "a1",
                                           "text": "my invoice 4411 is wrong", "customer": shared})
    await eventually(lambda: _routed(gateway, alice["conversation_id"]))
    _, bob = await gateway.post_message({"customer_id": "acct-bob", "message_id": "b1",
                                         "text": "please cancel my subscription", "customer": shared})
    assert bob["conversation_id"] != alice["conversation_id"]
    assert await redis.get(keys.ident("api:acct-bob")) == await redis.get(keys.ident("api:acct-alice"))  # one person
    _, alice_again = await gateway.post_message({"customer_id": "acct-alice", "message_id": "a2", "text": "any news?"})
    assert alice_again["conversation_id"] == alice["conversation_id"]
    await eventually(lambda: _routed(gateway, bob["conversation_id"]))
    conv = await gateway.rt.store.load(alice["conversation_id"])
    assert conv is not None and conv.customer.key == "api:acct-alice"
    assert [m.text for m in conv.inbound] == ["my invoice 4411 is wrong", "any news?"]


async def _streams_holding(redis: aioredis.Redis, partitions: int, conv_id: str) -> set[str]:
    found = set()
    for p in range(partitions):
        rows: Any = await redis.xrange(f"sb:in:{p}")
        if any(as_str(f.get(b"conv", b"")) == conv_id for _, f in rows):
            found.add(f"sb:in:{p}")
    return found


async def test_a_merge_keeps_each_conversations_work_on_one_partition(gateway: Gateway,
                                                                     redis: aioredis.Redis) -> None:
    """New messages followed the person they were merged into, to that person's partition, while the desk's
    work on the conversation (replies, transfers) went to the old one: two workers on one conversation."""
    parts = gateway.settings.partitions
    _, crm = await gateway.post_message({"customer_id": "crm-1", "message_id": "a1", "text": "my invoice is wrong",
                                         "customer": {"email": "jane@example.com"}})
    crm_person = as_str(await redis.get(keys.ident("api:crm-1")))
    for n in range(50):  # a second person on another partition (person ids are random)
        await gateway.post_message({"customer_id": f"shop-{n}", "message_id": "s1", "text": "order late"})
        shop_person = as_str(await redis.get(keys.ident(f"api:shop-{n}")))
        if keys.partition_of(shop_person, parts) != keys.partition_of(crm_person, parts):
            break
    await gateway.post_message({"customer_id": f"shop-{n}", "message_id": "s2", "text": "it's Jane",
                                "customer": {"email": "jane@example.com"}})  # crm's person joins shop's
    await eventually(lambda: redis.xlen(keys.MERGES))
    await gateway.post_message({"customer_id": "crm-1", "message_id": "a2", "text": "and the invoice?"})
    await eventually(lambda: _routed(gateway, crm["conversation_id"]))
    conv = await gateway.rt.store.load(crm["conversation_id"])
    assert conv is not None and conv.customer.person_id == crm_person  # the person it started with
    assert await _streams_holding(redis, parts, crm["conversation_id"]) == {gateway.rt.store.stream_of(conv)}
    # Parked work replayed after the merge goes there too (replay chose the stream by the person).
    await redis.xadd(keys.DEAD, {"kind": "note", "conv": crm["conversation_id"], "customer": "api:crm-1",
                                 "person": shop_person, "text": "parked note", "entry": "1-0", "error": "x"})
    assert await dead_letters.replay(redis, gateway.rt.store, parts, "U0LEAD") == 1
    assert await _streams_holding(redis, parts, crm["conversation_id"]) == {gateway.rt.store.stream_of(conv)}
