"""Desk statistics over a time window, computed from what Redis already holds.

Why no counters: conversation hashes (`sb:conv:<id>`), transcripts, `sb:outcomes` and `sb:escalations`
are the record of truth, so stats computed from them can be restricted to any subset after the fact
(e.g. a canary arm) without having counted it separately in advance. The cost is a SCAN over
conversation hashes plus one pipelined read per conversation in the window; for tens of thousands of
conversations a day that is well under a second. If it ever is not, per-event counters (HINCRBY per
hour bucket on route/resolve/outcome) can replace the scan; arm comparisons would then need per-arm buckets.
"""

from __future__ import annotations

import json
import statistics
import time
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import redis.asyncio as aioredis

from gateway import keys
from gateway.domain import AGENT_REPLY, BOT_ANSWER, BOT_AUTHOR
from gateway.redis_conn import as_str, stream_rows
from learners.outcomes import FIELD as OUTCOME_FIELD
from learners.outcomes import OUTCOMES_STREAM

ESCALATIONS = f"{keys.PREFIX}escalations"
BREACH_STEPS = frozenset({"escalate", "leads", "reassign"})
"""Steps that fire once a target is missed; `warn`/`nudge` fire before it."""
BATCH = 200
WINDOWS = {"24h": 86400, "1d": 86400, "7d": 7 * 86400, "1h": 3600, "30d": 30 * 86400}
_FIELDS = ("created_at", "state", "skill", "customer", "card_ts", "resolved_at")


@dataclass
class Stats:
    window_s: int
    conversations: int = 0
    by_channel: Counter[str] = field(default_factory=Counter)
    by_skill: Counter[str] = field(default_factory=Counter)
    automated: int = 0
    automation_kept: int = 0
    first_response_s: list[float] = field(default_factory=list)
    resolution_s: list[float] = field(default_factory=list)
    breaches: int = 0
    transfers: int = 0
    csat: list[int] = field(default_factory=list)

    @property
    def automation_share(self) -> float | None:
        return self.automated / self.conversations if self.conversations else None

    @property
    def automation_success(self) -> float | None:
        """Share of bot-answered conversations that never needed a person."""
        return self.automation_kept / self.automated if self.automated else None

    @property
    def csat_avg(self) -> float | None:
        return statistics.fmean(self.csat) if self.csat else None


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile; None for no data (shown as "–", never as 0)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.4999)))
    return ordered[rank - 1]


def _rows(raw: Any) -> list[dict[str, str]]:
    """Stream entries' fields as text; redis-py types them loosely."""
    return [fields for _, fields in stream_rows(raw)]


def _ts(raw: Any) -> float | None:
    if raw is None:
        return None
    value = json.loads(raw)
    return datetime.fromisoformat(value).timestamp() if value else None


def _is_conversation_key(key: str) -> bool:
    return key.count(":") == 2  # sb:conv:<id>, not its :msgs/:claim/:effects/:closed companions


async def _conversation_ids(redis: aioredis.Redis) -> list[str]:
    out = []
    async for key in redis.scan_iter(match=f"{keys.PREFIX}conv:*", count=1000, _type="hash"):
        name = as_str(key)
        if _is_conversation_key(name):
            out.append(name.removeprefix(f"{keys.PREFIX}conv:"))
    return out


def _transcript_facts(stats: Stats, lines: list[Any], had_card: bool, resolved: float | None = None) -> None:
    """First human response (bot answers do not stop that clock) and whether the bot handled it.

    A reply written after the resolve (an afterthought the desk allows) answered nothing: counted, a
    conversation closed without an answer looked answered, and late."""
    first_in: float | None = None
    bot_answered = False
    for line in lines:
        m = json.loads(line)
        at = datetime.fromisoformat(m["at"]).timestamp()
        if m["direction"] == "inbound":
            first_in = first_in if first_in is not None else at
        elif m.get("author") == BOT_AUTHOR:
            bot_answered = bot_answered or str(m.get("id", "")).startswith(BOT_ANSWER)
        elif first_in is not None and str(m.get("id", "")).startswith(AGENT_REPLY):
            if resolved is None or at < resolved:
                stats.first_response_s.append(max(0.0, at - first_in))
            break
    if bot_answered:
        stats.automated += 1
        stats.automation_kept += 0 if had_card else 1


