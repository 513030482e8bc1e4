"""`LearnerScorer`: the worker's `Scorer` once learners exist, blending models with the rules.

Each learner's weight grows linearly with the labels it has seen (`min_labels` = full trust), so a
fresh deployment behaves exactly like the cold-start rules and drifts towards the models as agents
resolve conversations. For sentiment, urgency and automation that weight is also capped, message by
message, by the labels of the classes in play (`class_weight`): a model never taught "negative" cannot
overrule the rules on a message they call negative, however many "neutral" labels it has seen. A
learner whose rolling accuracy falls under its floor is ignored entirely until it recovers, and says
so in `Scores.versions` and `health()`.

Models are replaced by reference on `refresh`; scoring never waits on Redis, and the unpickling
(tens of milliseconds for a large model) runs in a thread so the event loop keeps serving meanwhile.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Mapping
from typing import Any

import redis.asyncio as aioredis
import structlog

from gateway.domain import Scores
from learners import coldstart
from learners.automation import AutomationLearner, automation_input
from learners.base import SkillSeeds
from learners.sentiment import CLASSES as MOODS
from learners.sentiment import SentimentLearner
from learners.skill import TAUGHT_AT, SkillLearner
from learners.snapshot import (
    LEARNER_TYPES,
    Loaded,
    SnapshotError,
    current_version,
    digest,
    fetch,
    load,
    new_learners,
)
from learners.text import TextLearner
from learners.urgency import UrgencyLearner, urgency_band

log = structlog.get_logger("learners.service")

DEFAULT_FLOORS = {"skill": 0.5, "sentiment": 0.5, "urgency": 0.6, "automation": 0.6}
"""Rolling-accuracy floors; well above chance for each learner's class count, below a useful model."""

CLASS_MIN_LABELS = 30
"""Labels of one class after which a model's verdict for that class is fully trusted (linearly from none).
Same order as a skill's `TAUGHT_AT`: on airline tweets a sentiment model sees 30 negative and 30 positive
tweets within its first ~200 labels, so a desk with a normal mix loses nothing against `min_labels`."""

FIXED_CLASSES: dict[str, tuple[Any, ...]] = {
    "sentiment": MOODS,
    "urgency": ("routine", "elevated", "urgent"),
    "automation": (False, True),
}
"""Learners whose classes are known in advance, so a class the labels never covered can be seen missing.
Skills are not here: their classes are the policy's, and an untaught one has its keywords
(`SkillLearner.with_keyword_prior`). Urgency's classes are the bands its tracker judges (`urgency_band`)."""

LEGACY_CLASSES: dict[tuple[str, Any], Any] = {("urgency", "routine"): False}
"""An urgency model taught before bands counted its labels as urgent-or-not. Its "not" labels still count as
routine; its `True` meant "high or urgent" (figure ≥ 0.5), so it earns no say on "urgent" until real urgent labels
come: credited, an old model kept paging P1 for messages agents had marked "high"."""


