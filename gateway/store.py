"""Durable storage of customers, conversations and transcripts in Redis.

Ingest is one Lua script, so de-duplication, the transcript append and the stream entry either all
happen or none do: a message is acknowledged to the customer's channel only after this returns.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline as RedisPipeline

from gateway import keys, lean_exec, metrics
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
from gateway.ingest_script import INGEST
from gateway.redis_conn import as_str, within

_SAVE_IF = """
-- Compare-and-set on a conversation. KEYS: 1 the conversation, 2 its claim, 3 the open set of ARGV[2]
-- (whose claim is dropped in the same step if they still hold it; '' for none), 4 optionally a stream
-- that gets the trailing ARGV pairs as an entry (work that must exist exactly when the write does).
-- ARGV: n guards, holder, conversation id, n fields, then the (field, expected JSON) guard pairs, the
-- (field, JSON) pairs to write, and the entry's pairs.
local n, m = tonumber(ARGV[1]), tonumber(ARGV[4])
for i = 0, n - 1 do
  if (redis.call('HGET', KEYS[1], ARGV[5 + 2 * i]) or 'null') ~= ARGV[6 + 2 * i] then return false end
end
local writes = 5 + 2 * n
redis.call('HSET', KEYS[1], unpack(ARGV, writes, writes + 2 * m - 1))
if ARGV[2] ~= '' and redis.call('GET', KEYS[2]) == ARGV[2] then
  redis.call('DEL', KEYS[2])
  redis.call('SREM', KEYS[3], ARGV[3])
end
if #KEYS == 4 then redis.call('XADD', KEYS[4], '*', unpack(ARGV, writes + 2 * m)) end
return redis.call('HINCRBY', KEYS[1], 'version', 1)
"""

DEDUPE_TTL_S = 7 * 86400
LEGACY_RESOLVES_TTL_S = 90 * 86400
CREATE_FIELDS = ("id", "customer", "state", "created_at", "partition")
GUARDED = ("state", "claimed_by", "card_ts", "skill", "replied_at", "resolves")
"""What desk actions change (a transfer first changes the skill, its new card comes a Slack call later),
an agent's reply (an SLA reassign must lose to it) and the resolve count (a resolve and a reopen in
between put the state back where it was): `save_if` refuses to write over a change to any."""


@dataclass(frozen=True, slots=True)
class Snapshot:
    conversation: Conversation | None
    transcript: list[Message]
    effects: dict[str, str]
    """The conversation's effect log (see `gateway.effects`), read with it to save a round trip."""


@dataclass(frozen=True, slots=True)
class Accepted:
    conversation_id: str
    message_id: str
    duplicate: bool


def field_json(value: Any) -> str:
    """One stored field as JSON. Objects (the customer, scores, decision) through orjson, about six times
    faster; scalars as `json.dumps` writes them, because `save_if`'s guard compares stored scalars as text
    (`GUARDED`) and orjson writes non-ASCII as UTF-8 where `json.dumps` escapes it. Every reader parses."""
    return orjson.dumps(value).decode() if isinstance(value, dict | list) else json.dumps(value)