async def compute(redis: aioredis.Redis, window_s: int, now: float | None = None,
                  only: Collection[str] | None = None) -> Stats:
    """Stats for conversations created in the last `window_s` (optionally only the ids in `only`)."""
    now = now or time.time()
    since = now - window_s
    stats = Stats(window_s)
    ids = list(only) if only is not None else await _conversation_ids(redis)
    for start in range(0, len(ids), BATCH):
        batch = ids[start:start + BATCH]
        async with redis.pipeline(transaction=False) as pipe:
            for cid in batch:
                pipe.hmget(keys.conversation(cid), list(_FIELDS))
            rows = await pipe.execute()
        in_window = []
        for cid, row in zip(batch, rows, strict=True):
            created = _ts(row[0])
            if created is None or created < since or created > now:
                continue
            in_window.append((cid, row, created))
        async with redis.pipeline(transaction=False) as pipe:
            for cid, _, _ in in_window:
                pipe.lrange(keys.transcript(cid), 0, -1)
            transcripts = await pipe.execute()
        for (_cid, row, created), lines in zip(in_window, transcripts, strict=True):
            stats.conversations += 1
            customer = json.loads(row[3]) if row[3] else {}
            stats.by_channel[str(customer.get("channel", "unknown"))] += 1
            stats.by_skill[str((json.loads(row[2]) if row[2] else None) or "unrouted")] += 1
            had_card = bool(row[4] and json.loads(row[4]))
            resolved = _ts(row[5])
            if resolved is not None:
                stats.resolution_s.append(max(0.0, resolved - created))
            _transcript_facts(stats, lines, had_card, resolved)
    wanted = set(only) if only is not None else None
    await _events(redis, stats, since, now, wanted)
    return stats


async def _events(redis: aioredis.Redis, stats: Stats, since: float, now: float, wanted: set[str] | None) -> None:
    """Breaches from `sb:escalations`, transfers and CSAT from `sb:outcomes`, by stream id time."""
    lo, hi = f"{int(since * 1000)}-0", f"{int(now * 1000)}-99999999"
    breached: set[str] = set()
    for row in _rows(await redis.xrange(ESCALATIONS, lo, hi)):
        cid = row.get("conversation_id", "")
        if row.get("step") in BREACH_STEPS and (wanted is None or cid in wanted):
            breached.add(cid)
    stats.breaches = len(breached)
    for fields in _rows(await redis.xrange(OUTCOMES_STREAM, lo, hi)):
        raw = fields.get(OUTCOME_FIELD)
        if raw is None:
            continue
        try:
            outcome = json.loads(raw)
        except ValueError:
            continue
        if wanted is not None and outcome.get("conversation_id") not in wanted:
            continue
        if outcome.get("kind") == "transferred":
            stats.transfers += 1
        if outcome.get("csat") is not None:
            stats.csat.append(int(outcome["csat"]))


async def compare_arms(redis: aioredis.Redis, window_s: int, arms: dict[str, str],
                       now: float | None = None) -> dict[str, Stats]:
    """One `Stats` per canary arm, over the conversations recorded in that arm."""
    groups: dict[str, list[str]] = {}
    for cid, arm in arms.items():
        groups.setdefault(arm, []).append(cid)
    return {arm: await compute(redis, window_s, now, only=cids) for arm, cids in sorted(groups.items())}


async def queue(redis: aioredis.Redis) -> dict[str, int]:
    """Open conversations right now: waiting, claimed, and breaching (a missed target, not yet closed)."""
    counts = {"waiting": 0, "claimed": 0, "breaching": 0}
    ids = await _conversation_ids(redis)
    open_ids: set[str] = set()
    for start in range(0, len(ids), BATCH):
        batch = ids[start:start + BATCH]
        async with redis.pipeline(transaction=False) as pipe:
            for cid in batch:
                pipe.hget(keys.conversation(cid), "state")
            states = await pipe.execute()
        for cid, raw in zip(batch, states, strict=True):
            state = json.loads(raw) if raw else None
            if state in ("waiting", "claimed"):
                counts[state] += 1
                open_ids.add(cid)
    since = time.time() - 7 * 86400
    breaching = set()
    for row in _rows(await redis.xrange(ESCALATIONS, f"{int(since * 1000)}-0", "+")):
        if row.get("step") in BREACH_STEPS and row.get("conversation_id") in open_ids:
            breaching.add(row["conversation_id"])
    counts["breaching"] = len(breaching)
    return counts
