"""A model decides only the classes it was taught (review C, finding 4).

223 resolves all with mood "neutral" gave a sentiment model with weight 1.00 and accuracy 1.00 that scored
every message 0.0: "I am very upset, this is terrible" lost the rules' -0.76 and its P2. With urgency all
"normal", "my account was hacked" lost the rules' 1.0 the same way. The weight came from the label count
alone; now each class the model has few labels of stays the rules'.
"""

from __future__ import annotations

from learners.coldstart import ColdStartScorer
from learners.datasets import SKILLS
from learners.service import LearnerScorer
from learners.snapshot import new_learners

FLOOR, URGENT = -0.4, 0.8  # the default policy's sentiment_floor and urgent threshold
CALM = [
    "Where can I find my invoice for March?",
    "I would like to change the delivery address of my order",
    "How do I update the password of my account?",
    "Can I pay with PayPal?",
    "Please send me a copy of the receipt",
]
ANGRY = [
    "This is ridiculous, the worst service ever, I am so disappointed",
    "Where is my order? I am very upset, this is terrible",
]
SECURITY = ["My account was hacked and someone stole my card details", "My card was stolen, block it please"]


def one_class_desk() -> LearnerScorer:
    learners = new_learners()
    for name in ("sentiment", "urgency"):
        learners[name].tracker.log_drift = False
    for i in range(223):
        text = f"{CALM[i % len(CALM)]} (ref {i})"
        learners["sentiment"].learn_one(text, "neutral")
        learners["urgency"].learn_one(text, False)
    return LearnerScorer(learners)


def test_a_model_taught_only_neutral_keeps_the_rules_for_angry_customers() -> None:
    scorer = one_class_desk()
    rules = ColdStartScorer()
    for text in ANGRY:
        got = scorer.score(text, SKILLS)
        assert got.sentiment == rules.score(text, SKILLS).sentiment < FLOOR, text  # was 0.0
        assert got.versions["sentiment"] == "rules-1"
    for text in SECURITY:
        assert scorer.score(text, SKILLS).urgency >= URGENT, text  # was ~0.2


def test_the_one_class_model_still_decides_its_own_class_and_health_says_what_it_lacks() -> None:
    scorer = one_class_desk()
    got = scorer.score("Please send me a copy of the receipt", SKILLS)
    assert got.versions["sentiment"] == "sentiment-v0" and abs(got.sentiment) < 0.05
    health = scorer.health()["sentiment"]
    assert health["labels_seen"] == 223 and health["rolling_accuracy"] == 1.0
    assert health["weight"] == 0.0  # /switchboard models showed 1.00
    assert health["class_weights"] == {"negative": 0.0, "neutral": 1.0, "positive": 0.0}


def test_the_model_takes_over_a_class_as_its_labels_arrive() -> None:
    scorer = one_class_desk()
    sentiment = scorer.learner("sentiment")
    text = ANGRY[1]
    for i in range(15):
        sentiment.learn_one(f"{ANGRY[i % 2]} (ref {i})", "negative")
    half = scorer.score(text, SKILLS)
    assert half.versions["sentiment"].startswith("sentiment-v0*0.50+")
    for i in range(15, 30):
        sentiment.learn_one(f"{ANGRY[i % 2]} (ref {i})", "negative")
    full = scorer.score(text, SKILLS)
    assert full.versions["sentiment"] == "sentiment-v0"
    assert full.sentiment == round(sentiment.polarity(text), 4) < FLOOR  # type: ignore[attr-defined]


def test_an_urgency_model_of_the_release_before_has_no_say_on_urgent() -> None:
    """Its `True` labels meant "high or urgent" (figure ≥ 0.5): credited to the urgent band, an old model kept
    paging P1 for messages agents had marked "high" (found in the diff review, with a model pickled by it)."""
    learners = new_learners()
    counts = learners["urgency"].tracker.class_labels
    counts.clear()
    counts.update({True: 300, False: 300})  # what an old model's tracker holds
    learners["urgency"].tracker.labels_seen = 600
    scorer = LearnerScorer(learners)
    assert scorer.class_weight("urgency", "urgent") == 0.0
    assert scorer.class_weight("urgency", "routine") == 1.0
