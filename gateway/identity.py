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
from gateway.domain import ChannelKind, ConversationState, PastConversation, e164
from gateway.redis_conn import as_str, stream_rows
from gateway.store import field_json

log = structlog.get_logger(__name__)

_REPOINT = """
-- Run in the unmerge's MULTI, so a message ingested meanwhile sees either the merged person or the repointed one.
-- KEYS: ARGV[1] pairs of (a person's conversations, their current-conversation pointer), then ARGV[2] channel
-- pointers (`cust:<identity>:conv`), then conversations. ARGV: 1, 2 those counts, then per channel pointer (the
-- value read, the new one or '' to delete it), then per conversation (its customer as read, the new one). A
-- pointer or customer changed since it was read (a message taken meanwhile) is left as it is.
local n, m = tonumber(ARGV[1]), tonumber(ARGV[2])
for i = 1, 2 * n, 2 do
  local newest = redis.call('ZREVRANGE', KEYS[i], 0, 0)[1]
  if newest then redis.call('SET', KEYS[i + 1], newest) else redis.call('DEL', KEYS[i + 1]) end
end
for j = 1, m do
  local key, now = KEYS[2 * n + j], ARGV[2 + 2 * j]
  if redis.call('GET', key) == ARGV[1 + 2 * j] then
    if now == '' then redis.call('DEL', key) else redis.call('SET', key, now) end
  end
end
for k = 1, #KEYS - 2 * n - m do
  local key, at = KEYS[2 * n + m + k], 2 + 2 * m + 2 * k
  if redis.call('HGET', key, 'customer') == ARGV[at - 1] then
    redis.call('HSET', key, 'customer', ARGV[at])
    redis.call('HINCRBY', key, 'version', 1)
  end
end
"""
_CHANNELS = frozenset(kind.value for kind in ChannelKind)