class ConversationStore:
    def __init__(self, redis: aioredis.Redis, partitions: int, reopen_window_s: int = 7 * 86400,
                 round_trips: aioredis.Redis | None = None) -> None:
        """`round_trips`: the lean pool (`redis_conn.round_trip_client`) for the one call every message costs the
        web process, its ingest; where unset, `redis`."""
        self.redis = redis
        self.partitions = partitions
        self.reopen_window_s = reopen_window_s
        self._ingest = (round_trips or redis).register_script(INGEST)
        self._save_if = redis.register_script(_SAVE_IF)

    async def ingest(self, msg: InboundMessage) -> Accepted:
        """Store the message durably and queue it for the workers; idempotent per channel message id."""
        # Every field comes from the validated inbound message: skip a second validation (hot path).
        message = Message.model_construct(
            id=new_id("msg"),
            direction=Direction.INBOUND,
            channel=msg.channel,
            text=msg.text,
            external_id=msg.message_id,
            at=msg.received_at,
        )
        result = await within(lean_exec.run_script(
            self._ingest,
            [keys.dedupe(msg.customer_key, msg.message_id)],
            [
                new_id("conv"),
                message.id,
                message.model_dump_json(),
                int(msg.received_at.timestamp()),
                self.reopen_window_s,
                DEDUPE_TTL_S,
                keys.PREFIX,
                msg.customer.model_dump_json(exclude_none=True),
                msg.customer_key,
                new_id("per"),
                self.partitions,
                *msg.identities(),
            ],
        ))
        created, ref = int(result[0]), as_str(result[1])
        metrics.message_in(msg.channel.value, duplicate=not created)
        conversation_id, message_id = ref.split("|", 1)
        return Accepted(conversation_id, message_id, duplicate=not created)

    async def load(self, conversation_id: str) -> Conversation | None:
        return (await self.snapshot(conversation_id)).conversation

    async def snapshot(self, conversation_id: str) -> Snapshot:
        """Conversation, transcript and effect log in one round trip: what a worker needs to act."""
        async with self.redis.pipeline(transaction=False) as pipe:
            parse = self.stage_snapshot(pipe, conversation_id)
            return parse(await pipe.execute())

    def stage_snapshot(self, pipe: RedisPipeline, conversation_id: str) -> Callable[[list[Any]], Snapshot]:
        """`snapshot` queued on a caller's pipeline; the returned function reads it from the results."""
        at = len(pipe)
        pipe.hgetall(keys.conversation(conversation_id))
        pipe.lrange(keys.transcript(conversation_id), 0, -1)
        pipe.hgetall(keys.effects(conversation_id))

        def parse(results: list[Any]) -> Snapshot:
            raw, lines, effects = results[at : at + 3]
            transcript = [Message.model_validate_json(line) for line in lines]
            done = {as_str(k): as_str(v) for k, v in effects.items()}
            conv = self.parse(raw, transcript)
            return Snapshot(conv, transcript, done)

        return parse

    @staticmethod
    def parse(raw: dict[Any, Any], transcript: list[Message]) -> Conversation | None:
        """A conversation from its stored hash (an HGETALL) and a transcript read alongside it."""
        if not raw:
            return None
        conv = Conversation.model_validate({as_str(k): json.loads(v) for k, v in raw.items()})
        conv.messages = transcript
        return conv

    def create(
        self, conversation_id: str, customer_key: str, profile_json: str, person_id: str | None = None,
        transcript: list[Message] | None = None,
    ) -> Conversation:
        """A new conversation around its stored transcript; written by its first `save` (version 0)."""
        customer = self.customer(customer_key, profile_json, person_id)
        return Conversation(id=conversation_id, customer=customer, messages=list(transcript or []))

    @staticmethod
    def customer(customer_key: str, profile_json: str, person_id: str | None) -> Customer:
        channel, external_id = customer_key.split(":", 1)
        return Customer.model_validate(
            {"key": customer_key, "channel": ChannelKind(channel), "external_id": external_id,
             "profile": _json(profile_json), "person_id": person_id}
        )

    async def save(self, conv: Conversation, *fields: str) -> None:
        """Write only the named fields: the worker and the Slack desk change different parts of one
        conversation concurrently, and a whole-object write would let one undo the other."""
        async with self.redis.pipeline(transaction=True) as pipe:
            at = self.stage_save(pipe, conv, *fields)
            results = await pipe.execute()
        conv.version = int(results[at])

    def stage_save(self, pipe: RedisPipeline, conv: Conversation, *fields: str) -> int:
        """Queue `save` on a caller's MULTI; returns the index of the new version in its results.

        A conversation never saved (version 0) also writes its identity fields, so `create` costs
        no round trip of its own.
        """
        conv.updated_at = utcnow()
        names = {*fields, "updated_at", *(CREATE_FIELDS if conv.version == 0 else ())}
        dumped = conv.model_dump(mode="json", include=names)
        mapping: dict[Any, Any] = {name: field_json(value) for name, value in dumped.items()}
        pipe.hset(keys.conversation(conv.id), mapping=mapping)
        pipe.hincrby(keys.conversation(conv.id), "version", 1)
        return len(pipe) - 1

    async def save_if(
        self, conv: Conversation, fields: tuple[str, ...], expect: Conversation, drop_claim_of: str | None = None,
        then_queue: dict[str, str] | None = None,
    ) -> bool:
        """Write `fields` only if `expect`'s state, claim, card and skill are still what is stored; with
        `drop_claim_of`, also drop that agent's claim in the same step; with `then_queue`, also queue that
        work on the customer's partition (see `enqueue`).

        For writers that read, then wait (on Slack, or on a human), then write: whoever changed the
        conversation in between wins, and the caller learns it lost and can read again."""
        conv.updated_at = utcnow()
        guard = expect.model_dump(mode="json", include=set(GUARDED))
        dumped = conv.model_dump(mode="json", include={*fields, "updated_at"})
        args: list[Any] = [len(GUARDED), drop_claim_of or "", conv.id, len(dumped)]
        for name in GUARDED:
            args += [name, json.dumps(guard[name])]
        for name, value in dumped.items():
            args += [name, field_json(value)]
        script_keys = [keys.conversation(conv.id), keys.claim(conv.id), keys.agent_open(drop_claim_of or "-")]
        if then_queue is not None:
            stream, entry = self.entry(conv, then_queue)
            script_keys.append(stream)
            for name, value in entry.items():
                args += [name, value]
        version = await self._save_if(keys=script_keys, args=args)
        if version is None:
            return False
        conv.version = int(version)
        return True

    @staticmethod
    def stage_card(pipe: RedisPipeline, conv: Conversation) -> None:
        """Index the conversation's current card: its thread leads to the conversation, and it is listed
        among the conversation's cards."""
        if conv.slack_channel and conv.card_ts:
            pipe.set(keys.thread(conv.slack_channel, conv.card_ts), conv.id)
            ConversationStore.stage_listed(pipe, conv.id, conv.slack_channel, conv.card_ts)

    @staticmethod
    def stage_listed(pipe: RedisPipeline | aioredis.Redis, conversation_id: str, channel: str, ts: str) -> Any:
        """List a card among the conversation's cards (for erasure) without making it lead: one that lost a
        race and is being retired still quotes the customer's messages."""
        return pipe.sadd(keys.cards(conversation_id), f"{channel}|{ts}")

    async def append(self, conv: Conversation, message: Message) -> None:
        await self.redis.rpush(keys.transcript(conv.id), message.model_dump_json())
        conv.messages.append(message)

    async def enqueue_reply(self, conv: Conversation, fields: dict[str, str]) -> None:
        """Queue a person's reply and record that they replied (`Conversation.replied_at`) in one step."""
        conv.replied_at = conv.updated_at = utcnow()
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.xadd(*self.entry(conv, fields))
            self.stage_save(pipe, conv, "replied_at")
            await pipe.execute()

    async def enqueue(self, conv: Conversation, fields: dict[str, str]) -> str:
        """Queue work for a conversation on its customer's partition, behind that customer's messages."""
        return as_str(await self.redis.xadd(*self.entry(conv, fields)))

    def entry(self, conv: Conversation, fields: dict[str, str]) -> tuple[str, dict[Any, Any]]:
        """(stream, entry) for `enqueue`, for callers that queue it on their own MULTI."""
        return self.stream_of(conv), {"conv": conv.id, "customer": conv.customer.key, **fields}

    def stream_of(self, conv: Conversation) -> str:
        """The conversation's partition stream, where all work on it is queued in order: the partition its
        messages are queued on (`Conversation.partition`), or, for one stored before it was recorded, its
        person's."""
        if conv.partition is not None and conv.partition < self.partitions:
            return keys.inbound_stream(conv.partition)
        return keys.inbound_stream(keys.partition_of(conv.customer.person_id or conv.customer.key, self.partitions))

    async def legacy_resolves(self, conversation_id: str) -> int:
        """The resolve count the release before this one kept beside the conversation (`keys.resolves`). During a
        rolling deploy its processes still count there, so a form's count is compared with the larger of the two;
        and `count_legacy_resolve` keeps it counting for them. Both can go in the release after this one."""
        raw = await self.redis.get(keys.resolves(conversation_id))
        return int(raw) if raw else 0

    async def resolve_count(self, conv: Conversation) -> int:
        """How many times it was resolved, as a Resolve form carries it (`counted` with the legacy count)."""
        return counted(conv, await self.legacy_resolves(conv.id))

    async def count_legacy_resolve(self, conversation_id: str) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.incr(keys.resolves(conversation_id))
            pipe.expire(keys.resolves(conversation_id), LEGACY_RESOLVES_TTL_S)
            await pipe.execute()

    async def mark_closed(self, conv: Conversation) -> None:
        await self.redis.set(keys.closed(conv.id), int(utcnow().timestamp()))

    async def extend_closed(self, conv: Conversation) -> None:
        """An agent's afterthought reached the customer after the resolve: the reopen window counts from it, so
        their answer to it on day 8 of a conversation resolved on day 1 lands here, not in a new one. Only a
        marker still there (XX): one the customer's reopen removed meanwhile must not come back."""
        await self.redis.set(keys.closed(conv.id), int(utcnow().timestamp()), xx=True)

    async def mark_open(self, conv: Conversation) -> None:
        """Reopened: the reopen window counts from its next resolve. A marker left from the first resolve
        split a conversation reopened on day 6 in two when the customer wrote again on day 8."""
        await self.redis.delete(keys.closed(conv.id))


def counted(conv: Conversation, legacy: int) -> int:
    """The conversation's own resolve count, or the release before's (`legacy_resolves`) if larger."""
    return max(conv.resolves or 0, legacy)


def _json(raw: str) -> dict[str, Any]:
    data = json.loads(raw) if raw else {}
    return data if isinstance(data, dict) else {}
