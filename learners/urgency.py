"""Urgency learner: P(an agent would call this urgent).

No public data set labels urgency, so this learner starts from the cold-start cue words and only
learns from the urgency agents confirm on outcomes. Agents give a figure in [0, 1]; we learn the
binary "at least 0.5" because a calibrated probability of "urgent" is what the router thresholds.
"""

from __future__ import annotations

from typing import ClassVar

from learners.text import BinaryTextLearner

URGENT_AT = 0.5


def urgent_label(value: float) -> bool:
    return value >= URGENT_AT


class UrgencyLearner(BinaryTextLearner):
    name: ClassVar[str] = "urgency"
