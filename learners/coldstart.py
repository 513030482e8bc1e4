"""Rules that score a message before any model has learned anything.

They are deliberately simple and explainable: a lexicon for mood, cue words for urgency and the
policy's seed keywords for skill. The online learners blend away from them as labels arrive.
"""

from __future__ import annotations

import functools
import math
import re
import unicodedata
from collections.abc import Iterable

from gateway.domain import Scores
from learners.base import SkillSeeds

VERSION = "rules-1"
HIT_LOGIT = 1.5
"""Logit per keyword hit: one hit makes a skill ~4.5 times as likely as a skill without one."""

_ASCII_WORD = re.compile(r"[a-z0-9']+")


def _ranges(codes: list[int]) -> str:
    """A regex character-class body for sorted code points, as compact `a-b` runs."""
    out, start = [], codes[0]
    for prev, cur in zip(codes, [*codes[1:], -1], strict=True):
        if cur != prev + 1:
            out.append(re.escape(chr(start)) + ("-" + re.escape(chr(prev)) if prev > start else ""))
            start = cur
    return "".join(out)


_MARKS = _ranges(
    [c for c in range(0x20000) if unicodedata.category(chr(c)).startswith("M")] + list(range(0xE0100, 0xE01F0))
)
"""Combining marks (Devanagari vowel signs, Arabic harakat...): `\\w` leaves them out, which would cut
'भुगतान' into three 'words'. Built once from unicodedata (~15 ms) so the pattern follows the Unicode data."""
_UNSPACED = (
    r"\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff\u3040-\u30ff\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff"
    r"\uf900-\ufaff\uff66-\uff9f\U00020000-\U0002fa1f"
)
"""Scripts written without spaces (Thai, Lao, Myanmar, Khmer, kana, Han): one token per character, so the
keyword '返金' is found inside '返金してください' instead of needing the whole run as one word."""
_WORD = re.compile(rf"[{_UNSPACED}]|(?:[^\W_{_UNSPACED}]|[{_MARKS}]|')+")

POSITIVE = frozenset(
    "thanks thank great love awesome perfect happy excellent good helpful appreciate amazing nice "
    "wonderful fantastic resolved works glad pleased".split()
)
NEGATIVE = frozenset(
    "angry furious terrible awful horrible worst hate unacceptable ridiculous disappointed annoyed "
    "frustrated frustrating useless broken bad poor scam fraud never waste wasted rude upset "
    "disgusting pathetic incompetent wrong delayed cancelled stuck lost".split()
)
NEGATORS = frozenset("not no never don't doesn't didn't isn't wasn't can't cannot won't".split())
URGENT_CUES = {
    "urgent": 0.5,
    "urgently": 0.5,
    "asap": 0.45,
    "immediately": 0.45,
    "emergency": 0.6,
    "now": 0.15,
    "today": 0.15,
    "outage": 0.45,
    "down": 0.2,
    "critical": 0.5,
    "deadline": 0.3,
    "stolen": 0.55,
    "fraud": 0.5,
    "hacked": 0.55,
    "locked": 0.3,
    "blocked": 0.3,
    "charged": 0.15,
    "twice": 0.15,
    "lawyer": 0.4,
    "chargeback": 0.4,
    "unacceptable": 0.3,
    "still": 0.15,
    "again": 0.1,
}


def words(text: str) -> list[str]:
    """Casefolded word tokens in any script; punctuation, symbols and emoji are separators.

    ASCII text keeps its historical tokenizer byte for byte (the seed lexicons and measured accuracy
    depend on it); other text is NFKC-normalised first so full-width 'ｒｅｆｕｎｄ' and 'refund' are one
    word, and a typographic apostrophe counts as one ("don’t" is a negator like "don't").
    """
    if text.isascii():
        return _ASCII_WORD.findall(text.lower())
    return _WORD.findall(unicodedata.normalize("NFKC", text).casefold().replace("\u2019", "'"))


def sentiment(text: str) -> float:
    """Lexicon polarity in [-1, 1] with one-word negation; shouting pushes it down."""
    toks = words(text)
    score = 0.0
    for i, tok in enumerate(toks):
        polarity = 1.0 if tok in POSITIVE else -1.0 if tok in NEGATIVE else 0.0
        if polarity and i and toks[i - 1] in NEGATORS:
            polarity = -polarity * 0.7
        score += polarity
    score -= 0.5 * min(text.count("!"), 4) * (1 if score <= 0 else 0)
    return math.tanh(score / 2.0)


def urgency(text: str) -> float:
    toks = words(text)
    raw = sum(URGENT_CUES.get(t, 0.0) for t in toks)
    raw += 0.1 * min(text.count("!"), 3)
    letters = [c for c in text if c.isalpha()]
    if len(letters) >= 12 and sum(c.isupper() for c in letters) / len(letters) > 0.6:
        raw += 0.3
    return round(min(1.0, 0.1 + raw), 4)


@functools.lru_cache(maxsize=4096)
def _phrase(keyword: str) -> str | None:
    """A seed keyword as it is matched, or None when it has no word in it.

    None rather than "  ": a keyword of only symbols or emoji ('€', '👍') tokenises to nothing, and the
    empty phrase is exactly what any text without words normalises to, so it used to claim every emoji-only
    or '???' message (and, before the tokenizer read every script, every non-Latin one). Keywords come from
    the policy, so each is normalised once (re-tokenising every seed for every message was the scorer's
    largest cost).
    """
    toks = words(keyword)
    return f" {' '.join(toks)} " if toks else None


def unmatchable(keywords: Iterable[str]) -> list[str]:
    """The keywords that could never match a message (no letters or digits in any script).

    For whoever accepts keywords from people (the policy and the slash command) to refuse them with a
    message, instead of storing a rule that silently routes nothing.
    """
    return [kw for kw in keywords if _phrase(kw) is None]


def hits(text: str, skills: SkillSeeds) -> dict[str, int]:
    """Seed keywords of each skill found as whole words (or, in unspaced scripts, whole characters)."""
    lowered = f" {' '.join(words(text))} "
    return {
        name: sum(1 for kw in seeds if (p := _phrase(kw)) is not None and p in lowered)
        for name, seeds in skills.items()
    }


def skill_distribution(text: str, skills: SkillSeeds) -> dict[str, float]:
    """Softmax over seed-keyword hits; with no hits every skill is equally likely."""
    exps = {name: math.exp(HIT_LOGIT * n) for name, n in hits(text, skills).items()}
    total = sum(exps.values())
    return {name: round(v / total, 4) for name, v in exps.items()}


def automation_success(text: str, mood: float, urgent: float, skill_conf: float) -> float:
    """Prior chance the bot can finish alone: short, calm, clearly-topical questions do best."""
    n = len(words(text))
    p = 0.55 + 0.2 * (skill_conf - 0.5)
    p += 0.1 if "?" in text else 0.0
    p -= 0.15 if n > 60 else 0.0
    p -= 0.3 * max(0.0, -mood)
    p -= 0.4 * urgent
    return round(min(1.0, max(0.0, p)), 4)


class ColdStartScorer:
    """The `Scorer` used until the learners have seen enough labels, and the fallback when they drift."""

    def score(self, text: str, skills: SkillSeeds) -> Scores:
        mood = sentiment(text)
        urgent = urgency(text)
        dist = skill_distribution(text, skills)
        conf = max(dist.values())
        return Scores(
            sentiment=round(mood, 4),
            urgency=urgent,
            skill=dist,
            automation_success=automation_success(text, mood, urgent, conf),
            versions={"sentiment": VERSION, "urgency": VERSION, "skill": VERSION, "automation": VERSION},
        )
