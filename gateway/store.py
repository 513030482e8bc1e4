"""Durable storage of customers, conversations and transcripts in Redis.

Ingest is one Lua script, so de-duplication, the transcript append and the stream entry either all
happen or none do: a message is acknowledged to the customer's channel only after this returns.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from gateway import keys
from gateway.domain import (
    ChannelKind,
    Conversation,
    Customer,
    Direction,
    InboundMessage,
    Message,
    new_id,
    utcnow,
)

_INGEST = """
local existing = redis.call('GET', KEYS[1])
if existing then return {0, existing} end
local conv = redis.call('GET', KEYS[2])
if conv then
  local closed = redis.call('GET', ARGV[7] .. 'conv:' .. conv .. ':closed')
  if closed and (tonumber(ARGV[4]) - tonumber(closed)) > tonumber(ARGV[5]) then conv = false end
end
if not conv then
  conv = ARGV[1]
  redis.call('SET', KEYS[2], conv)
end
redis.call('RPUSH', ARGV[7] .. 'conv:' .. conv .. ':msgs', ARGV[3])
if ARGV[8] ~= '{}' then redis.call('HSET', KEYS[4], 'profile', ARGV[8]) end
redis.call('XADD', KEYS[3], '*', 'conv', conv, 'mid', ARGV[2], 'customer', ARGV[9], 'profile', ARGV[8])
local ref = conv .. '|' .. ARGV[2]
redis.call('SET', KEYS[1], ref, 'EX', tonumber(ARGV[6]))
return {1, ref}
"""

DEDUPE_TTL_S = 7 * 86400
CREATE_FIELDS = ("id", "customer", "state", "created_at")


@dataclass(frozen=True, slots=True)
class Accepted:
    conversation_id: str
    message_id: str
    duplicate: bool


class ConversationStore:
    def __init__(self, redis: aioredis.Redis, partitions: int, reopen_window_s: int = 7 * 86400) -> None:
        self.redis = redis
        self.partitions = partitions
        self.reopen_window_s = reopen_window_s
        self._ingest = redis.register_script(_INGEST)

    async def ingest(self, msg: InboundMessage) -> Accepted:
        """Store the message durably and queue it for the workers; idempotent per channel message id."""
        message = Message(
            id=new_id("msg"),
            direction=Direction.INBOUND,
            channel=msg.channel,
            text=msg.text,
            external_id=msg.message_id,
            at=msg.received_at,
        )
        stream = keys.inbound_stream(keys.partition_of(msg.customer_key, self.partitions))
        result = await self._ingest(
            keys=[
                keys.dedupe(msg.channel.value, msg.message_id),
                keys.customer_conversation(msg.customer_key),
                stream,
                keys.customer(msg.customer_key),
            ],
            args=[
                new_id("conv"),
                message.id,
                message.model_dump_json(),
                int(msg.received_at.timestamp()),
                self.reopen_window_s,
                DEDUPE_TTL_S,
                keys.PREFIX,
                msg.customer.model_dump_json(exclude_none=True),
                msg.customer_key,
            ],
        )
        created, ref = int(result[0]), _s(result[1])
        conversation_id, message_id = ref.split("|", 1)
        return Accepted(conversation_id, message_id, duplicate=not created)

    async def load(self, conversation_id: str) -> Conversation | None:
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(keys.conversation(conversation_id))
            pipe.lrange(keys.transcript(conversation_id), 0, -1)
            raw, lines = await pipe.execute()
        if not raw:
            return None
        data = {_s(k): json.loads(v) for k, v in raw.items()}
        conv = Conversation.model_validate(data)
        conv.messages = [Message.model_validate_json(line) for line in lines]
        return conv

    async def create(self, conversation_id: str, customer_key: str, profile_json: str) -> Conversation:
        channel, external_id = customer_key.split(":", 1)
        customer = Customer.model_validate(
            {"key": customer_key, "channel": ChannelKind(channel), "external_id": external_id,
             "profile": _json(profile_json)}
        )
        conv = Conversation(id=conversation_id, customer=customer)
        lines = await self.redis.lrange(keys.transcript(conversation_id), 0, -1)
        conv.messages = [Message.model_validate_json(line) for line in lines]
        await self.save(conv, *CREATE_FIELDS)
        return conv

    async def save(self, conv: Conversation, *fields: str) -> None:
        """Write only the named fields: the worker and the Slack desk change different parts of one
        conversation concurrently, and a whole-object write would let one undo the other."""
        conv.updated_at = utcnow()
        dumped = conv.model_dump(mode="json", include={*fields, "updated_at"})
        mapping: dict[Any, Any] = {name: json.dumps(value) for name, value in dumped.items()}
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(keys.conversation(conv.id), mapping=mapping)
            pipe.hincrby(keys.conversation(conv.id), "version", 1)
            _, version = await pipe.execute()
        conv.version = int(version)

    async def append(self, conv: Conversation, message: Message) -> None:
        await self.redis.rpush(keys.transcript(conv.id), message.model_dump_json())
        conv.messages.append(message)

    async def enqueue(self, conv: Conversation, fields: dict[str, str]) -> str:
        """Queue work for a conversation on its customer's partition, behind that customer's messages."""
        stream = keys.inbound_stream(keys.partition_of(conv.customer.key, self.partitions))
        entry: dict[Any, Any] = {"conv": conv.id, "customer": conv.customer.key, **fields}
        return _s(await self.redis.xadd(stream, entry))

    async def mark_closed(self, conv: Conversation) -> None:
        await self.redis.set(keys.closed(conv.id), int(utcnow().timestamp()))

    async def customer_profile(self, customer_key: str) -> dict[str, Any]:
        raw = await self.redis.hget(keys.customer(customer_key), "profile")
        return _json(_s(raw)) if raw else {}


def _s(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _json(raw: str) -> dict[str, Any]:
    data = json.loads(raw) if raw else {}
    return data if isinstance(data, dict) else {}
