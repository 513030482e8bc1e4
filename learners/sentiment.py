"""Sentiment learner: negative / neutral / positive, reported as one number in [-1, 1].

Three classes rather than a regression because that is what agents confirm and what the public
airline data labels; the gateway's single figure is P(positive) - P(negative).
"""

from __future__ import annotations

from typing import ClassVar

from learners.text import TextLearner

CLASSES = ("negative", "neutral", "positive")


class SentimentLearner(TextLearner):
    name: ClassVar[str] = "sentiment"

    def polarity(self, text: str) -> float:
        proba = self.predict_proba_one(text)
        value = float(proba.get("positive", 0.0)) - float(proba.get("negative", 0.0))
        return max(-1.0, min(1.0, value))
