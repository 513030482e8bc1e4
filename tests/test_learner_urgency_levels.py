"""The urgency learner learns the Resolve form's figure, so "high" does not teach "urgent".

It used to learn the binary "figure ≥ 0.5": "high" (0.75) was the same class as "urgent" (1.0), and the
model's P(True) was compared with the policy's P1 threshold (0.8). After 200 resolves with every third
routine request marked "high", "My invoice shows the wrong company name" scored 0.99 and paged P1, while a
hacked account sat at P2. These replays go through `labels_of` (what the learner process teaches from an
outcome) and `LearnerScorer` (what the router reads), with the form's own figures.
"""

from __future__ import annotations

import pytest

from gateway.domain import Outcome
from integrations.slack.modals import URGENCY
from learners import commands
from learners.outcomes import labels_of
from learners.service import LearnerScorer
from learners.snapshot import new_learners
from learners.urgency import ELEVATED_ABOVE, LEVELS, URGENT_AT, UrgencyLearner
from router.policy import Thresholds
from tests.test_learners_models import SKILLS, bitext

ROUTINE_HIGH = [
    "My invoice shows the wrong company name, please correct it this week",
    "The delivery address on my order is wrong, can you fix it before it ships",
    "I was charged the old price, please refund the difference",
]
EMERGENCY = "Someone got into my account and is placing orders with my card"


def _replay(n: int, *, emergency_every: int = 0) -> LearnerScorer:
    """`n` resolves: every third a routine request marked "high", the rest bitext marked "normal"
    (and, with `emergency_every`, that often the emergency marked "urgent")."""
    learners = new_learners()
    others = iter(bitext(n, seed=5))
    for i in range(n):
        if emergency_every and i % emergency_every == 1:
            text, level = EMERGENCY, "urgent"
        elif i % 3 == 0:
            text, level = ROUTINE_HIGH[(i // 3) % len(ROUTINE_HIGH)], "high"
        else:
            text, level = next(others)[0], "normal"
        outcome = Outcome(conversation_id=f"c{i}", kind="resolved", text=text, urgency=URGENCY[level])
        for name, (x, y) in labels_of(outcome).pairs.items():
            learners[name].learn_one(x, y)
    return LearnerScorer(learners)


def test_the_learner_knows_the_forms_levels() -> None:
    assert LEVELS == URGENCY
    # The bands the tracker judges are the default policy's: P1, and kept from the bot.
    assert (Thresholds().urgent, Thresholds().automation_urgency_ceiling) == (URGENT_AT, ELEVATED_ABOVE)


def test_high_labels_do_not_page_routine_requests() -> None:
    scorer = _replay(240)
    assert scorer.weight("urgency") >= 1.0  # the model alone decides: no rule blends it down
    thresholds = Thresholds()
    for text in ROUTINE_HIGH:
        urgency = scorer.score(text, SKILLS).urgency
        # What agents said: a human should take it (above the bot's ceiling), but it is not P1.
        assert thresholds.automation_urgency_ceiling < urgency < thresholds.urgent, (text, urgency)
    # Ordinary messages the desk marked "normal" stay routine.
    assert scorer.score("How do I change my delivery address?", SKILLS).urgency < 0.6


def test_urgent_labels_still_teach_urgent() -> None:
    scorer = _replay(240, emergency_every=6)
    assert scorer.score(EMERGENCY, SKILLS).urgency >= Thresholds().urgent
    for text in ROUTINE_HIGH:
        assert scorer.score(text, SKILLS).urgency < Thresholds().urgent


def test_the_tracker_judges_the_route_not_the_exact_figure() -> None:
    learner = UrgencyLearner()
    for _ in range(40):
        learner.learn_one(ROUTINE_HIGH[0], LEVELS["high"])
    assert learner.predict_one(ROUTINE_HIGH[0]) == "elevated"
    assert learner.tracker.rolling_accuracy is not None and learner.tracker.rolling_accuracy > 0.8


def test_a_history_file_keeps_the_forms_figures() -> None:
    """`switchboard train --learner urgency` read "high" as urgent too."""
    assert commands._label("urgency", "High") == LEVELS["high"] < URGENT_AT
    assert commands._label("urgency", "urgent") == 1.0
    assert commands._label("urgency", "yes") == 1.0 and commands._label("urgency", "no") == 0.0
    assert commands._label("urgency", "0.75") == 0.75
    with pytest.raises(ValueError):  # skipped as a bad row
        commands._label("urgency", "nan")
