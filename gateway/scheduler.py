"""SLA deadlines in a Redis sorted set, safe with several workers.

Each deadline is a member "<conversation_id>|<kind>" scored by its due time (unix seconds). `due()` leases
with a Lua script (range + move to `now + LEASE_S` in one atomic step), so when several workers poll at once
every deadline is handed to one of them; the caller removes it with `done()` once handled. A deadline whose
handler failed or died comes back when its lease runs out: popped outright, one failing step (or a worker killed
mid-batch) lost it and every deadline after it in the batch, a ladder's last step included. What to *do* with a
deadline is decided by the pure `router.sla.actions_due()` from the conversation's current state, so stale
deadlines are harmless.

A per-conversation set indexes its pending kinds, so `cancel(conversation_id)` does not scan 100k
members. Every escalation is appended with its reason to a stream (`sb:escalations`) for the audit trail.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import redis.asyncio as aioredis
import structlog
from redis.asyncio.client import Pipeline as RedisPipeline

from gateway.redis_conn import as_str, stream_rows
from router.policy import Policy
from router.sla import SlaAction, SlaState, deadlines

log = structlog.get_logger("switchboard.scheduler")

SEP = "|"

_SCHEDULE = """
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1] .. '|' .. ARGV[2])
redis.call('SADD', ARGV[4] .. ARGV[1], ARGV[2])
return 1
"""

_CANCEL = """
local idx = ARGV[3] .. ARGV[1]
local kinds
if ARGV[2] == '' then kinds = redis.call('SMEMBERS', idx) else kinds = {ARGV[2]} end
local n = 0
for _, kind in ipairs(kinds) do
  n = n + redis.call('ZREM', KEYS[1], ARGV[1] .. '|' .. kind)
  redis.call('SREM', idx, kind)
end
return n
"""

_REPLACE = """
-- A conversation's whole ladder in one step: drop its pending kinds, add the new ones. One ZREM, ZADD and SADD
-- for all kinds, not one per kind: a script's every call costs Redis a few µs, and this runs for most messages.
local idx = ARGV[2] .. ARGV[1]
local old = redis.call('SMEMBERS', idx)
if #old > 0 then
  local members = {}
  for i, kind in ipairs(old) do members[i] = ARGV[1] .. '|' .. kind end
  redis.call('ZREM', KEYS[1], unpack(members))
  redis.call('DEL', idx)
end
if #ARGV > 2 then
  local scored, kinds = {}, {}
  for i = 3, #ARGV, 2 do
    table.insert(scored, ARGV[i + 1])
    table.insert(scored, ARGV[1] .. '|' .. ARGV[i])
    table.insert(kinds, ARGV[i])
  end
  redis.call('ZADD', KEYS[1], unpack(scored))
  redis.call('SADD', idx, unpack(kinds))
end
return (#ARGV - 2) / 2
"""

_LEASE_DUE = """
local items = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'WITHSCORES', 'LIMIT', 0, tonumber(ARGV[2]))
for i = 1, #items, 2 do
  redis.call('ZADD', KEYS[1], 'XX', ARGV[3], items[i])
end
return items
"""

_DONE = """
-- Only the lease this caller holds: a deadline the handler re-planned (a new time for the same kind) stays.
local member = ARGV[1] .. '|' .. ARGV[2]
local score = redis.call('ZSCORE', KEYS[1], member)
if score and tonumber(score) == tonumber(ARGV[3]) then
  redis.call('ZREM', KEYS[1], member)
  redis.call('SREM', ARGV[4] .. ARGV[1], ARGV[2])
  return 1
end
return 0
"""

LEASE_S = 120.0
"""How long a deadline handed out by `due()` stays with its caller before it is handed out again: longer than a
step takes (a few Slack calls with 10 s time-outs), short beside the ladder's minutes."""
LEASE_MARGIN_S = 30.0
"""A batch is worked only while this much of its lease is left (`Deadline.running_out`): a hundred steps paced at
one Slack post a second outlast the lease, and another worker would take the rest and fire them a second time."""


class Clock(Protocol):
    def now(self) -> float:
        """Unix seconds."""
        ...


class SystemClock:
    def now(self) -> float:
        return time.time()