class LearnerScorer:
    """`Scorer` over the four online learners, with cold-start blending and accuracy fallback."""

    def __init__(
        self,
        learners: Mapping[str, TextLearner] | None = None,
        *,
        min_labels: int | Mapping[str, int] = 200,
        floors: Mapping[str, float] | None = None,
        min_evaluated: int = 50,
        taught_at: int = TAUGHT_AT,
        class_min_labels: int = CLASS_MIN_LABELS,
    ) -> None:
        self._learners: dict[str, TextLearner] = {**new_learners(), **(learners or {})}
        self.min_labels = min_labels
        self.floors = {**DEFAULT_FLOORS, **(floors or {})}
        self.min_evaluated = min_evaluated
        self.taught_at = taught_at
        """Labels a single skill needs before its keywords stop counting (see `SkillLearner.with_keyword_prior`)."""
        self.class_min_labels = class_min_labels
        """Labels of one mood / urgent-or-not / bot-succeeded-or-not before the model decides it (`class_weight`)."""
        self._versions = dict.fromkeys(LEARNER_TYPES, 0)
        self._created: dict[str, float | None] = dict.fromkeys(LEARNER_TYPES)
        self._seen_version = 0
        self._digests: dict[str, str | None] = dict.fromkeys(LEARNER_TYPES)
        """Payload checksum of the blob each learner last loaded (or refused): unchanged ones are skipped."""
        self._refreshing = asyncio.Lock()

    # -- blending -----------------------------------------------------------------------------

    def learner(self, name: str) -> TextLearner:
        return self._learners[name]

    def fallback(self, name: str) -> bool:
        return self._learners[name].tracker.below(self.floors[name], self.min_evaluated)

    def weight(self, name: str) -> float:
        """How much the model counts against the rules at most: 0 in fallback, labels/min_labels otherwise."""
        return self._weight(name, self.fallback(name))

    def _weight(self, name: str, fallback: bool) -> float:
        """`weight` with `fallback` already known: `score` asks both of every learner on every message."""
        if fallback:
            return 0.0
        need = self.min_labels if isinstance(self.min_labels, int) else self.min_labels.get(name, 200)
        seen = self._learners[name].tracker.labels_seen
        return 1.0 if need <= 0 else min(1.0, seen / need)

    def class_weight(self, name: str, cls: Any) -> float:
        """`weight` capped by the labels of class `cls`: how far the model may decide that class.

        Why per class and not only the label count: a desk that resolves 223 conversations all with mood
        "neutral" gives a model that scores every message 0.0 with rolling accuracy 1.0, and at full weight it
        replaced the rules' -0.98 for "the worst service ever", so angry customers lost their P2. The count
        said nothing about the classes it never saw. A class the model has no labels of is the rules' alone.
        """
        return self._class_weight(name, cls, self.weight(name))

    def _class_weight(self, name: str, cls: Any, w: float) -> float:
        """`class_weight` from the learner's `weight` `w`, which `_blend` already holds."""
        if name not in FIXED_CLASSES or w <= 0.0:
            return w
        counts = self._learners[name].tracker.class_labels
        seen = counts.get(cls, 0) + (counts.get(LEGACY_CLASSES[name, cls], 0) if (name, cls) in LEGACY_CLASSES else 0)
        need = self.class_min_labels
        return w if need <= 0 else min(w, seen / need)

    def _version(self, name: str, w: float, fallback: bool) -> str:
        if w <= 0.0:
            return coldstart.VERSION + ("+fallback" if fallback else "")
        model = f"{name}-v{self._versions[name]}"
        return model if w >= 1.0 else f"{model}*{w:.2f}+{coldstart.VERSION}"

    def score(self, text: str, skills: SkillSeeds) -> Scores:
        fallbacks = {name: self.fallback(name) for name in LEARNER_TYPES}
        weights = {name: self._weight(name, fallbacks[name]) for name in LEARNER_TYPES}
        ruled: set[str] = set()  # learners whose output was not a number this time

        w = weights["skill"]
        rules = coldstart.skill_distribution(text, skills) if w < 1.0 else {}
        dist = rules
        if w > 0.0:
            sk = self._skill()
            hits = coldstart.hits(text, skills) if sk.needs_keywords(skills, self.taught_at) else None
            learned = sk.distribution(text, skills, hits, self.taught_at, _hit_keywords(text, skills, hits))
            if all(map(math.isfinite, learned.values())):
                dist = learned if w >= 1.0 else {s: w * learned[s] + (1 - w) * rules[s] for s in learned}
            else:
                ruled.add(_not_finite("skill", learned))
                dist = rules or coldstart.skill_distribution(text, skills)

        mood = self._blend(
            "sentiment",
            weights,
            ruled,
            lambda: self._sentiment().polarity(text),
            lambda: coldstart.sentiment(text),
        )
        urgent = self._blend(
            "urgency",
            weights,
            ruled,
            lambda: self._urgency().probability(text),
            lambda: coldstart.urgency(text),
        )
        conf = max(dist.values())
        feats = {"sentiment": mood, "urgency": urgent, "skill_confidence": conf}
        auto = self._blend(
            "automation",
            weights,
            ruled,
            lambda: self._automation().probability(automation_input(text, feats)),
            lambda: coldstart.automation_success(text, mood, urgent, conf),
        )

        return Scores(
            sentiment=round(max(-1.0, min(1.0, mood)), 4),
            urgency=round(max(0.0, min(1.0, urgent)), 4),
            skill={s: round(p, 4) for s, p in dist.items()},
            automation_success=round(max(0.0, min(1.0, auto)), 4),
            versions={
                name: f"{coldstart.VERSION}+nonfinite" if name in ruled
                else self._version(name, weights[name], fallbacks[name])
                for name in LEARNER_TYPES
            },
        )

    def _blend(
        self,
        name: str,
        weights: dict[str, float],
        ruled: set[str],
        model: Callable[[], float],
        rules: Callable[[], float],
    ) -> float:
        """The model's value and the rules', weighted by `class_weight` of both verdicts; sets `weights[name]`.

        The weight is the smaller of the model's say on the class its own value names and on the class the
        rules' value names (`verdict`): where the rules call a message negative (or urgent) and the model has
        no negative (urgent) labels, the rules' verdict stands, and the model's claim of a class it hardly saw
        is weak too. Why not blend by the model's confidence: a one-class model is certain of its one class.
        Only what is weighted is computed. A non-finite model value falls back to the rules: the clamps in
        `score` would turn NaN into the upper bound (`min(1, nan)` is 1), silently making every message urgent
        or the bot certain.
        """
        if weights[name] <= 0.0:
            return rules()
        value = model()
        if not math.isfinite(value):
            ruled.add(_not_finite(name, value))
            return rules()
        if name not in FIXED_CLASSES and weights[name] >= 1.0:
            return value
        rule = rules()
        w = weights[name]
        w = min(self._class_weight(name, verdict(name, value), w), self._class_weight(name, verdict(name, rule), w))
        weights[name] = w
        return value if w >= 1.0 else w * value + (1 - w) * rule

    def _skill(self) -> SkillLearner:
        return self._learners["skill"]  # type: ignore[return-value]

    def _sentiment(self) -> SentimentLearner:
        return self._learners["sentiment"]  # type: ignore[return-value]

    def _urgency(self) -> UrgencyLearner:
        return self._learners["urgency"]  # type: ignore[return-value]

    def _automation(self) -> AutomationLearner:
        return self._learners["automation"]  # type: ignore[return-value]

    # -- hot swap -----------------------------------------------------------------------------

    async def refresh(self, redis: aioredis.Redis) -> bool:
        """Swap in the newest snapshot; a learner whose blob is refused keeps serving its old model.

        Only blobs whose checksum changed are loaded (a publish rewrites only the learners that learned,
        and an identical model re-dumps to the same bytes), each in a worker thread; references are
        swapped here on the loop, all together, once every load is done.
        """
        async with self._refreshing:  # the periodic task and a `models` command may both ask
            newest = await current_version(redis)
            if newest < self._seen_version:
                # The store's count went back: Redis lost the snapshots (restarted empty or flushed) and the
                # learner publishes from 1 again, from the models it holds. Compared with the old count, every
                # new snapshot read as stale until the count passed it: processes started before the loss kept
                # their models while new ones loaded the new snapshot, and one text routed two ways.
                log.warning("learner_snapshot_count_reset", was=self._seen_version, now=newest)
                self._seen_version = 0
                self._versions = dict.fromkeys(self._versions, 0)
                self._digests = dict.fromkeys(self._digests, None)
            if newest <= self._seen_version:
                return False
            blobs = await fetch(redis)
            changed: dict[str, tuple[bytes, str | None]] = {}
            for name in LEARNER_TYPES:
                blob = blobs.get(name)
                if blob is None:
                    continue
                sha = digest(blob)
                if sha is None or sha != self._digests[name]:
                    changed[name] = (blob, sha)
            results: dict[str, Loaded | SnapshotError] = {}
            for name, (blob, _sha) in changed.items():
                results[name] = await asyncio.to_thread(_try_load, blob, name)
            swapped = []
            for name, result in results.items():
                self._digests[name] = changed[name][1]  # a refused blob is reported once, not on every publish
                if isinstance(result, SnapshotError):
                    log.error(
                        "learner_snapshot_refused",
                        learner=name,
                        version=newest,
                        reason=str(result),
                        serving_version=self._versions[name],
                    )
                    continue
                if result.version <= self._versions[name]:
                    continue
                self._learners[name] = result.learner
                self._versions[name] = result.version
                self._created[name] = result.created_at
                swapped.append(name)
            self._seen_version = newest
        if swapped:
            log.info("learner_snapshot_loaded", version=newest, learners=swapped)
        return bool(swapped)

    def health(self) -> dict[str, dict[str, Any]]:
        now = time.time()
        out: dict[str, dict[str, Any]] = {}
        for name, learner in self._learners.items():
            t = learner.tracker
            created = self._created[name]
            w = self.weight(name)
            # "weight" is what the model counts for its least-taught class: 1.00 for a sentiment model that
            # never saw an angry customer read as if it decided moods, while the rules still decide those.
            classes = FIXED_CLASSES.get(name, ())
            out[name] = {
                "labels_seen": t.labels_seen,
                "rolling_accuracy": t.rolling_accuracy,
                "drift_alarms": t.drift_alarms,
                "fallback": self.fallback(name),
                "weight": round(min((self.class_weight(name, c) for c in classes), default=w), 4),
                "class_weights": {str(c): round(self.class_weight(name, c), 4) for c in classes},
                "snapshot_version": self._versions[name],
                "snapshot_age_s": round(now - created, 1) if created is not None else None,
            }
        return out


