"""Automation learner: P(the bot resolves this without a human).

It sees the text plus the scores the router saw (mood, urgency, skill confidence), because an angry,
urgent or ambiguous customer defeats a bot whatever the words. Labels come from automation outcomes:
resolved by the bot = True; handed off, reopened or asked for a human = False.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from learners.text import BinaryTextLearner

SCORE_FEATURES = ("sentiment", "urgency", "skill_confidence")


def automation_input(text: str, scores: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The learner's input: message text and the routing-time scores (missing ones count as neutral)."""
    scores = scores or {}
    x: dict[str, Any] = {"text": text}
    for key in SCORE_FEATURES:
        value = scores.get(key)
        x[key] = float(value) if isinstance(value, int | float) else 0.0
    if "skill_confidence" not in scores and isinstance(scores.get("skill"), Mapping) and scores["skill"]:
        x["skill_confidence"] = float(max(scores["skill"].values()))
    return x


class AutomationLearner(BinaryTextLearner):
    name: ClassVar[str] = "automation"

    def text_of(self, x: Any) -> str:
        return str(x["text"]) if isinstance(x, Mapping) else str(x)

    def features(self, x: Any) -> dict[Any, float]:
        feats: dict[Any, float] = dict(self.tfidf.transform_one(self.text_of(x)))
        if isinstance(x, Mapping):
            for key in SCORE_FEATURES:
                feats[f"_{key}"] = float(x.get(key, 0.0))
        return feats
