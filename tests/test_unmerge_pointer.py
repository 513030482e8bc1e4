"""An undone merge gives each customer back their own current conversation.

While merged, the other customer's messages moved the person's current-conversation pointer onto their
conversation; the undo left it there, so once the first customer's own conversation was over, their next message
landed in the other customer's open conversation (and the channel switch sent its replies to the wrong person).
"""

from __future__ import annotations

import redis.asyncio as aioredis

from gateway import keys
from gateway.domain import ChannelKind, CustomerProfile, InboundMessage
from gateway.identity import Identity
from gateway.redis_conn import as_str
from gateway.store import Accepted, ConversationStore

PHONE = "+4917012345678"


class _Customers:
    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis = redis
        self.store = ConversationStore(redis, 4)
        self.identity = Identity(redis)

    async def send(self, channel: ChannelKind, customer_id: str, message_id: str, **profile: str) -> Accepted:
        return await self.store.ingest(InboundMessage(channel=channel, customer_id=customer_id, message_id=message_id,
                                                      text=f"text {message_id}", customer=CustomerProfile(**profile)))

    async def person(self, identity: str) -> str:
        return as_str(await self.redis.get(keys.ident(identity)))

    async def wrongly_merged_then_undone(self) -> tuple[Accepted, Accepted]:
        """Alice (API) and Bob (SMS) joined by a wrong phone on Alice's profile; Bob writes; a lead undoes it."""
        alice = await self.send(ChannelKind.API, "alice", "a1")
        bob = await self.send(ChannelKind.SMS, PHONE, "s1")
        p_alice, p_bob = await self.person("api:alice"), await self.person(f"sms:{PHONE}")
        await self.send(ChannelKind.API, "alice", "a2", phone=PHONE)
        (record,) = await self.identity.merge(p_alice, [p_bob])  # what the worker does with the ingest's report
        assert (await self.send(ChannelKind.SMS, PHONE, "s2")).conversation_id == bob.conversation_id
        assert await self.identity.unmerge(record)
        return alice, bob


async def test_after_an_undone_merge_a_customer_never_lands_in_the_other_customers_conversation(
    redis: aioredis.Redis,
) -> None:
    customers = _Customers(redis)
    alice, bob = await customers.wrongly_merged_then_undone()
    await redis.set(keys.closed(alice.conversation_id), 0)  # Alice's conversation was resolved long ago
    later = await customers.send(ChannelKind.API, "alice", "a3")
    assert later.conversation_id not in (alice.conversation_id, bob.conversation_id)
    assert (await customers.send(ChannelKind.SMS, PHONE, "s3")).conversation_id == bob.conversation_id


async def test_unmerge_points_each_person_at_their_newest_own_conversation(redis: aioredis.Redis) -> None:
    customers = _Customers(redis)
    alice, bob = await customers.wrongly_merged_then_undone()
    p_alice, p_bob = await customers.person("api:alice"), await customers.person(f"sms:{PHONE}")
    assert p_alice != p_bob
    assert as_str(await redis.get(f"{keys.person(p_alice)}:conv")) == alice.conversation_id
    assert as_str(await redis.get(f"{keys.person(p_bob)}:conv")) == bob.conversation_id


async def test_unmerge_drops_the_pointer_of_a_person_left_without_conversations(redis: aioredis.Redis) -> None:
    """A person known only by an identity (their conversations erased) into whom someone was merged."""
    customers = _Customers(redis)
    await redis.set(keys.ident("email:jane@example.com"), "per_jane")
    await redis.sadd(f"{keys.person('per_jane')}:idents", "email:jane@example.com")
    bob = await customers.send(ChannelKind.SMS, PHONE, "s1")
    (record,) = await customers.identity.merge("per_jane", [await customers.person(f"sms:{PHONE}")])
    await customers.send(ChannelKind.SMS, PHONE, "s2")
    assert as_str(await redis.get(f"{keys.person('per_jane')}:conv")) == bob.conversation_id
    assert await customers.identity.unmerge(record)
    assert await redis.get(f"{keys.person('per_jane')}:conv") is None


async def test_ingest_ignores_a_current_conversation_the_person_does_not_hold(redis: aioredis.Redis) -> None:
    """A pointer left by an unmerge of an earlier version: the ingest does not follow it either."""
    customers = _Customers(redis)
    alice = await customers.send(ChannelKind.API, "alice", "a1")
    bob = await customers.send(ChannelKind.SMS, PHONE, "s1")
    await redis.set(f"{keys.person(await customers.person('api:alice'))}:conv", bob.conversation_id)
    await redis.set(keys.closed(alice.conversation_id), 0)
    later = await customers.send(ChannelKind.API, "alice", "a2")
    assert later.conversation_id not in (alice.conversation_id, bob.conversation_id)