@dataclass(frozen=True)
class _Fixes:
    """What an undo puts back besides identities and conversations: see `Identity._fixes`."""

    pointers: dict[str, tuple[str, str]]
    """channel identity -> (its conversation pointer as read, the new one or '' to delete it)"""
    customers: dict[str, tuple[bytes, str]]
    """conversation -> (its stored customer as read, the one its replies go to again)"""


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
        """Move every identity and conversation of `others` to `into`; returns the merge record ids. A person
        named twice (an entry queued before the ingest listed each once) is merged once: a second record of the
        same merge still read as active after the first was undone."""
        records = []
        for other in dict.fromkeys(others):
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
        holds = await self.identities(into)
        gained = {i for i in holds if i not in moved and _follows(i, moved)}
        # Conversations are scored in whole seconds when they start: one in the merge's own second counts.
        started = await self._started_by(into, math.floor(float(fields.get("at", 0))), moved | gained)
        given_back = {*json.loads(fields["conversations"]), *(c for c, _ in started)}
        fixes = await self._fixes({into: holds - moved - gained, other: moved | gained}, into, other, given_back)
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
            # `into`'s next message would land in the other customer's conversation. So would a channel id's
            # own pointer at a conversation of the other one it wrote in, whose replies went to that id since.
            pointers, customers = sorted(fixes.pointers.items()), sorted(fixes.customers.items())
            await self._repoint(
                keys=[keys.person_conversations(into), f"{keys.person(into)}:conv",
                      keys.person_conversations(other), f"{keys.person(other)}:conv",
                      *(keys.customer_conversation(ident) for ident, _ in pointers),
                      *(keys.conversation(conv) for conv, _ in customers)],
                args=[2, len(pointers), *(v for _, change in pointers for v in change),
                      *(v for _, change in customers for v in change)],
                client=pipe)
            pipe.xadd(keys.MERGES, {"undo": record_id, "into": other, "from": into, "at": f"{time.time():.3f}"})
            await pipe.execute()
        log.info("customers_unmerged", person=other, from_person=into, record=record_id, gained=len(gained),
                 conversations_started=len(started), pointers_moved=len(pointers), replies_redirected=len(customers))
        return True

    async def _fixes(self, idents: dict[str, set[str]], into: str, other: str, given_back: set[str]) -> _Fixes:
        """While merged, a channel id that wrote in the other customer's conversation was pointed at it, and the
        conversation's replies switched to that id (`Pipeline._switch_channel`). For the persons as the undo
        leaves them (`idents`; `other` holds `given_back`): each id pointing at a conversation of the other
        person points at its newest own conversation instead (the newest whose replies go to it; none: no
        pointer, as before its first message), and a conversation replying to the other person's id replies to
        its own person's id again: the one pointing at it, or else its only id on the channel it started on."""
        raw: Any = await self.redis.zrange(keys.person_conversations(into), 0, -1, withscores=True)
        raw_other: Any = await self.redis.zrange(keys.person_conversations(other), 0, -1, withscores=True)
        scores = {as_str(c): float(s) for c, s in [*raw, *raw_other]}
        owner = {c: other if c in given_back else into for c in scores}
        owner.update({as_str(c): other for c, _ in raw_other})
        person_of = {i: person for person, held in idents.items() for i in held}
        channel_ids = sorted(i for i in person_of if i.partition(":")[0] in _CHANNELS)
        convs = sorted(scores)
        async with self.redis.pipeline(transaction=False) as pipe:
            for ident in channel_ids:
                pipe.get(keys.customer_conversation(ident))
            for conv in convs:
                pipe.hget(keys.conversation(conv), "customer")
            results = await pipe.execute()
        pointed = {i: as_str(c) for i, c in zip(channel_ids, results[: len(channel_ids)], strict=True) if c}
        stored: dict[str, bytes] = {c: raw_c for c, raw_c in zip(convs, results[len(channel_ids):], strict=True)
                                    if raw_c}
        customers: dict[str, dict[str, Any]] = {c: json.loads(v) for c, v in stored.items()}
        wrong = [c for c, customer in customers.items()
                 if person_of.get(customer.get("key", ""), owner[c]) != owner[c]]
        started_on = await self._first_channels([c for c in wrong
                                                 if sum(pointed.get(i) == c for i in idents[owner[c]]) != 1])
        fixed: dict[str, tuple[bytes, str]] = {}
        for conv in wrong:
            own = [i for i in channel_ids if person_of[i] == owner[conv]]
            replies_to = [i for i in own if pointed.get(i) == conv]
            if len(replies_to) != 1:
                replies_to = [i for i in own if i.partition(":")[0] == started_on.get(conv)]
            if len(replies_to) != 1:
                log.warning("unmerge_reply_channel_unknown", conversation_id=conv, candidates=len(replies_to))
                continue
            kind, _, external = replies_to[0].partition(":")
            customers[conv] = {**customers[conv], "key": replies_to[0], "channel": kind, "external_id": external,
                               "person_id": owner[conv]}
            fixed[conv] = (stored[conv], field_json(customers[conv]))
        moved_pointers: dict[str, tuple[str, str]] = {}
        for ident, conv in pointed.items():
            if conv in owner and owner[conv] != person_of[ident]:
                mine = [c for c, customer in customers.items()
                        if owner[c] == person_of[ident] and customer.get("key") == ident]
                moved_pointers[ident] = (conv, max(mine, key=lambda c: scores[c], default=""))
        return _Fixes(moved_pointers, fixed)

    async def _first_channels(self, convs: list[str]) -> dict[str, str]:
        """conversation -> the channel of its first message (the customer who started it wrote there)."""
        if not convs:
            return {}
        async with self.redis.pipeline(transaction=False) as pipe:
            for conv in convs:
                pipe.lindex(keys.transcript(conv), 0)
            first = await pipe.execute()
        return {conv: str(json.loads(raw).get("channel", "")) for conv, raw in zip(convs, first, strict=True) if raw}

    async def _started_by(self, person: str, since: float, idents: set[str]) -> list[tuple[str, float]]:
        """(conversation, score) of `person`'s conversations started since `since` by one of `idents`: its
        stored customer is one of them, or (not routed yet, so nothing stored but its transcript) one of
        them points at it as its channel's current conversation; and its first message came on one of their
        channels. Both of those only say who wrote last: a text from one of them into the other customer's
        conversation (the one a merging message started, in the merge's own second) switched it to them."""
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
        started_on = await self._first_channels([conv for conv, _ in convs])
        channels = {i.partition(":")[0] for i in idents}
        return [(conv, score) for (conv, score), customer in zip(convs, customers, strict=True)
                if (conv in pointed or (customer and json.loads(customer).get("key") in idents))
                and (conv not in started_on or started_on[conv] in channels)]

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
