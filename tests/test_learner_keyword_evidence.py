"""A skill's keywords are evidence weighed against the model, not a veto over it (review C, finding 1).

`skill add warranty warranty guarantee screen`, then "The app shows a blank screen after the update"
resolved as technical 58 times: the screen messages went to warranty (0.59) and more corrections made it
worse, because an untaught skill's keyword put it 1.5 logits above the model's favourite whatever the model
knew, and only labels *of* warranty faded that. A freshly added skill must still get its keyword messages.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import yaml

from learners.datasets import SKILLS
from learners.service import LearnerScorer
from learners.skill import SkillLearner
from tests.test_learner_keywords import read_bitext

TECHNICAL = ("error", "bug", "crash", "app", "update", "login")
SEEDS = {**SKILLS, "technical": TECHNICAL, "warranty": ("warranty", "guarantee", "screen")}
SCREEN = [
    "The app shows a blank screen after the update",
    "After updating the app I only get a white screen",
    "Login screen freezes every time I open the app",
    "The app crashes on the settings screen",
    "Black screen when I start the app since yesterday's update",
    "I see an error screen when I try to log in to the app",
]
FRESH = ["warranty claim please", "Is my phone still under guarantee?", "How long is the warranty on the headphones?"]


def top(scorer: LearnerScorer, text: str, skills: dict[str, tuple[str, ...]]) -> str:
    dist = scorer.score(text, skills).skill
    return max(dist, key=dist.__getitem__)


def bitext(n: int) -> list[tuple[str, str]]:
    return read_bitext()[:n]


def teach_screen(skill: object, n: int, seed: int = 3) -> None:
    assert isinstance(skill, SkillLearner)
    rng = random.Random(seed)
    for i in range(n):
        skill.learn_one(f"{rng.choice(SCREEN)} (ticket {i})", "technical")


def test_corrections_away_from_an_untaught_skill_win_on_a_warm_model() -> None:
    """The live repro: a model taught on the other skills, then the desk resolves screen messages as technical."""
    scorer = LearnerScorer(min_labels=1, min_evaluated=10**9)
    skill = scorer.learner("skill")
    skill.tracker.log_drift = False
    for text, label in bitext(600):
        skill.learn_one(text, label)
    teach_screen(skill, 10)
    routed = [top(scorer, f"{t} (ticket x)", SEEDS) for t in SCREEN]
    assert routed == ["technical"] * len(SCREEN), routed  # was warranty for all six after 10 corrections
    for text in FRESH:  # warranty has no label yet: its keywords still route what they name
        assert top(scorer, text, SEEDS) == "warranty", text


def test_reviewers_replay_never_sends_screen_messages_to_warranty() -> None:
    """`/tmp/reviewC/sim3.py`: the default policy plus warranty, a model taught only technical labels.

    Such a model is never sure of itself (one class: River's softmax stops learning), so the margin test
    cannot help; the keyword's document count does: every labelled message with "screen" was technical.
    """
    policy = yaml.safe_load((Path(__file__).resolve().parents[1] / "router/default_policy.yaml").read_text())
    skills = {k: tuple(v["keywords"]) for k, v in policy["skills"].items()} | {
        "warranty": ("warranty", "guarantee", "screen")
    }
    scorer = LearnerScorer()
    skill = scorer.learner("skill")
    done = 0
    for n in (50, 100, 150, 300, 500):
        teach_screen(skill, n - done, seed=n)
        done = n
        routed = [top(scorer, f"{t} (ticket x)", skills) for t in SCREEN]
        # Old code: one or two went to warranty from 12 labels, all six from 150 on. Now a message the rules
        # call a tie may still go to warranty until `CONTESTED_AT` (100) such labels have fully contested it.
        assert routed.count("warranty") <= (1 if n < 100 else 0), (n, routed)


def test_keyword_beats_a_hesitant_model_and_loses_to_a_sure_one() -> None:
    skill = SkillLearner()
    hesitant = skill.with_keyword_prior({"billing": 0.4, "general": 0.2, "warranty": 0.0}, {"warranty": 1})
    assert max(hesitant, key=hesitant.__getitem__) == "warranty"
    sure = skill.with_keyword_prior({"billing": 3.0, "general": 0.2, "warranty": 0.0}, {"warranty": 1})
    assert max(sure, key=sure.__getitem__) == "billing"
    two_hits = skill.with_keyword_prior({"billing": 3.0, "general": 0.2, "warranty": 0.0}, {"warranty": 2})
    assert max(two_hits, key=two_hits.__getitem__) == "warranty"  # 3.0 logits of keywords beat a 2.8 margin


def test_a_keyword_the_desk_keeps_labelling_as_another_skill_stops_counting() -> None:
    skill = SkillLearner()
    logits = {"technical": 0.1, "general": 0.0, "warranty": 0.0}
    kws = {"warranty": ["screen"]}
    assert skill.with_keyword_prior(logits, {"warranty": 1}, keywords=kws)["warranty"] == pytest.approx(1.5)
    teach_screen(skill, 50)
    assert skill.keyword_against("screen", 0) == 50
    assert skill.with_keyword_prior(logits, {"warranty": 1}, keywords=kws)["warranty"] == pytest.approx(0.75)
    teach_screen(skill, 50, seed=4)
    assert skill.with_keyword_prior(logits, {"warranty": 1}, keywords=kws)["warranty"] == 0.0
    assert skill.keyword_against("guarantee", 0) == 0  # a keyword never labelled keeps its full worth


def test_a_contested_keyword_lifts_nothing_and_one_rival_is_no_free_win() -> None:
    """Found in the diff review: at no worth left, the skill was still raised to the runner-up's logit (a share
    taken from the favourite); and with a single other skill, the favourite was the runner-up, so any keyword
    beat any margin."""
    skill = SkillLearner()
    logits = {"billing": 3.0, "technical": 1.0, "general": 0.5, "orders": -2.0}
    contested = skill.with_keyword_prior(logits, {"orders": 1}, keywords={"orders": []})
    assert contested["orders"] == -2.0
    pair = SkillLearner()
    sure = pair.with_keyword_prior({"billing": 5.0, "orders": 0.0}, {"orders": 1})
    assert sure["orders"] < sure["billing"]  # one keyword (1.5) does not beat a margin of 5
    unsure = pair.with_keyword_prior({"billing": 0.5, "orders": 0.0}, {"orders": 1})
    assert unsure["orders"] > unsure["billing"]  # but it does a hesitant model