def verdict(name: str, value: float) -> Any:
    """The class a sentiment / urgency / automation value stands for, whoever produced it.

    Sentiment in thirds of [-1, 1] (a model sure of one mood gives -1, 0 or 1; one emotional word gives the
    rules -0.46, negative); urgency in the policy's bands, as its tracker judges; automation at 0.5, where
    its own `predict_one` splits.
    """
    if name == "sentiment":
        return "negative" if value <= -1 / 3 else "positive" if value >= 1 / 3 else "neutral"
    if name == "urgency":
        return urgency_band(value)
    return value >= 0.5


def _hit_keywords(text: str, skills: SkillSeeds, hits: Mapping[str, int] | None) -> dict[str, list[str]] | None:
    """Which of each hit skill's keywords the text contains: each is weighed on its own evidence."""
    if not hits:
        return None
    out: dict[str, list[str]] = {}
    for skill, n in hits.items():
        if n:
            out[skill] = coldstart.hit_keywords(text, skills[skill])
    return out


def _not_finite(name: str, value: object) -> str:
    """Logged on every message it happens to: a model that emits NaN is broken until someone retrains it."""
    log.warning("learner_output_not_finite", learner=name, value=repr(value), fallback=coldstart.VERSION)
    return name


def _try_load(blob: bytes, name: str) -> Loaded | SnapshotError:
    """Runs in a worker thread: the error travels back as a value so the loop logs it with context."""
    try:
        return load(blob, name)
    except SnapshotError as exc:
        return exc
