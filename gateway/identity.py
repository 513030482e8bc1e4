"""The single customer view: one person across channels, their history, merges and erasure.

Identities are joined only on verified facts (see `InboundMessage.identities`). When one message
proves that two known people are the same, the ingest script reports it and `merge` records the
merge in `sb:merges` so it can be reversed (`unmerge`) if a team finds it wrong.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
import structlog
from redis.asyncio.client import Pipeline as RedisPipeline

from gateway import keys
from gateway.domain import ConversationState, PastConversation, e164
from gateway.redis_conn import as_str, stream_rows

log = structlog.get_logger(__name__)

_REPOINT = """
-- KEYS: pairs of (a person's conversations, their current-conversation pointer). Run in the unmerge's MULTI,
-- so a message ingested meanwhile sees either the merged person or the repointed one.
for i = 1, #KEYS, 2 do
  local newest = redis.call('ZREVRANGE', KEYS[i], 0, 0)[1]
  if newest then redis.call('SET', KEYS[i + 1], newest) else redis.call('DEL', KEYS[i + 1]) end
end
"""


@dataclass(frozen=True)
class MergeRecord:
    """One entry of `sb:merges`: `from_person` was joined into `into` on the strength of `identities`."""

    id: str
    into: str
    from_person: str
    identities: list[str]
    at: float
    undone: bool


class Identity:
    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis = redis
        self._repoint = redis.register_script(_REPOINT)

    async def person_of(self, ref: str) -> str | None:
        """`ref` is a person id or any identity: "api:cust-42", "email:jane@x.com", "phone:+4917…"."""
        if ref.startswith("per_") and await self.redis.exists(f"{keys.person(ref)}:idents"):
            return ref
        owner = await self.redis.get(keys.ident(ref))
        return as_str(owner) if owner else None

    async def merges_of(self, person: str, limit: int = 10) -> list[MergeRecord]:
        """The merges that joined someone into this person or this person into someone, newest first."""
        rows = stream_rows(await self.redis.xrevrange(keys.MERGES))
        undone = {fields["undo"] for _, fields in rows if "undo" in fields}
        return [MergeRecord(entry_id, fields["into"], fields["from"], json.loads(fields.get("identities", "[]")),
                            float(fields.get("at", 0)), entry_id in undone)
                for entry_id, fields in rows
                if "undo" not in fields and person in (fields.get("into"), fields.get("from"))][:limit]

    async def identities(self, person: str) -> set[str]:
        return {as_str(i) for i in await self.redis.smembers(f"{keys.person(person)}:idents")}

    async def merge(self, into: str, others: list[str]) -> list[str]:
        """Move every identity and conversation of `others` to `into`; returns the merge record ids."""
        records = []
        for other in others:
            if other == into:
                continue
            moved = sorted(await self.identities(other))
            raw: Any = await self.redis.zrange(keys.person_conversations(other), 0, -1, withscores=True)
            convs: list[tuple[str, float]] = [(as_str(c), float(score)) for c, score in raw]
            async with self.redis.pipeline(transaction=True) as pipe:
                for ident in moved:
                    pipe.set(keys.ident(ident), into)
                    pipe.sadd(f"{keys.person(into)}:idents", ident)
                for conv, score in convs:
                    pipe.zadd(keys.person_conversations(into), {conv: score})
                pipe.set(f"{keys.person(other)}:merged_into", into)
                pipe.xadd(keys.MERGES, {"into": into, "from": other, "identities": json.dumps(moved),
                                        "conversations": json.dumps([c for c, _ in convs]),
                                        "at": f"{time.time():.3f}"})
                result = await pipe.execute()
            records.append(as_str(result[-1]))
            log.info("customers_merged", person=into, merged=other, identities=len(moved))
        return records

    async def unmerge(self, record_id: str) -> bool:
        """Give a merged person back their identities and conversations, as before the merge. False for an
        id that is no merge, or one already undone (a second undo would add a record and change nothing).

        Also what they gained while merged: an SMS or WhatsApp number whose phone goes back (its first text
        registered it to the merged person, and its next text after the undo merged the two again), and the
        conversations their ids started meanwhile (left behind, they stayed in the other customer's history)."""
        rows = stream_rows(await self.redis.xrange(keys.MERGES))
        fields = next((f for entry_id, f in rows if entry_id == record_id and "undo" not in f), None)
        if fields is None or any(f.get("undo") == record_id for _, f in rows):
            return False
        into, other = fields["into"], fields["from"]
        moved = set(json.loads(fields["identities"]))
        gained = {i for i in await self.identities(into) if i not in moved and _follows(i, moved)}
        # Conversations are scored in whole seconds when they start: one in the merge's own second counts.
        started = await self._started_by(into, math.floor(float(fields.get("at", 0))), moved | gained)
        async with self.redis.pipeline(transaction=True) as pipe:
            for ident in sorted(moved | gained):
                pipe.set(keys.ident(ident), other)
                pipe.srem(f"{keys.person(into)}:idents", ident)
            if gained:
                pipe.sadd(f"{keys.person(other)}:idents", *sorted(gained))
            for conv in json.loads(fields["conversations"]):
                pipe.zrem(keys.person_conversations(into), conv)
            for conv, score in started:
                pipe.zrem(keys.person_conversations(into), conv)
                pipe.zadd(keys.person_conversations(other), {conv: score})
            pipe.delete(f"{keys.person(other)}:merged_into")
            # While merged, the other's messages moved `into`'s pointer to their conversations: left there,
            # `into`'s next message would land in the other customer's conversation.
            await self._repoint(keys=[keys.person_conversations(into), f"{keys.person(into)}:conv",
                                      keys.person_conversations(other), f"{keys.person(other)}:conv"],
                                client=pipe)
            pipe.xadd(keys.MERGES, {"undo": record_id, "into": other, "from": into, "at": f"{time.time():.3f}"})
            await pipe.execute()
        log.info("customers_unmerged", person=other, from_person=into, record=record_id, gained=len(gained),
                 conversations_started=len(started))
        return True

    async def _started_by(self, person: str, since: float, idents: set[str]) -> list[tuple[str, float]]:
        """(conversation, score) of `person`'s conversations started since `since` by one of `idents`: its
        stored customer is one of them, or (not routed yet, so nothing stored but its transcript) one of
        them points at it as its channel's current conversation."""
        raw: Any = await self.redis.zrangebyscore(keys.person_conversations(person), since, "+inf", withscores=True)
        convs = [(as_str(c), float(score)) for c, score in raw]
        if not convs:
            return []
        ordered = sorted(idents)
        async with self.redis.pipeline(transaction=False) as pipe:
            for conv, _ in convs:
                pipe.hget(keys.conversation(conv), "customer")
            for ident in ordered:
                pipe.get(keys.customer_conversation(ident))
            results = await pipe.execute()
        customers, pointers = results[: len(convs)], results[len(convs):]
        pointed = {as_str(c) for c in pointers if c}
        return [(conv, score) for (conv, score), customer in zip(convs, customers, strict=True)
                if conv in pointed or (customer and json.loads(customer).get("key") in idents)]

    async def history(self, person: str | None, exclude: str, limit: int = 5) -> list[PastConversation]:
        """Earlier conversations of this person on every channel, newest first."""
        if not person:
            return []
        ids = [as_str(c) for c in await self.redis.zrevrange(keys.person_conversations(person), 0, limit)]
        return await self.history_of(ids, exclude, limit)

    @staticmethod
    def stage_history_ids(pipe: RedisPipeline, person: str | None, limit: int = 5) -> Callable[[list[Any]], list[str]]:
        """The ids `history` starts from, queued on a caller's pipeline (the worker's first read)."""
        if not person:
            return lambda results: []
        at = len(pipe)
        pipe.zrevrange(keys.person_conversations(person), 0, limit)
        return lambda results: [as_str(c) for c in results[at]]

    async def history_of(self, ids: list[str], exclude: str, limit: int = 5) -> list[PastConversation]:
        found = []
        fields = ("created_at", "state", "skill", "customer", "csat", "agent", "resolved_at")
        ids = [c for c in ids if c != exclude]
        if not ids:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for conv_id in ids:
                pipe.hmget(keys.conversation(conv_id), fields)
            rows = await pipe.execute()
        for conv_id, raw in zip(ids, rows, strict=True):
            data = {f: json.loads(v) if v else None for f, v in zip(fields, raw, strict=True)}
            if not data["created_at"] or not data["customer"]:
                continue
            found.append(
                PastConversation(
                    id=conv_id, created_at=data["created_at"], channel=data["customer"]["channel"],
                    skill=data["skill"], state=ConversationState(str(data["state"])), csat=data["csat"],
                    agent=data["agent"], resolved_at=data["resolved_at"],
                )
            )
        return found[:limit]


def _follows(ident: str, moved: set[str]) -> bool:
    """An SMS or WhatsApp id whose phone number is among `moved`: the carrier vouches they are one customer.

    >>> _follows("sms:+491701234567", {"phone:+491701234567"}), _follows("api:crm-4", {"phone:+491701234567"})
    (True, False)
    """
    kind, _, raw = ident.partition(":")
    phone = e164(raw) if kind in ("sms", "whatsapp") else None
    return phone is not None and f"phone:{phone}" in moved
