"""Converting a learner unpickled from an older snapshot schema into this build's layout.

Why convert rather than refuse: a stored model is months of agents' labels, and a schema bump that
only changes how the same numbers are stored need not cost them. `snapshot.load` unpickles the old
blob as usual (the classes it names still exist) and passes the result through `CONVERTERS`, one
step per schema, so a build reads every schema listed in `snapshot.READABLE_SCHEMAS`.

A model that an old build trained past the size budget converts unfolded (predicting exactly as it
did, up to float32 rounding); the learner process folds it the next time it learns.
"""

from __future__ import annotations

from collections.abc import Callable

from river import compose, linear_model

from learners.compact import CompactLinear, CompactLogisticRegression, CompactSoftmaxRegression
from learners.text import TextLearner


def from_schema_1(learner: TextLearner) -> TextLearner:
    """Schema 1 pickled River's own estimators, float64 weights in dicts (its `HashingTFIDF` state,
    a plain `Counter`, is read by `HashingTFIDF.__setstate__`). Same attributes, so the estimator
    takes the compact class and its weights are snapped to the float32 grid it now learns on."""
    clf = learner.clf
    compact: CompactLinear
    if isinstance(clf, CompactSoftmaxRegression | CompactLogisticRegression):
        return learner
    if isinstance(clf, linear_model.SoftmaxRegression):
        compact = CompactSoftmaxRegression.__new__(CompactSoftmaxRegression)
    elif isinstance(clf, linear_model.LogisticRegression):
        compact = CompactLogisticRegression.__new__(CompactLogisticRegression)
    else:
        raise TypeError(f"no schema 1 conversion for a {type(clf).__name__}")
    compact.__dict__.update(vars(clf))
    compact.to_float32()
    learner.clf = compact
    learner.model = compose.Pipeline(learner.tfidf, compact)
    return learner


def from_schema_2(learner: TextLearner) -> TextLearner:
    """Schema 2 trackers did not count labels per class. Every class the model already has a weight
    vector for is credited with all the labels seen so far, i.e. treated as taught: that is how the scorer
    used them before, so an upgrade changes no routing. Only a class with no weight vector (never labelled)
    starts at zero; one that had a handful of labels before the upgrade counts as taught."""
    tracker = learner.tracker
    if not hasattr(tracker, "class_labels"):
        tracker.class_labels = dict.fromkeys(learner.classes, tracker.labels_seen)
    return learner


CONVERTERS: dict[int, Callable[[TextLearner], TextLearner]] = {1: from_schema_1, 2: from_schema_2}
"""schema -> the step that brings a learner of that schema to the next one."""


def upgrade(learner: TextLearner, schema: int, to: int) -> TextLearner:
    for step in range(schema, to):
        learner = CONVERTERS[step](learner)
    return learner
