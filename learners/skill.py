"""Skill learner: which team should take this message.

Classes are whatever skills outcomes name, never a fixed list: River's SoftmaxRegression grows a
weight vector the first time it meets a label and leaves the others untouched. Scoring is restricted
to the skills the *current* policy lists, so a skill removed from the policy stops receiving traffic.

A brand-new skill has no weight vector (logit 0) and would never beat a taught one, so its policy
keywords stay in play until it has labels of its own (`with_keyword_prior`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import ClassVar

from learners.coldstart import HIT_LOGIT
from learners.text import TextLearner

TAUGHT_AT = 30
"""Labels after which a skill's own weights are trusted over its keywords. Measured on bitext (a skill added
to a model taught on the others): recalled 85% from 30 labels of its own and 97% from 50, against 0% with
none (50% with the keyword lift); the lift fades out linearly over those labels."""


class SkillLearner(TextLearner):
    name: ClassVar[str] = "skill"

    def logits(self, text: str, skills: Iterable[str]) -> dict[str, float]:
        """The model's logit for each of the policy's skills (an untaught skill gets 0)."""
        x = self.features(text)
        weights = self.clf.weights  # type: ignore[attr-defined]
        logits: dict[str, float] = {}
        for skill in skills:
            w = weights.get(skill)
            logits[skill] = sum(w.get(i, 0.0) * v for i, v in x.items()) if w else 0.0
        return logits

    def taught(self, skill: str, taught_at: int = TAUGHT_AT) -> float:
        """How far the model's own weights for `skill` are trusted: its labels / `taught_at`, at most 1."""
        seen = self.tracker.class_labels.get(skill, 0)
        return 1.0 if taught_at <= 0 else min(1.0, seen / taught_at)

    def with_keyword_prior(
        self, logits: Mapping[str, float], hits: Mapping[str, int], taught_at: int = TAUGHT_AT
    ) -> dict[str, float]:
        """Lift the logit of an under-taught skill whose keywords the message contains.

        Untaught, its keyword hit puts it `HIT_LOGIT` per hit above the model's favourite: the odds the
        cold-start rules give a hit over a miss. Why relative to the favourite: the model has never seen
        this skill, so how sure it is about the others says nothing against it. The lift fades linearly as
        the skill collects labels; taught skills and messages without such hits are left exactly as they are.
        """
        out = dict(logits)
        for skill, n in hits.items():
            t = self.taught(skill, taught_at) if n else 1.0
            if t >= 1.0 or skill not in logits:
                continue
            top = max((v for s, v in logits.items() if s != skill), default=0.0)
            lifted = max(logits[skill], top + HIT_LOGIT * n)
            out[skill] = t * logits[skill] + (1 - t) * lifted
        return out

    def distribution(
        self, text: str, skills: Iterable[str], hits: Mapping[str, int] | None = None, taught_at: int = TAUGHT_AT
    ) -> dict[str, float]:
        """Softmax over the policy's skills only; `hits` (keyword hits per skill) feed `with_keyword_prior`."""
        logits = self.logits(text, skills)
        if not logits:
            return {}
        if hits:
            logits = self.with_keyword_prior(logits, hits, taught_at)
        top = max(logits.values())
        exps = {s: math.exp(v - top) for s, v in logits.items()}
        total = sum(exps.values())
        return {s: v / total for s, v in exps.items()}

    def needs_keywords(self, skills: Mapping[str, Iterable[str]], taught_at: int = TAUGHT_AT) -> bool:
        """Whether any skill with keywords is under-taught: if not, scoring skips keyword matching entirely."""
        return any(self.taught(s, taught_at) < 1.0 for s, kws in skills.items() if kws)
