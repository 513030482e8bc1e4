"""Urgency learner: the urgency figure an agent would give this message, on the router's own scale.

No public data set labels urgency, so this learner starts from the cold-start cue words and only
learns from the urgency agents confirm on outcomes. Agents pick a level on the Resolve form, stored as
a figure in [0, 1] (`LEVELS`: low 0.1, normal 0.4, high 0.75, urgent 1.0), and the router compares the
model's output with the policy's thresholds (`urgent`, default 0.8, pages P1; above
`automation_urgency_ceiling`, default 0.6, keeps the bot out). So the output must be that same figure,
not a probability of some class.

It used to learn the binary "figure ≥ 0.5": "high" (0.75) became the same class as "urgent", the model's
P(True) for a message agents call "high" tended to 1.0, and every routine request an agent marked high
paged P1 above real security incidents. Now the figure itself is the target: the logistic model learns it
as a soft label (one step towards True weighted by the figure and one towards False weighted by the rest,
whose summed gradient is `sigmoid(z) - figure`), so its output converges to the mean figure agents give
such messages. Messages always marked "high" settle near 0.75: kept from the bot, not P1. Messages always
marked "urgent" approach 1.0. The pickle keeps the shape it had (one logistic weight vector), so snapshots
written before this change still load. They still lean towards "high = urgent" until new labels correct them.
"""

from __future__ import annotations

from typing import Any, ClassVar, cast

from river import linear_model
from river.base.typing import ClfTarget

from learners.text import BinaryTextLearner

LEVELS = {"low": 0.1, "normal": 0.4, "high": 0.75, "urgent": 1.0}
"""The Resolve form's levels (`integrations.slack.modals.URGENCY`, which must agree; a test checks this)."""

URGENT_AT = 0.8
"""The default policy's `thresholds.urgent`: a figure from here up pages P1."""
ELEVATED_ABOVE = 0.6
"""The default policy's `thresholds.automation_urgency_ceiling`: a figure above it keeps the bot out."""


def urgency_target(value: Any) -> float:
    """The figure a label stands for, in [0, 1].

    A bool is a binary data set's "urgent?" (True 1.0, False 0.0); a number is the figure itself
    (clamped: the learner's output is a probability and cannot go beyond [0, 1]).
    """
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    figure = float(value)
    if figure != figure:  # NaN: not a figure at all
        raise ValueError("urgency label is NaN")
    return min(1.0, max(0.0, figure))


def urgency_band(figure: float) -> str:
    """What the default policy does with a figure: "urgent" (P1), "elevated" (human only) or "routine".

    The tracker compares bands, not exact figures: a prediction of 0.72 for a message marked "high"
    (0.75) leads to the same route and is right; 0.9 for it would page P1 and is wrong.
    """
    if figure >= URGENT_AT:
        return "urgent"
    if figure > ELEVATED_ABOVE:
        return "elevated"
    return "routine"


def urgent_label(value: float) -> bool:
    """Whether an agent's figure is "urgent" for the default policy (P1); "high" (0.75) is not."""
    return value >= URGENT_AT


class UrgencyLearner(BinaryTextLearner):
    name: ClassVar[str] = "urgency"

    def predict_one(self, x: Any) -> ClfTarget | None:
        """The band the predicted figure falls in (what the tracker judges); `probability` is the figure."""
        return urgency_band(self.probability(x))

    def learn_one(self, x: Any, y: ClfTarget | float, y_pred: ClfTarget | None = None) -> None:
        """Learn the figure `y` (or a bool, see `urgency_target`) as a soft label, after judging the band."""
        target = urgency_target(y)
        if y_pred is None:
            y_pred = self.predict_one(x)
        self.tracker.record(urgency_band(target), y_pred)
        self.tfidf.learn_one(self.text_of(x))
        feats = self.features(x)
        clf = cast(linear_model.LogisticRegression, self.clf)  # `BinaryTextLearner`'s estimator
        # Two weighted steps, True with weight `target` and False with `1 - target`: their gradients add up
        # to the soft-label log loss's, so the model is fitted to the figure with River's own estimator.
        if target > 0.0:
            clf.learn_one(feats, True, w=target)
        if target < 1.0:
            clf.learn_one(feats, False, w=1.0 - target)
        self._keep_within_budget()
