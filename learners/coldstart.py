"""Rules that score a message before any model has learned anything.

They are deliberately simple and explainable: a lexicon for mood, cue words for urgency and the
policy's seed keywords for skill. The online learners blend away from them as labels arrive.
"""

from __future__ import annotations

import functools
import math
import re

from gateway.domain import Scores
from learners.base import SkillSeeds

VERSION = "rules-1"

_WORD = re.compile(r"[a-z0-9']+")

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
    return _WORD.findall(text.lower())


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
def _phrase(keyword: str) -> str:
    """A seed keyword as it is matched; keywords come from the policy, so normalise each once (re-tokenising
    every seed for every message was the scorer's largest cost)."""
    return f" {' '.join(words(keyword))} "


def skill_distribution(text: str, skills: SkillSeeds) -> dict[str, float]:
    """Softmax over seed-keyword hits; with no hits every skill is equally likely."""
    lowered = f" {' '.join(words(text))} "
    hits = {name: sum(1 for kw in seeds if _phrase(kw) in lowered) for name, seeds in skills.items()}
    exps = {name: math.exp(1.5 * n) for name, n in hits.items()}
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
