"""Entries the worker parked in `sb:dead`, and putting them back once their cause is fixed.

An entry is parked only for a failure of its own (a bug, data a handler cannot take): outages are
waited out (`gateway.worker.transient`). A parked customer message has reached no agent, so parking
must not be the end of it: a lead sees what is parked (`/switchboard dead`) and replays it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
import structlog

from gateway import keys
from gateway.redis_conn import as_str
from gateway.store import ConversationStore
from gateway.streams import REPLAYED_FROM

log = structlog.get_logger(__name__)

BOOKKEEPING = ("entry", "partition", "error", "attempt", REPLAYED_FROM)
"""Fields the parking added (and a reply's delivery attempts: a replay starts a fresh budget)."""


@dataclass(frozen=True, slots=True)
class Parked:
    id: str
    conversation_id: str
    kind: str
    error: str


async def parked(redis: aioredis.Redis, limit: int = 10) -> tuple[int, list[Parked]]:
    """How many entries are parked, and the oldest `limit` of them."""
    total = int(await redis.xlen(keys.DEAD))
    rows: Any = await redis.xrange(keys.DEAD, count=limit)
    out = []
    for entry_id, raw in rows or []:
        fields = {as_str(k): as_str(v) for k, v in raw.items()}
        out.append(Parked(as_str(entry_id), fields.get("conv", "?"), fields.get("kind", "inbound"),
                          fields.get("error", "")))
    return total, out


async def replay(redis: aioredis.Redis, store: ConversationStore, partitions: int, user: str) -> int:
    """Queue every entry parked when the replay starts again on its customer's partition (behind their
    newer messages, which went on meanwhile), and take it off the dead-letter stream in the same step.
    What is parked while it runs (a replayed entry failing again, say) waits for the next replay."""
    replayed = 0
    newest: Any = await redis.xrevrange(keys.DEAD, count=1)
    if not newest:
        return 0
    last, start = as_str(newest[0][0]), "-"
    while True:
        rows: Any = await redis.xrange(keys.DEAD, min=start, max=last, count=100)
        if not rows:
            break
        start = "(" + as_str(rows[-1][0])
        for entry_id, raw in rows:
            fields = {as_str(k): as_str(v) for k, v in raw.items()}
            original = fields.get(REPLAYED_FROM) or fields.get("entry", "")
            work: dict[Any, Any] = {k: v for k, v in fields.items() if k not in BOOKKEEPING}
            stream = keys.inbound_stream(keys.partition_of(await _owner(store, fields), partitions))
            async with redis.pipeline(transaction=True) as pipe:
                pipe.xadd(stream, {**work, REPLAYED_FROM: original})
                pipe.xdel(keys.DEAD, entry_id)
                await pipe.execute()
            replayed += 1
    log.warning("dead_letters_replayed", user=user, entries=replayed)
    return replayed


async def _owner(store: ConversationStore, fields: dict[str, str]) -> str:
    """The key the ingest script partitioned by: the person (or, before identity, the channel customer)."""
    if fields.get("person"):
        return fields["person"]
    conv = await store.load(fields.get("conv", ""))
    if conv is not None:
        return conv.customer.person_id or conv.customer.key
    return fields.get("customer", "")

