"""The shared shape of every learner: River's `TFIDF | linear model` pipeline over one message.

`Learner` is the protocol the learner process and the scorer call. `TextLearner` holds the River
pipeline plus its `Tracker`; the four concrete learners only choose the final estimator and how a
raw outcome value becomes a class label. The estimators are River's, with float32 weights that pickle
compactly (`learners.compact`); a model that gains many classes folds its buckets (`learners.budget`).
"""

from __future__ import annotations

from typing import Any, ClassVar, Protocol

import structlog
from river import base, compose, linear_model, optim
from river.base.typing import ClfTarget

from learners import budget
from learners.compact import CompactLogisticRegression, CompactSoftmaxRegression
from learners.features import N_FEATURES, HashingTFIDF
from learners.tracking import Tracker

log = structlog.get_logger("learners.text")

LEARNING_RATE = 2.0
"""SGD step measured best on banking77/airline tweets; River's default 0.01 barely learns."""


class Learner(Protocol):
    name: str
    tracker: Tracker

    def predict_proba_one(self, x: Any) -> dict[ClfTarget, float]: ...

    def predict_one(self, x: Any) -> ClfTarget | None: ...

    def learn_one(self, x: Any, y: ClfTarget, y_pred: ClfTarget | None = None) -> None: ...


class TextLearner:
    """One River pipeline over message text, with test-then-train bookkeeping on every label."""

    name: ClassVar[str] = "text"

    def __init__(self, n_features: int = N_FEATURES, lr: float = LEARNING_RATE, window: int = 200) -> None:
        self.tfidf = HashingTFIDF(n_features=n_features)
        self.clf: base.Classifier = self._estimator(lr)
        # The same two objects as a River pipeline, for River tooling (`evaluate.progressive_val_score`
        # etc.); our own hot path calls the steps directly so subclasses can add non-text features.
        self.model = compose.Pipeline(self.tfidf, self.clf)
        self.tracker = Tracker(self.name, window=window)

    def _estimator(self, lr: float) -> base.Classifier:
        return CompactSoftmaxRegression(optimizer=optim.SGD(lr))

    def features(self, x: Any) -> dict[Any, float]:
        """Feature dict for `x`; subclasses add non-text features (automation adds the scores)."""
        return self.tfidf.transform_one(x)

    def text_of(self, x: Any) -> str:
        return str(x)

    def predict_proba_one(self, x: Any) -> dict[ClfTarget, float]:
        return self.clf.predict_proba_one(self.features(x))

    def predict_one(self, x: Any) -> ClfTarget | None:
        proba = self.predict_proba_one(x)
        return max(proba, key=proba.__getitem__) if proba else None

    def learn_one(self, x: Any, y: ClfTarget, y_pred: ClfTarget | None = None) -> None:
        """Judge the current model on this label first (unless the caller already predicted), then learn.

        Same order as River's Pipeline: the TF-IDF table learns the document before it is weighted.
        """
        if y_pred is None:
            y_pred = self.predict_one(x)
        self.tracker.record(y, y_pred)
        self.tfidf.learn_one(self.text_of(x))
        self.clf.learn_one(self.features(x), y)
        self._keep_within_budget()

    def _keep_within_budget(self) -> None:
        """Fold the buckets once a new class would let the worst-case snapshot pass the bound."""
        clf, n_features = self.clf, self.tfidf.n_features
        if not isinstance(clf, CompactSoftmaxRegression | CompactLogisticRegression):
            return
        classes = len(clf.vectors())
        if budget.worst_case_bytes(n_features, classes) <= budget.MAX_SNAPSHOT_BYTES:
            return
        target = budget.buckets_for(classes, n_features)
        if target < n_features:
            budget.fold(self.tfidf, clf, target)
            log.info("learner_buckets_folded", learner=self.name, classes=classes, n_features=target, was=n_features)

    @property
    def classes(self) -> list[ClfTarget]:
        weights = getattr(self.clf, "weights", {})
        return list(weights) if isinstance(self.clf, linear_model.SoftmaxRegression) else [False, True]


class BinaryTextLearner(TextLearner):
    """Yes/no learners (urgent? automation will succeed?) need one weight vector, not one per class."""

    def _estimator(self, lr: float) -> base.Classifier:
        return CompactLogisticRegression(optimizer=optim.SGD(lr))

    def probability(self, x: Any) -> float:
        return float(self.predict_proba_one(x).get(True, 0.5))

    def predict_one(self, x: Any) -> ClfTarget | None:
        return self.probability(x) >= 0.5
