"""Whose data an erasure reaches: the whole person, one account of a shared person, or a shared identifier.

A person with at most one account per channel is one human (an API customer who also texts), and any of their refs
erases all of them. Two accounts of one channel joined by an email or phone (a shared billing mailbox:
`api:acct-alice`, `api:acct-bob`) may be two people, as the ingest already assumes when it keeps their
conversations apart: a ref naming one account erases that account (its conversations and identities, and the
shared email and phone, which are the requester's data too) and keeps the others' conversations. An email or phone
that several of those accounts gave erases only itself. The person id (`per_…`) always erases everyone.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import redis.asyncio as aioredis

from gateway import keys
from gateway.domain import e164
from gateway.redis_conn import as_str, stream_rows

ACCOUNT_KINDS = frozenset({"api", "sms", "whatsapp", "webchat"})
"""Identities a customer writes from (each has its own conversation pointer). The others (`email:`, `phone:`)
are facts that join accounts into one person."""
WHOLE, ACCOUNT, IDENTIFIER = "person", "account", "identifier"
"""An erasure's scope: everyone in the person, one account of a shared person, or only a shared email or phone."""


def is_account(ident: str) -> bool:
    return ident.partition(":")[0] in ACCOUNT_KINDS


def shared(idents: Sequence[str]) -> bool:
    """Two accounts of one channel: possibly two people (the ingest's `another_account_writes_in` rule).

    >>> shared(["api:acct-alice", "api:acct-bob", "email:ap@acme.example"]), shared(["api:c-1", "sms:+4917012"])
    (True, False)
    """
    kinds = [i.partition(":")[0] for i in idents if is_account(i)]
    return len(kinds) != len(set(kinds))


def given(key: str, profile: Mapping[str, Any]) -> set[str]:
    """The email and phone identities a conversation's customer gave (as the ingest derives them)."""
    found = {f"email:{profile['email'].lower()}"} if profile.get("email") else set()
    kind, _, raw = key.partition(":")
    for phone in (e164(profile.get("phone") or ""), e164(raw) if kind in ("sms", "whatsapp") else None):
        if phone:
            found.add(f"phone:{phone}")
    return found


UNLINK = """
-- Take erased identities and conversations off the persons that keep living. KEYS: per person (idents, convs,
-- current-conversation pointer). ARGV: 1 how many identities, then the identities, then the conversations.
-- A pointer left on an erased conversation moves to the person's newest remaining one.
local n = tonumber(ARGV[1])
local erased = {}
for i = n + 2, #ARGV do erased[ARGV[i]] = true end
for k = 1, #KEYS, 3 do
  for i = 2, n + 1 do redis.call('SREM', KEYS[k], ARGV[i]) end
  for i = n + 2, #ARGV do redis.call('ZREM', KEYS[k + 1], ARGV[i]) end
  local current = redis.call('GET', KEYS[k + 2])
  if current and erased[current] then
    local newest = redis.call('ZREVRANGE', KEYS[k + 1], 0, 0)[1]
    if newest then redis.call('SET', KEYS[k + 2], newest) else redis.call('DEL', KEYS[k + 2]) end
  end
end
"""


async def narrowed(
    redis: aioredis.Redis, partitions: int, ref: str, idents: list[str], conv_ids: list[str]
) -> dict[str, Any]:
    """The plan for a ref into a person holding two accounts of one channel (see the module docstring).

    The account is the one named, or the only one whose conversations gave the email or phone named. Its
    conversations are those whose customer it is; one with no record of its account is kept and named."""
    owners = await _owners(redis, partitions, conv_ids, [i for i in idents if is_account(i)])
    accounts = [i for i in idents if is_account(i)]
    named: str | None = ref
    if not is_account(ref):
        holders = {key for key, facts in owners.values() if key and ref in facts}
        named = holders.pop() if len(holders) == 1 else None
    if named is None:  # an email or phone several accounts gave: whose it is, nothing tells
        return {"scope": IDENTIFIER, "idents": [ref], "conversations": [], "accounts_kept": accounts}
    return {"scope": ACCOUNT, "idents": sorted({named, *(i for i in idents if not is_account(i))}),
            "conversations": [c for c in conv_ids if owners[c][0] == named],
            "accounts_kept": [a for a in accounts if a != named],
            "unattributed": [c for c in conv_ids if owners[c][0] is None]}

async def _owners(redis: aioredis.Redis, partitions: int, conv_ids: list[str], accounts: list[str]
                  ) -> dict[str, tuple[str | None, set[str]]]:
    """conversation -> (the account that writes in it, the email and phone identities it gave). From the
    stored conversation; one no worker has handled yet has only its queued entries and its account's
    pointer to go by."""
    async with redis.pipeline(transaction=False) as pipe:
        for conv_id in conv_ids:
            pipe.hget(keys.conversation(conv_id), "customer")
        for account in accounts:
            pipe.get(keys.customer_conversation(account))
        results = await pipe.execute()
    owners: dict[str, tuple[str | None, set[str]]] = {}
    for conv_id, raw in zip(conv_ids, results[: len(conv_ids)], strict=True):
        customer = json.loads(raw) if raw else None
        owners[conv_id] = ((customer["key"], given(customer["key"], customer.get("profile") or {}))
                           if customer else (None, set()))
    pointed = {as_str(c): a for a, c in zip(accounts, results[len(conv_ids):], strict=True) if c}
    unknown = {c for c, (key, _) in owners.items() if key is None}
    for partition in range(partitions if unknown else 0):
        for _, data in stream_rows(await redis.xrange(keys.inbound_stream(partition))):
            if data.get("conv") in unknown and "kind" not in data and data.get("customer"):
                key, known = owners[data["conv"]]
                profile = json.loads(data.get("profile") or "{}")
                owners[data["conv"]] = (key or data["customer"], known | given(data["customer"], profile))
    for conv_id in unknown:
        if owners[conv_id][0] is None and conv_id in pointed:
            owners[conv_id] = (pointed[conv_id], set())
    return owners
