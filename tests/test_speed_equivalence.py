"""The scorer's and router's fast paths give exactly what the plain versions they replaced gave.

The plain versions are kept here, verbatim, as the reference: each shortcut (cached tokens and normalised texts,
token-set keyword matching, byte counting of capitals, the hours walk) is only allowed because it
changes no score, reason or deadline, so that is what is checked, on generated texts, hours and waits.
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, time, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from learners import coldstart
from learners.service import _hit_keywords
from router import rules
from router.hours import _span, _zone, add_open_time, describe_local, local
from router.policy import BusinessHours, Policy, load_policy
from router.sla import SlaState, SlaStep, _agent_since, _ladder, _queue_since, _target, deadlines, sla_hours

POLICY = load_policy()
SEEDS = {name: route.keywords for name, route in POLICY.skills.items()}
VOCAB = sorted({kw for kws in SEEDS.values() for kw in kws} | coldstart.POSITIVE | coldstart.NEGATIVE
               | coldstart.NEGATORS | set(coldstart.URGENT_CUES) | coldstart.GREETINGS
               | {"how", "do", "i", "can", "you", "is", "there", "my", "the", "REFUND", "返金", "भुगतान", "ｒｅｆｕｎｄ",
                  "don’t", "café", "👍", "a_b", "x-y"})
PIECES = st.sampled_from(VOCAB) | st.text(max_size=6) | st.sampled_from([" ", "  ", "!", "?", ",", "\n", "'", "’"])
OPENED = st.tuples(st.sampled_from(["", "Hi,", "hello please"]),
                   st.sampled_from([" ".join(o) for o in coldstart.ROUTINE_OPENERS]),
                   st.lists(PIECES, max_size=8).map(" ".join)).map(" ".join)
TEXTS = st.lists(PIECES, max_size=30).map(" ".join) | st.text(max_size=60) | OPENED | st.lists(
    OPENED, min_size=2, max_size=4).map("\n".join)
FAST = settings(max_examples=300, deadline=None)


def ref_words(text: str) -> list[str]:
    if text.isascii():
        return coldstart._ASCII_WORD.findall(text.lower())
    return coldstart._WORD.findall(unicodedata.normalize("NFKC", text).casefold().replace("\u2019", "'"))


def ref_hits(text: str, skills: Mapping[str, Sequence[str]]) -> dict[str, int]:
    lowered = f" {' '.join(ref_words(text))} "
    return {name: sum(1 for kw in seeds if (p := coldstart._phrase(kw)) is not None and p in lowered)
            for name, seeds in skills.items()}


def ref_sentiment(text: str) -> float:
    toks = ref_words(text)
    score = 0.0
    for i, tok in enumerate(toks):
        polarity = 1.0 if tok in coldstart.POSITIVE else -coldstart.WEIGHTS.get(tok, 0.0)
        if polarity and i and toks[i - 1] in coldstart.NEGATORS:
            polarity = -polarity * 0.7
        score += polarity
    if score < 0:
        score -= 0.5 * min(text.count("!"), 4)
    return math.tanh(score / 2.0)


def ref_shouting(line: str) -> bool:
    letters = [c for c in line if c.isalpha()]
    return len(letters) >= 12 and sum(c.isupper() for c in letters) / len(letters) > 0.6


def ref_routine(text: str) -> bool:
    for line in text.splitlines():
        toks = ref_words(line)
        start = next((i for i, t in enumerate(toks) if t not in coldstart.GREETINGS), len(toks))
        head = tuple(toks[start:start + 4])
        if any(head[: len(o)] == o for o in coldstart.ROUTINE_OPENERS) and not coldstart._NOT_ROUTINE.intersection(
                toks):
            return True
    return False


def ref_distribution(text: str, skills: dict[str, tuple[str, ...]]) -> dict[str, float]:
    exps = {name: math.exp(coldstart.HIT_LOGIT * n) for name, n in ref_hits(text, skills).items()}
    total = sum(exps.values())
    return {name: round(v / total, 4) for name, v in exps.items()}


@FAST
@given(text=TEXTS, shout=st.booleans())
def test_rules_scores_are_unchanged(text: str, shout: bool) -> None:
    text = text.upper() if shout else text
    assert coldstart.words(text) == ref_words(text)
    assert coldstart.sentiment(text) == ref_sentiment(text)
    assert coldstart.routine_question(text) == ref_routine(text)
    assert coldstart.skill_distribution(text, SEEDS) == ref_distribution(text, SEEDS)
    for line in text.splitlines():
        assert coldstart._shouting(line) == ref_shouting(line)


@FAST
@given(text=TEXTS, seeds=st.lists(st.sampled_from([*VOCAB, "not working", "sign up", "€", "Doesn't  work,"]),
                                   max_size=8))
def test_keyword_hits_are_unchanged_for_any_seeds(text: str, seeds: list[str]) -> None:
    """Duplicates, phrases, unmatchable seeds, and lists (never cached) as well as tuples."""
    skills: dict[str, Sequence[str]] = {"a": tuple(seeds), "b": list(seeds), "c": ()}
    assert coldstart.hits(text, skills) == ref_hits(text, skills)
    for hits in (ref_hits(text, skills), {}):
        expected = {s: [kw for kw, k in ref_hits(text, {kw: (kw,) for kw in skills[s]}).items() if k]
                    for s, n in hits.items() if n}
        assert _hit_keywords(text, skills, hits) == (expected if hits else None)


@FAST
@given(text=TEXTS, other=TEXTS)
def test_router_text_helpers_are_unchanged(text: str, other: str) -> None:
    plain: Callable[[str], str] = rules.normalise.__wrapped__
    assert rules.normalise(text) == plain(text)
    a, b = frozenset(plain(text).split()), frozenset(plain(other).split())
    assert rules._overlap(a, b) == (len(a & b) / len(a | b) if a and b else 0.0)


MINUTES = st.integers(0, 24 * 60 - 1).map(lambda m: time(*divmod(m, 60)))
HOURS = st.tuples(
    st.sampled_from(["UTC", "Europe/Berlin", "America/New_York", "Asia/Tokyo", "Australia/Lord_Howe"]),
    st.sets(st.integers(0, 6), min_size=1).map(lambda d: tuple(sorted(d))),
    MINUTES,
    MINUTES,
).filter(lambda h: h[2] != h[3]).map(lambda h: BusinessHours(timezone=h[0], days=h[1], open=h[2], close=h[3]))
INSTANTS = st.floats(1_700_000_000, 1_900_000_000)


def ref_add_open_time(hours: BusinessHours | None, start: float, seconds: float) -> float:
    if hours is None or seconds <= 0:
        return start + max(seconds, 0.0)
    left = seconds
    day = datetime.fromtimestamp(start, _zone(hours.timezone)).date() - timedelta(days=1)
    for walked in range(3 * 366):
        span = _span(hours, day)
        day += timedelta(days=1)
        if span is None or span[1] <= start:
            continue
        opens = max(span[0], start)
        if opens + left <= span[1]:
            return opens + left
        left -= span[1] - opens
        if walked >= 14:
            week = sum(e - b for b, e in (s for s in (_span(hours, day + timedelta(days=i)) for i in range(7)) if s))
            if left > 2 * week:
                skip = int(left // week) - 1
                day += timedelta(days=7 * skip)
                left -= skip * week
    return start + seconds


@FAST
@given(hours=HOURS, start=INSTANTS, seconds=st.sampled_from([0, 30, 450, 675.0, 1500, 7200, 86400, 7 * 86400]))
def test_hours_arithmetic_is_unchanged(hours: BusinessHours, start: float, seconds: float) -> None:
    assert add_open_time(hours, start, seconds) == ref_add_open_time(hours, start, seconds)
    t = local(hours, datetime.fromtimestamp(start, UTC))
    assert describe_local(hours, t) == f"{('Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat', 'Sun')[t.weekday()]} " \
                                       f"{t:%H:%M} {hours.timezone}"


def ref_deadlines(state: SlaState, policy: Policy) -> list[tuple[SlaStep, float]]:
    if state.resolved or state.answered:
        return []
    ladder = _ladder(state)
    level = max((i for i, step in enumerate(ladder) if step.value in state.done), default=-1)
    _, target = _target(state, policy)
    esc = policy.escalation
    out = []
    for i, step in enumerate(ladder):
        if i <= level:
            continue
        after = {SlaStep.WARN: target * esc.warn_fraction, SlaStep.NUDGE: target * esc.warn_fraction,
                 SlaStep.ESCALATE: target, SlaStep.REASSIGN: target, SlaStep.LEADS: target + esc.leads_after}[step]
        since = {SlaStep.NUDGE: _agent_since, SlaStep.REASSIGN: _agent_since}.get(step, _queue_since)(state)
        out.append((step, ref_add_open_time(sla_hours(state, policy), since, after)))
    return out


@FAST
@given(
    hours=st.none() | HOURS,
    clock=st.sampled_from(["business", "calendar"]),
    skill=st.sampled_from([*sorted(POLICY.skills), "unknown"]),
    since=INSTANTS,
    claimed=st.sampled_from([None, "U1"]),
    responded=st.booleans(),
    done=st.sets(st.sampled_from([s.value for s in SlaStep])),
    claimed_after=st.none() | st.floats(0, 20_000),
    requeued_after=st.none() | st.floats(0, 20_000),
)
def test_sla_deadlines_are_unchanged(hours: BusinessHours | None, clock: str, skill: str, since: float,
                                     claimed: str | None, responded: bool, done: set[str],
                                     claimed_after: float | None, requeued_after: float | None) -> None:
    policy = POLICY.with_changes(business_hours=hours.model_dump(mode="json") if hours else None,
                                 escalation={**POLICY.escalation.model_dump(mode="json"), "clock": clock})
    state = SlaState("conv_e", skill, waiting_since=since, claimed_by=claimed, responded=responded,
                     done=frozenset(done), claimed_at=None if claimed_after is None else since + claimed_after,
                     requeued_at=None if requeued_after is None else since + requeued_after)
    assert deadlines(state, policy) == ref_deadlines(state, policy)


def test_reference_hours_examples_still_hold() -> None:
    """The reference itself, on the docstring's example, so a broken copy cannot pass everything vacuously."""
    weekdays = BusinessHours(timezone="UTC", days=(0, 1, 2, 3, 4), open=time(9), close=time(17))
    friday_4pm = datetime(2026, 1, 2, 16, tzinfo=UTC).timestamp()
    monday_10am = datetime(2026, 1, 5, 10, tzinfo=UTC).timestamp()
    assert ref_add_open_time(weekdays, friday_4pm, 7200) == monday_10am == add_open_time(weekdays, friday_4pm, 7200)
