"""Running quality of one learner: labels seen, rolling accuracy and drift alarms.

The tracker travels inside the learner's snapshot, so a worker that hot-swaps a model also learns
how good it currently is and can decide on its own to fall back to the cold-start rules.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import structlog
from river import drift, metrics, utils

log = structlog.get_logger("learners.tracking")


class Tracker:
    """Prequential (test-then-train) bookkeeping fed by every labelled outcome."""

    def __init__(self, name: str, window: int = 200) -> None:
        self.name = name
        self.window = window
        self.labels_seen = 0
        self.class_labels: dict[Hashable, int] = {}
        """Labels seen per class: a skill added to a taught model has none, and the scorer keeps its
        keywords in play until it has enough of its own (`LearnerScorer.taught_at`)."""
        self.evaluated = 0
        self.rolling: Any = utils.Rolling(metrics.Accuracy, window_size=window)
        self.adwin = drift.ADWIN()
        self.drift_alarms = 0
        self.log_drift = True
        """Replays (evaluate, train) count alarms but print one summary instead of a line per alarm."""

    def record(self, y_true: Hashable, y_pred: Hashable | None) -> None:
        """Score the prediction made *before* learning this label; ADWIN watches the 0/1 error stream."""
        self.labels_seen += 1
        self.class_labels[y_true] = self.class_labels.get(y_true, 0) + 1
        if y_pred is None:
            return
        self.evaluated += 1
        self.rolling.update(y_true, y_pred)
        before = self.adwin.estimation
        self.adwin.update(0.0 if y_true == y_pred else 1.0)
        # ADWIN flags change in either direction; a learner getting better is not an alarm.
        if self.adwin.drift_detected and self.adwin.estimation > before:
            self.drift_alarms += 1
            if not self.log_drift:
                return
            log.warning(
                "learner_drift_detected",
                learner=self.name,
                alarms=self.drift_alarms,
                rolling_accuracy=self.rolling_accuracy,
                labels_seen=self.labels_seen,
            )

    @property
    def rolling_accuracy(self) -> float | None:
        return round(float(self.rolling.get()), 4) if self.evaluated else None

    def below(self, floor: float, min_evaluated: int) -> bool:
        """True when enough labels were judged and the recent ones mostly wrong: time to trust rules."""
        acc = self.rolling_accuracy
        return acc is not None and self.evaluated >= min_evaluated and acc < floor
