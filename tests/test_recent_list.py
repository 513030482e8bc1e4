"""The sample a policy dry run replays (`sb:recent`): each conversation once.

A routed commit lists a new conversation without first removing it (it cannot be listed yet). If redis-py resends
that commit because its connection dropped after Redis had applied it, the conversation is listed twice.
"""

from __future__ import annotations

import redis.asyncio as aioredis

from gateway import keys
from gateway.store import ConversationStore
from integrations.slack.commands.replay import recent_conversations
from router.policy import load_policy
from tests.test_commands_support import scores, store_conversation


async def test_a_conversation_listed_twice_is_replayed_once(redis: aioredis.Redis) -> None:
    store = ConversationStore(redis, partitions=8)
    policy = load_policy()
    first = await store_conversation(store, "my invoice is wrong", scores("billing"), policy=policy)
    second = await store_conversation(store, "where is my parcel", scores("shipping"), policy=policy)
    await redis.lpush(keys.RECENT, first.id)  # the resent commit's LPUSH

    assert [c.id for c in await recent_conversations(redis, store)] == [first.id, second.id]
