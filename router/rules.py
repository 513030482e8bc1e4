"""The routing rules, one small function each, evaluated over the whole conversation.

Each rule reads a precomputed `Facts` (normalised texts are built once per decision, not per rule) and
returns a `Finding` or None. Reason strings are what leads read on the card, so their wording is part
of the contract: "urgency 0.91 ≥ 0.80", "keyword 'unacceptable'", "customer asked for a human twice".
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from datetime import datetime
from functools import lru_cache
from typing import NamedTuple

from gateway.domain import Conversation, Scores
from router.capacity import agent_available
from router.context import RoutingContext
from router.hours import describe_local, local, open_at
from router.policy import Policy

_NON_WORD = re.compile(r"[^\w']+")
REPEAT_WINDOW = 8
"""Only the latest inbound messages are compared for repeats: keeps the pairwise check O(1) per decision."""
MIN_REPEAT_WORDS = 3


@lru_cache(maxsize=512)
def normalise(text: str) -> str:
    """Lower-case, punctuation to spaces, padded so phrase checks can match whole words with `f' {p} '`.

    Cached: every decision normalises the whole conversation again, so all but its newest message (and all of
    them for the hand-off's second decision) were done before. 512 entries hold the recent messages of the
    conversations a worker is routing, and at most a few MB however long they are (4,000 characters each).

    A typographic apostrophe (U+2019, what phones type) is the straight one policies are written with: split at
    it, "won’t refund" never matched the keyword "won't refund" (the learners fold it the same way)."""
    folded = text.lower().replace("\u2019", "'")
    return f" {_NON_WORD.sub(' ', folded).strip()} "


class Facts(NamedTuple):
    """Inputs of one decision. NamedTuples rather than frozen dataclasses: same immutability, but
    construction is several times cheaper, and decide() builds one Facts and ~3 Findings per call."""

    conversation: Conversation
    scores: Scores
    policy: Policy
    context: RoutingContext
    now: datetime
    skill: str
    inbound: tuple[str, ...]
    """Normalised inbound texts, oldest first."""


class Finding(NamedTuple):
    reason: str
    needs_human: bool = False
    priority: int | None = None
    keep: bool = False
    """Shown even when it did not decide the route (e.g. after hours, previous agent away)."""
    channel: str | None = None
    agent: str | None = None


Rule = Callable[[Facts], Finding | None]


def _compile(phrases: tuple[str, ...]) -> re.Pattern[str] | None:
    """One alternation per phrase list: a single regex scan per message instead of one `in` per phrase.
    Longer phrases first, so "talk to someone" wins over a shorter phrase inside it."""
    cleaned = sorted({n for n in (normalise(p).strip() for p in phrases) if n}, key=lambda p: (-len(p), p))
    if not cleaned:
        return None
    return re.compile(" (" + "|".join(re.escape(p) for p in cleaned) + ") ")


_PATTERNS: dict[int, tuple[Sequence[str], re.Pattern[str] | None]] = {}


def _pattern(phrases: Sequence[str]) -> re.Pattern[str] | None:
    """Keyed by the identity of the (immutable) policy tuple: hashing a tuple of strings on every call
    cost more than the search itself. The stored reference keeps the id from being reused."""
    hit = _PATTERNS.get(id(phrases))
    if hit is not None and hit[0] is phrases:
        return hit[1]
    if len(_PATTERNS) > 512:
        _PATTERNS.clear()
    pattern = _compile(tuple(phrases))
    _PATTERNS[id(phrases)] = (phrases, pattern)
    return pattern


def find_phrase(normalised: str, phrases: Sequence[str]) -> str | None:
    """The first phrase found as whole words in an already `normalise`d text (phrases are normalised
    here the same way, so "doesn't work," in a policy still matches)."""
    pattern = _pattern(phrases)
    if pattern is None:
        return None
    m = pattern.search(normalised)
    return m.group(1) if m else None


def judged(f: Facts) -> tuple[str, ...]:
    """The inbound texts this decision judges: all of them, or those since an agent's "Back to bot".

    The agent who handed the conversation back had read the earlier ones. Judged again, a request for a human
    made before the hand-back sent every later message back to a person, and the bot never had its turn."""
    since = f.context.handed_back_at
    return f.inbound if since is None else f.inbound[since:]


def _times(n: int) -> str:
    return "once" if n == 1 else "twice" if n == 2 else f"{n} times"


def human_requested(f: Facts) -> Finding | None:
    pattern = _pattern(f.policy.human_request_phrases)  # once per decision, not once per message
    if pattern is None:
        return None
    asks = sum(1 for text in judged(f) if pattern.search(text))
    if not asks:
        return None
    return Finding(f"customer asked for a human {_times(asks)}", needs_human=True, priority=2 if asks > 1 else 3)


def escalation_keyword(f: Facts) -> Finding | None:
    pattern = _pattern(f.policy.escalation_keywords)  # once per decision, not once per message
    if pattern is None:
        return None
    for text in reversed(judged(f)):
        m = pattern.search(text)
        if m:
            return Finding(f"keyword '{m.group(1)}'", needs_human=True, priority=2)
    return None


def vip_tier(f: Facts) -> Finding | None:
    tier = (f.conversation.customer.profile.tier or "").lower()
    if tier in f.policy.vip_tiers:
        return Finding(f"VIP tier {tier}", needs_human=True, priority=f.policy.vip_tiers[tier])
    return None


def urgency(f: Facts) -> Finding | None:
    t = f.policy.thresholds
    u = f.scores.urgency
    if u >= t.urgent:
        return Finding(f"urgency {u:.2f} ≥ {t.urgent:.2f}", needs_human=True, priority=1)
    if u > t.automation_urgency_ceiling:
        return Finding(f"urgency {u:.2f} > {t.automation_urgency_ceiling:.2f}", needs_human=True)
    return None


def sentiment(f: Facts) -> Finding | None:
    floor = f.policy.thresholds.sentiment_floor
    s = f.scores.sentiment
    if s < floor:
        return Finding(f"sentiment {s:.2f} < {floor:.2f}", needs_human=True, priority=2)
    return None


def sentiment_trend(f: Facts) -> Finding | None:
    """A customer sliding from calm into negative needs a person before they hit the floor."""
    history = f.context.sentiment_history
    if len(history) < 2 or history[-1] >= 0:
        return None
    best = max(history[:-1])
    if best - history[-1] >= f.policy.thresholds.sentiment_trend_drop:
        return Finding(
            f"sentiment worsening {best:.2f} → {history[-1]:.2f} over {len(history)} messages",
            needs_human=True,
            priority=3,
        )
    return None


def _overlap(a: frozenset[str], b: frozenset[str]) -> float:
    """Jaccard; the union's size from the intersection's, without building the union."""
    if not a or not b:
        return 0.0
    both = len(a & b)
    return both / (len(a) + len(b) - both)


def repeating(f: Facts) -> Finding | None:
    """Saying the same thing again means whatever answered them (bot or macro) did not land."""
    texts = judged(f)
    if len(texts) < 2:
        return None
    recent = [frozenset(t.split()) for t in texts[-REPEAT_WINDOW:]]
    floor = f.policy.thresholds.repeat_similarity
    repeats = 0
    for i in range(1, len(recent)):
        if len(recent[i]) >= MIN_REPEAT_WORDS and any(_overlap(recent[i], recent[j]) >= floor for j in range(i)):
            repeats += 1
    if not repeats:
        return None
    return Finding(f"customer repeated themselves {_times(repeats)}", needs_human=True, priority=3)


def bot_failed(f: Facts) -> Finding | None:
    ctx = f.context
    if ctx.bot_handoff_reason:
        return Finding(f"bot handed off: {ctx.bot_handoff_reason}", needs_human=True)
    if ctx.bot_failed:
        n = ctx.bot_answers
        return Finding(f"bot answer did not help{f' ({n} answers)' if n > 1 else ''}", needs_human=True)
    return None


def returning_customer(f: Facts) -> Finding | None:
    """Continuity: a customer back within the window goes to the agent who already knows the case.

    Not after "Back to bot": an agent who knew the case has just given it to the bot, on purpose."""
    ctx = f.context
    agent = ctx.previous_agent
    if not agent or ctx.handed_back_at is not None:
        return None
    if ctx.previous_resolved_at is not None and not ctx.reopened:
        age = (f.now - ctx.previous_resolved_at).total_seconds()
        if age > f.policy.returning_window:
            return None
    what = "reopened conversation" if ctx.reopened else "returning customer"
    available = ctx.previous_agent_available
    if available is None:
        available = agent_available(agent, ctx.agents, f.policy)
    if available:
        return Finding(f"{what}: previous agent {agent} available", needs_human=True, agent=agent)
    return Finding(f"{what}: previous agent {agent} unavailable", keep=True)


def after_hours(f: Facts) -> Finding | None:
    hours = f.policy.hours_for(f.skill)
    if hours is None:
        return None
    t = local(hours, f.now)  # once, for both the test and the description
    if open_at(hours, t):
        return None
    where = f" → {hours.after_hours_channel}" if hours.after_hours_channel else ""
    return Finding(f"outside business hours ({describe_local(hours, t)}){where}", keep=True,
                   channel=hours.after_hours_channel)


def automation_missing(f: Facts) -> Finding | None:
    """No bot at all: a route to automation was a hand-off from nobody, with a "passing you to a member of our
    team" notice to every such customer, and dry runs counted conversations "to the bot" that none would get."""
    return None if f.context.automation else Finding("no automation configured", needs_human=True)


def automation_paused(f: Facts) -> Finding | None:
    policy = f.policy
    if policy.automation_paused:
        return Finding("automation paused", needs_human=True)
    route = policy.route_for(f.skill)
    if route.automation_paused:
        return Finding(f"automation paused for {f.skill}", needs_human=True)
    if not route.automation:
        return Finding(f"automation off for {f.skill}", needs_human=True)
    return None


def automation_confidence(f: Facts) -> Finding | None:
    floor = f.policy.thresholds.automation_success_floor
    p = f.scores.automation_success
    if p < floor:
        return Finding(f"automation success {p:.2f} < {floor:.2f}", needs_human=True)
    return Finding(f"automation success {p:.2f} ≥ {floor:.2f}")


RULES: tuple[Rule, ...] = (
    human_requested,
    escalation_keyword,
    vip_tier,
    urgency,
    sentiment,
    sentiment_trend,
    repeating,
    bot_failed,
    returning_customer,
    after_hours,
    automation_missing,
    automation_paused,
    automation_confidence,
)
"""Order is display order: the strongest reasons first, so the card reads top-down."""
