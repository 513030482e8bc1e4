"""Snapshot size is bounded whatever the number of skills, a round trip is exact, and an older
schema's snapshot is converted on load rather than lost.

Sizes are computed from real blobs with every hashed bucket touched for every class (where a
long-running deployment heads), never timed.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
from river import compose, linear_model, optim

from learners import budget, snapshot
from learners.compact import CompactLogisticRegression, CompactSoftmaxRegression
from learners.features import N_FEATURES, HashingTFIDF
from learners.skill import SkillLearner
from learners.snapshot import dump, load
from learners.text import LEARNING_RATE, TextLearner
from tests.test_learners_models import SKILLS, bitext
from tests.test_learners_snapshot import PROBES, trained


def _worst_case(skills: int) -> SkillLearner:
    """Teach `skills` classes through `learn_one` (which folds the buckets when it must), then fill them all."""
    learner = SkillLearner()
    learner.tracker.log_drift = False
    for k in range(skills):
        learner.learn_one("seed message", f"skill-{k:02d}")
    n = learner.tfidf.n_features
    learner.tfidf.dfs.update({i: 1_000_000 for i in range(n)})
    for vector in learner.clf.weights.values():  # type: ignore[attr-defined]
        vector.update({i: 0.123456789 * (i + 1) for i in range(n)})
    return learner


@pytest.mark.parametrize("skills", [5, 12, 38, 50, 77])
def test_worst_case_snapshot_stays_within_the_bound(skills: int) -> None:
    """38 is the most classes 2^16 buckets hold and 77 the most for 2^15 (banking77): the tightest cases."""
    learner = _worst_case(skills)
    size = len(dump(learner, 1))
    n = learner.tfidf.n_features
    assert n == budget.buckets_for(skills, N_FEATURES) == (N_FEATURES if skills <= 38 else N_FEATURES // 2)
    assert size <= budget.worst_case_bytes(n, skills) <= budget.MAX_SNAPSHOT_BYTES, (skills, n, size)


def test_bucket_budget_is_the_largest_that_fits() -> None:
    """For any class count up to where folding stops (2,034 classes), the chosen buckets fit and twice as
    many would not."""
    for classes in range(1, budget.MAX_CLASSES + 1):
        n = budget.buckets_for(classes, N_FEATURES)
        assert budget.worst_case_bytes(n, classes) <= budget.MAX_SNAPSHOT_BYTES, classes
        assert n == N_FEATURES or budget.worst_case_bytes(2 * n, classes) > budget.MAX_SNAPSHOT_BYTES
    assert budget.MAX_CLASSES == 2034
    assert budget.worst_case_bytes(budget.MIN_FEATURES, budget.MAX_CLASSES + 1) > budget.MAX_SNAPSHOT_BYTES


def _probes(learner: TextLearner) -> list[dict[Any, float]]:
    texts = [*PROBES, *(t for t, _ in bitext(40, seed=9))]
    return [learner.predict_proba_one({"text": t} if learner.name == "automation" else t) for t in texts]


def test_round_trip_predicts_identically() -> None:
    """A worker serves, and a new leader resumes from, exactly the model the learner process had."""
    many = SkillLearner()  # 40 classes: a folded model round-trips exactly too
    for i, (text, label) in enumerate(bitext(300, seed=2)):
        many.learn_one(text, f"{label}-{i % 10}")
    assert many.tfidf.n_features == N_FEATURES // 2
    for name, learner in [*trained().items(), ("skill-40", many)]:
        copy = load(dump(learner, 7), learner.name).learner
        assert _probes(copy) == _probes(learner), name
        assert copy.tfidf.dfs == learner.tfidf.dfs, name
        assert isinstance(copy.clf, CompactSoftmaxRegression | CompactLogisticRegression)
        assert isinstance(learner.clf, CompactSoftmaxRegression | CompactLogisticRegression)
        assert [dict(v) for v in copy.clf.vectors()] == [dict(v) for v in learner.clf.vectors()], name
        for text, label in bitext(20, seed=3):  # and they keep learning in lockstep
            x = {"text": text} if learner.name == "automation" else text
            y = label if learner.name == "skill" else len(text) % 2 == 0
            if learner.name == "sentiment":
                y = "negative" if y else "neutral"
            learner.learn_one(x, y)
            copy.learn_one(x, y)
        assert _probes(copy) == _probes(learner), name
    skill = trained()["skill"]
    assert isinstance(skill, SkillLearner)
    again = load(dump(skill, 1), "skill").learner
    assert isinstance(again, SkillLearner)
    assert again.distribution(PROBES[0], SKILLS) == skill.distribution(PROBES[0], SKILLS)


def _old_build_learner(cls: type[TextLearner], binary: bool) -> TextLearner:
    """What the schema-1 build ran: River's own estimators, float64 weights."""
    learner = cls()
    estimator = linear_model.LogisticRegression if binary else linear_model.SoftmaxRegression
    learner.clf = estimator(optimizer=optim.SGD(LEARNING_RATE))
    learner.model = compose.Pipeline(learner.tfidf, learner.clf)
    return learner


