"""Skill learner: which team should take this message.

Classes are whatever skills outcomes name, never a fixed list: River's SoftmaxRegression grows a
weight vector the first time it meets a label and leaves the others untouched. Scoring is restricted
to the skills the *current* policy lists, so a skill removed from the policy stops receiving traffic
and a brand-new one competes at logit 0 until it has been taught.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import ClassVar

from learners.text import TextLearner


class SkillLearner(TextLearner):
    name: ClassVar[str] = "skill"

    def distribution(self, text: str, skills: Iterable[str]) -> dict[str, float]:
        """Softmax over the policy's skills only (unknown skills get the untrained logit 0)."""
        x = self.features(text)
        weights = self.clf.weights  # type: ignore[attr-defined]
        logits: dict[str, float] = {}
        for skill in skills:
            w = weights.get(skill)
            logits[skill] = sum(w.get(i, 0.0) * v for i, v in x.items()) if w else 0.0
        if not logits:
            return {}
        top = max(logits.values())
        exps = {s: math.exp(v - top) for s, v in logits.items()}
        total = sum(exps.values())
        return {s: v / total for s, v in exps.items()}
