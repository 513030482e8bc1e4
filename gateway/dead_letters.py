"""Entries the worker parked in `sb:dead`, and putting them back once their cause is fixed.

An entry is parked only for a failure of its own (a bug, data a handler cannot take): outages are
waited out (`gateway.worker.transient`). A parked customer message has reached no agent, so parking
must not be the end of it: a lead sees what is parked (`/switchboard dead`) and replays it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import redis.asyncio as aioredis
import structlog

from gateway import keys
from gateway.domain import Conversation
from gateway.redis_conn import as_str, stream_rows
from gateway.store import ConversationStore
from gateway.streams import REPLAYED_FROM
from integrations.slack.escape import escape

if TYPE_CHECKING:
    from gateway.pipeline import Pipeline

log = structlog.get_logger(__name__)

REPLAY_HINT = "a lead can put it back with `/switchboard dead replay` once the cause is fixed"
TOLD = {
    "inbound": "⚠️ A message from the customer could not be handled ({error}) and is parked, so it is not in "
               "this thread; it is kept in the conversation's transcript, and " + REPLAY_HINT + ".",
    "transfer": "⚠️ The transfer to {skill} failed ({error}) and is parked; this card still leads. Transfer "
                "again, or " + REPLAY_HINT + ".",
    "agent_reply": "❌ A reply did not reach the customer ({error}) and is parked; it is marked ❌. Send it again "
                   "(in shorter parts if it was too long), or " + REPLAY_HINT + ".",
    "notify": "❌ Our notice to the customer (that this conversation is resolved) did not reach them ({error}) and "
              "is parked; tell them another way, or " + REPLAY_HINT + ".",
}
"""What the card's thread is told when an entry of that kind is parked. A reply the customer's channel would
not take is told by `gateway.outbound` as it gives up; one parked for a failure of its own (a bug, a reply
no retry can make valid) is told here, or its agent waited for a ✅ that never came. The rest concern no
live card (retiring an old one, our own notes). Only the error is quoted, never the reply."""

class ParkNow(Exception):
    """An entry no retry can handle (a kind this version does not know): the worker parks it at once, with
    the bookkeeping and the thread note any parked entry gets, instead of spending ten attempts on it."""


async def park(redis: aioredis.Redis, fields: Mapping[str, Any], error: str, **where: Any) -> None:
    """Put an entry in `sb:dead` with why (cut to 500 characters) and, from the worker, where it was read
    (`entry`, `partition`). The one writer: `list_parked`, `replay` and erasure read what it writes."""
    dead: dict[Any, Any] = {**fields, **where, "error": error[:500]}
    await redis.xadd(keys.DEAD, dead)


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
    for entry_id, fields in stream_rows(rows):
        out.append(Parked(entry_id, fields.get("conv", "?"), fields.get("kind", "inbound"),
                          fields.get("error", "")))
    return total, out


_TAKE_AND_QUEUE = """
if redis.call('XDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('XADD', KEYS[2], '*', unpack(ARGV, 2))
return 1
"""
"""Queue a parked entry only if this replay is the one that took it off `sb:dead`: two leads replaying at
once queued every entry twice (harmless to the effects, which are looked up, but the counts were wrong)."""


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
        for entry_id, fields in stream_rows(rows):
            original = fields.get(REPLAYED_FROM) or fields.get("entry", "")
            work: dict[Any, Any] = {k: v for k, v in fields.items() if k not in BOOKKEEPING}
            stream = await _stream_of(store, fields, partitions)
            args = [entry_id, REPLAYED_FROM, original, *(x for kv in work.items() for x in kv)]
            replayed += int(await redis.eval(_TAKE_AND_QUEUE, 2, keys.DEAD, stream, *args))
    log.warning("dead_letters_replayed", user=user, entries=replayed)
    return replayed


async def _stream_of(store: ConversationStore, fields: dict[str, str], partitions: int) -> str:
    """Where the conversation's work is queued: the partition it started on (the ingest script's record, or
    `Conversation.partition`), else its person's. By the person, a replay after a merge split its work."""
    recorded = await store.redis.get(keys.conversation_partition(fields.get("conv", "")))
    if recorded is not None and int(recorded) < partitions:
        return keys.inbound_stream(int(recorded))
    conv = await store.load(fields.get("conv", ""))
    if conv is not None:
        return store.stream_of(conv)
    return keys.inbound_stream(keys.partition_of(fields.get("person") or fields.get("customer", ""), partitions))



async def tell(p: Pipeline, fields: Mapping[str, str], error: str) -> None:
    """An entry was just parked: the people on its conversation's card hear of it, and a parked transfer
    stops counting as on its way, so the agent can transfer again.

    Without this a parked follow-up or transfer left the card looking as if nothing had happened: the
    customer's words missing from the thread, or a Transfer that silently never moved the card."""
    text = told(fields, error)
    if text is None:
        return
    conv = await p.store.load(fields.get("conv", ""))
    if conv is None:
        return
    if fields.get("kind") == "transfer":
        conv = await _drop_move(p, conv, fields.get("ref", ""))
    if conv is None or not conv.card_ts:
        return
    await p.desk.note_in_thread(conv, text)
    marked = MARK.get(fields.get("kind", "inbound"))
    if marked is not None:
        await marked(p, fields)
    if fields.get("kind") == "transfer":
        # The click dropped the claim and left the card as it was (the move was to retire it): redrawn, it
        # offers Claim again instead of a Release nobody can use.
        await p.desk.update_card(conv, f"⚠️ Transfer to {escape(fields.get('skill', '?'))} failed; still here")


async def _mark_reply(p: Pipeline, fields: Mapping[str, str]) -> None:
    """The parked reply itself gets ❌, so its agent sees which one it was. Cosmetic: the note is what counts
    (a reply from before replies carried their Slack message has nothing to mark)."""
    if not (fields.get("slack_channel") and fields.get("slack_ts")):
        return
    try:
        await p.desk.mark_message(fields["slack_channel"], fields["slack_ts"], "x")
    except Exception as exc:
        log.warning("parked_reply_not_marked", conversation_id=fields.get("conv"), error=summary(exc))


MARK: dict[str, Callable[[Pipeline, Mapping[str, str]], Awaitable[None]]] = {"agent_reply": _mark_reply}
"""What else marks a parked entry of that kind, after the thread is told."""


def told(fields: Mapping[str, str], error: str) -> str | None:
    """The thread's line for a parked entry of this kind, or None when there is nothing to tell. The error
    is escaped: an exception's text can quote anything, customer text included."""
    template = TOLD.get(fields.get("kind", "inbound"))
    if template is None:
        return None
    return template.format(error=escape(error[:200]), skill=escape(fields.get("skill", "?")))


async def _drop_move(p: Pipeline, conv: Conversation | None, ref: str) -> Conversation | None:
    """Clear the parked move's ref, unless a later click queued another (that one is still on its way)."""
    for _ in range(3):
        if conv is None or conv.moving_ref != ref:
            return conv
        seen = conv.model_copy()
        conv.moving_ref = None
        if await p.store.save_if(conv, ("moving_ref",), seen):
            return conv
        conv = await p.store.load(conv.id)
    return conv


def summary(exc: BaseException) -> str:
    """One line an agent can read: Slack's own error code where Slack refused, not the client's dump of
    the request (its URL and the whole response)."""
    data = getattr(getattr(exc, "response", None), "data", None)
    if isinstance(data, dict) and data.get("error"):
        return f"Slack answered {data['error']}"
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