def test_snapshot_of_the_previous_schema_is_converted_and_predicts_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(4)
    old = {
        "skill": _old_build_learner(snapshot.LEARNER_TYPES["skill"], binary=False),
        "urgency": _old_build_learner(snapshot.LEARNER_TYPES["urgency"], binary=True),
    }
    for text, label in bitext(300, seed=6):
        old["skill"].learn_one(text, label)
        old["urgency"].learn_one(text, rng.random() < 0.3)
    blobs = {}
    with monkeypatch.context() as m:  # the old build: schema 1, HashingTFIDF pickled as its plain __dict__
        m.setattr(snapshot, "SCHEMA", 1)
        m.delattr(HashingTFIDF, "__getstate__")
        for name, learner in old.items():
            blobs[name] = dump(learner, 3)
    assert all(b'"schema": 1' in blob for blob in blobs.values())
    for name, learner in old.items():
        loaded = load(blobs[name], name)
        new = loaded.learner
        assert loaded.version == 3 and new.tracker.labels_seen == 300
        assert isinstance(new.clf, CompactSoftmaxRegression | CompactLogisticRegression)
        assert new.tfidf.dfs == learner.tfidf.dfs and new.tfidf.n == learner.tfidf.n
        before, after = _probes(learner), _probes(new)
        for b, a in zip(before, after, strict=True):
            assert max(b, key=b.__getitem__) == max(a, key=a.__getitem__)
            assert a == pytest.approx(b, rel=1e-5, abs=1e-7)
        new.learn_one(PROBES[0], "billing" if name == "skill" else True)  # it carries on learning
        rewritten = dump(new, 4)
        assert f'"schema": {snapshot.SCHEMA}'.encode() in rewritten and len(rewritten) < len(blobs[name])
        assert _probes(load(rewritten, name).learner) == _probes(new)


def test_folding_keeps_what_the_model_learned() -> None:
    """Halving the buckets twice (what 156 classes would ask for) barely moves this 5-skill model."""
    rows = bitext(1200, seed=8)
    learner = SkillLearner()
    for text, label in rows[:900]:
        learner.learn_one(text, label)
    held_out = rows[900:]
    before = [learner.predict_one(t) for t, _ in held_out]
    assert isinstance(learner.clf, CompactSoftmaxRegression)
    budget.fold(learner.tfidf, learner.clf, N_FEATURES // 4)
    after = [learner.predict_one(t) for t, _ in held_out]
    assert learner.tfidf.n_features == N_FEATURES // 4 and max(learner.tfidf.dfs) < N_FEATURES // 4
    assert all(max(v) < N_FEATURES // 4 for v in learner.clf.vectors())
    assert sum(b == a for b, a in zip(before, after, strict=True)) >= 0.95 * len(held_out)
    acc_before = sum(p == y for p, (_, y) in zip(before, held_out, strict=True)) / len(held_out)
    acc_after = sum(p == y for p, (_, y) in zip(after, held_out, strict=True)) / len(held_out)
    assert acc_after >= acc_before - 0.02, (acc_before, acc_after)