class ManualClock:
    """A clock tests move by hand, so SLA breaches happen instantly and deterministically."""

    def __init__(self, start: float = 1_767_225_600.0) -> None:
        self._t = float(start)

    def now(self) -> float:
        return self._t

    def advance(self, seconds: float) -> float:
        self._t += seconds
        return self._t

    def set(self, t: float) -> None:
        self._t = float(t)


@dataclass(frozen=True, slots=True)
class Deadline:
    conversation_id: str
    kind: str
    due: float
    leased_until: float = field(default=0.0, compare=False)
    """Set by `due()`: the lease `done()` gives back."""

    def running_out(self, now: float) -> bool:
        """Too little of the lease left to start on it: leave it (and the rest of its batch) to run out and be
        handed out again, rather than race the worker it goes to."""
        return now >= self.leased_until - LEASE_MARGIN_S


def _parse(member: Any, score: Any) -> Deadline:
    conversation_id, _, kind = as_str(member).partition(SEP)
    return Deadline(conversation_id, kind, float(as_str(score)))


class SlaScheduler:
    def __init__(
        self,
        redis: aioredis.Redis,
        key_prefix: str = "sb:sla",
        escalations_key: str = "sb:escalations",
        escalations_maxlen: int = 100_000,
    ) -> None:
        self.redis = redis
        self.key = f"{key_prefix}:due"
        self.index_prefix = f"{key_prefix}:kinds:"
        self.escalations_key = escalations_key
        self.escalations_maxlen = escalations_maxlen
        self._schedule = redis.register_script(_SCHEDULE)
        self._cancel = redis.register_script(_CANCEL)
        self._lease = redis.register_script(_LEASE_DUE)
        self._done = redis.register_script(_DONE)

    @staticmethod
    def _check(conversation_id: str, kind: str | None) -> None:
        if not conversation_id or SEP in conversation_id or (kind is not None and (not kind or SEP in kind)):
            raise ValueError(f"conversation id and kind must be non-empty and not contain {SEP!r}")

    async def schedule(self, conversation_id: str, kind: str, due: float) -> None:
        """Re-scheduling the same (conversation, kind) moves it instead of adding a second deadline."""
        self._check(conversation_id, kind)
        await self._schedule(keys=[self.key], args=[conversation_id, kind, repr(float(due)), self.index_prefix])
        log.debug("sla_scheduled", conversation_id=conversation_id, kind=kind, due=due)

    async def cancel(self, conversation_id: str, kind: str | None = None) -> int:
        self._check(conversation_id, kind)
        n = int(await self._cancel(keys=[self.key], args=[conversation_id, kind or "", self.index_prefix]))
        if n:
            log.debug("sla_cancelled", conversation_id=conversation_id, kind=kind, removed=n)
        return n

    async def plan(self, state: SlaState, policy: Policy) -> list[Deadline]:
        """Replace a conversation's deadlines with those of its current wait (call on every state change)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            planned = self.stage_plan(pipe, state, policy)
            await pipe.execute()
        return planned

    def stage_plan(self, pipe: RedisPipeline, state: SlaState, policy: Policy, fresh: bool = False) -> list[Deadline]:
        """`plan` queued on a caller's pipeline (the worker's one write per routed message); `fresh`: the
        conversation has no ladder yet (see `stage_replace`)."""
        planned = [Deadline(state.conversation_id, step.value, at) for step, at in deadlines(state, policy)]
        self.stage_replace(pipe, state.conversation_id, planned, fresh)
        return planned

    def stage_replace(self, pipe: RedisPipeline, conversation_id: str, planned: Sequence[Deadline],
                      fresh: bool = False) -> None:
        """Exactly `planned` pending for the conversation afterwards (none: a cancel).

        EVAL with the source, not EVALSHA: a pipeline cannot reload a script Redis forgot after a restart, and
        redis-py would otherwise ask SCRIPT EXISTS on every execute. A `fresh` conversation (never saved, so
        nothing planned for it) needs nothing removed: a ZADD and an SADD, no script (~10 µs of Redis less for
        every new conversation); a ladder left by some other path would only be moved, and stale deadlines are
        harmless (see the module's docstring)."""
        self._check(conversation_id, None)
        for d in planned:
            self._check(d.conversation_id, d.kind)
        if fresh:
            if planned:
                pipe.zadd(self.key, {f"{conversation_id}{SEP}{d.kind}": d.due for d in planned})
                pipe.sadd(self.index_prefix + conversation_id, *(d.kind for d in planned))
            return
        args: list[str] = [conversation_id, self.index_prefix]
        for d in planned:
            args += [d.kind, repr(float(d.due))]
        pipe.eval(_REPLACE, 1, self.key, *args)

    async def due(self, now: float, limit: int = 100) -> list[Deadline]:
        """Up to `limit` deadlines due at `now`, each leased to this caller until `now + LEASE_S`: call `done()`
        for each one handled (or moved: `schedule` replaces the lease), or it is handed out again then."""
        until = float(now) + LEASE_S
        raw = await self._lease(keys=[self.key], args=[repr(float(now)), int(limit), repr(until)])
        out: list[Deadline] = []
        for member, score in zip(raw[::2], raw[1::2], strict=True):
            d = _parse(member, score)
            out.append(Deadline(d.conversation_id, d.kind, d.due, until))
        if out:
            # One event per batch (ids capped): a backlog drain must not flood the log.
            log.info("sla_deadlines_due", count=len(out), conversation_ids=[d.conversation_id for d in out[:20]])
        return out

    async def done(self, deadline: Deadline) -> bool:
        """Remove a deadline `due()` handed out, unless it was moved since (re-planned, re-scheduled)."""
        removed = await self._done(keys=[self.key], args=[deadline.conversation_id, deadline.kind,
                                                          repr(deadline.leased_until), self.index_prefix])
        return bool(removed)

    async def poll(self, clock: Clock, limit: int = 100) -> list[Deadline]:
        return await self.due(clock.now(), limit)

    async def pending(self, conversation_id: str | None = None) -> list[Deadline]:
        if conversation_id is None:
            raw: list[Any] = await self.redis.zrange(self.key, 0, -1, withscores=True)
            return [_parse(pair[0], pair[1]) for pair in raw]
        kinds = sorted(as_str(k) for k in await self.redis.smembers(self.index_prefix + conversation_id))
        scores = await self.redis.zmscore(self.key, [f"{conversation_id}{SEP}{k}" for k in kinds]) if kinds else []
        return [Deadline(conversation_id, k, float(s)) for k, s in zip(kinds, scores, strict=True) if s is not None]

    async def planned(self) -> set[str]:
        """Every conversation with a deadline pending."""
        return {_parse(member, 0).conversation_id async for member, _ in self.redis.zscan_iter(self.key)}

    async def count(self) -> int:
        return int(await self.redis.zcard(self.key))

    async def next_due(self) -> float | None:
        """When the earliest deadline falls, so an idle poller can sleep exactly that long."""
        first = await self.redis.zrange(self.key, 0, 0, withscores=True)
        return float(first[0][1]) if first else None

    async def record(self, action: SlaAction, at: float) -> str:
        """Append an escalation with its reason; the stream is the audit trail leads can query."""
        fields = {
            "conversation_id": action.conversation_id,
            "kind": action.kind.value,
            "step": action.step.value,
            "channel": action.channel,
            "reason": action.reason,
            "agent": action.agent or "",
            "suggested_agent": action.suggested_agent or "",
            "at": repr(at),
        }
        entry = await self.redis.xadd(
            self.escalations_key, fields, maxlen=self.escalations_maxlen, approximate=True  # type: ignore[arg-type]
        )
        log.info("sla_escalation", conversation_id=action.conversation_id, step=action.step.value,
                 channel=action.channel, reason=action.reason)
        return as_str(entry)

    async def escalations(self, conversation_id: str | None = None, count: int = 100) -> list[dict[str, str]]:
        """Newest first; filtered client-side because the stream is capped and rarely read."""
        rows = await self.redis.xrevrange(self.escalations_key, count=count if conversation_id is None else None)
        out: list[dict[str, str]] = []
        for entry_id, row in stream_rows(rows):
            if conversation_id is None or row["conversation_id"] == conversation_id:
                row["id"] = entry_id
                out.append(row)
                if len(out) >= count:
                    break
        return out

