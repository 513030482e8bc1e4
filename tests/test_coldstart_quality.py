"""Cold-start scores cross the policy's thresholds for the right messages.

A review that ran public support datasets through the scorer and `decide()` found the rules routed badly
before any model had learned: the bot was reached only by messages with a '?', one descriptive word
('lost', 'cancelled') or an enthusiastic '!' made a calm customer 'frustrated' (P2), swearing read as
neutral, five polite follow-ups added up to P1 and a stolen card stayed P3. These pin the fixed
behaviour against the thresholds of the shipped policy, not against the scorer's own constants.
"""

from __future__ import annotations

import math

import pytest
from structlog.testing import capture_logs

from learners import coldstart
from learners.coldstart import ColdStartScorer, sentiment, urgency
from learners.service import LearnerScorer
from learners.snapshot import new_learners
from router.policy import load_policy

POLICY = load_policy()
T = POLICY.thresholds
SKILLS = POLICY.skill_keywords()
SCORER = ColdStartScorer()


def auto(text: str) -> float:
    return SCORER.score(text, SKILLS).automation_success


# -- 1. the bot gets calm, clear messages without needing a '?' ------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "Where is my order",
        "I want a refund",
        "I have an issue with my invoice",
        "I need to reset my password",
        "I would like to change my delivery address",
        "Can I get a refund?",
    ],
)
def test_a_calm_short_message_with_one_skill_keyword_clears_the_automation_floor(text: str) -> None:
    scores = SCORER.score(text, SKILLS)
    assert scores.sentiment >= T.sentiment_floor and scores.urgency <= T.automation_urgency_ceiling
    assert scores.automation_success >= T.automation_success_floor


@pytest.mark.parametrize(
    "text",
    [
        "Where is my order? This is ridiculous",  # angry
        "I want a refund, it's urgent",  # urgent
        "Where is my order!!",  # impatient
        "I want a refund now, I need it today",  # pressing
        "can i speak with somebody from customer service?",  # no skill keyword
        "¿Dónde está mi pedido?",  # no keyword the policy knows
        "I have a question about my invoice and a delivery",  # two skills, no question mark
    ],
)
def test_angry_urgent_or_unclear_messages_stay_below_the_automation_floor(text: str) -> None:
    assert auto(text) < T.automation_success_floor


def test_a_long_message_stays_below_the_automation_floor_even_with_several_keywords() -> None:
    story = (
        "I ordered a package three weeks ago and the tracking page said it had shipped, then the courier "
        "told me the parcel was returned to the warehouse because of the address, which I had checked "
        "twice, and now I have no idea whether the order will be delivered again or whether I should "
        "place a new one, so where is my order?"
    )
    assert len(coldstart.words(story)) > 60
    assert auto(story) < T.automation_success_floor


def test_a_short_conversation_is_not_penalised_like_one_long_message() -> None:
    """The pipeline scores the last five messages joined by newlines; length is per message."""
    joined = "\n".join(["Hi there", "I ordered a lamp last week", "Where is my order?"])
    assert auto(joined) >= T.automation_success_floor


# -- 2. describing a problem is not frustration; '!' alone is not negative ------------------------


@pytest.mark.parametrize(
    "text",
    [
        "I lost my card, can I get a new one?",
        "My flight was cancelled, can you rebook me?",
        "I think I entered the wrong address",
        "My transfer has been stuck since Monday",
        "I never received my package",
        "Where is my order!!",
        "Done and done! Best airline around, hands down!",
        "My card is missing!  Help!",
    ],
)
def test_calm_customers_describing_a_problem_are_not_under_the_sentiment_floor(text: str) -> None:
    assert sentiment(text) >= T.sentiment_floor


@pytest.mark.parametrize(
    "text",
    [
        "This is ridiculous, I want my money back",
        "Worst customer service I have ever had",
        "I am so disappointed with this airline",
        "My flight was cancelled again!!",  # a problem word plus shouting
        "You lost my bag and the staff were rude",
        "Two flights delayed and my luggage lost",  # two problem words
    ],
)
def test_upset_customers_are_still_under_the_sentiment_floor(text: str) -> None:
    assert sentiment(text) < T.sentiment_floor


def test_an_exclamation_does_not_turn_a_positive_message_negative() -> None:
    assert sentiment("Thanks, the app works great!!!") > 0


# -- 3. swearing ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "Can I get a refund? this is bullshit",
        "Where is my fucking order?",
        "I call to lodge a goddamn claim against your organization",
        "thanks, but your app is shit",
        "WTF happened to my payment",
    ],
)
def test_profanity_puts_the_message_under_the_sentiment_floor(text: str) -> None:
    scores = SCORER.score(text, SKILLS)
    assert scores.sentiment < T.sentiment_floor
    assert scores.automation_success < T.automation_success_floor


# -- 4. urgency does not pile up across messages or repeats --------------------------------------


def test_polite_follow_ups_do_not_add_up_to_urgent() -> None:
    msgs = [
        "Hi, my order still hasn't arrived",
        "Any news on it today?",
        "Could you check it now please?",
        "Still waiting, any update?",
        "Is there anything new again?",
    ]
    joined = urgency("\n".join(msgs))
    assert joined == max(urgency(m) for m in msgs)
    assert joined <= T.automation_urgency_ceiling


def test_a_repeated_sentence_counts_once() -> None:
    once = urgency("I was charged twice.")
    assert urgency(" ".join(["I was charged twice."] * 150)) == once
    assert once <= T.automation_urgency_ceiling


def test_an_urgent_earlier_message_keeps_the_conversation_urgent() -> None:
    joined = "\n".join(["My card was stolen", "Thanks, what do I do now?"])
    assert urgency(joined) >= T.urgent


def test_a_negated_cue_is_not_urgent() -> None:
    assert urgency("No rush, this is not urgent") == urgency("No rush, this is fine")


# -- 5. security incidents are urgent on their own ----------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "My card was stolen, what do I do?",
        "I think my account was hacked",
        "There was an unauthorised payment on my card",
        "There's an unauthorized transaction on my account",
        "My details were leaked",
        "Is this a data breach?",
        "I think this is fraud",
        "My card details are compromised",
    ],
)
def test_a_security_incident_reaches_the_urgent_threshold(text: str) -> None:
    assert urgency(text) >= T.urgent


# -- 6. a model that returns NaN falls back to the rules ----------------------------------------


def test_a_nan_from_a_model_falls_back_to_the_cold_start_value_and_is_logged(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    learners = new_learners()
    for name in ("urgency", "automation"):
        for _ in range(5):
            learners[name].learn_one({"text": "x"} if name == "automation" else "x", True)
    for _ in range(5):
        learners["sentiment"].learn_one("x", "neutral")
    scorer = LearnerScorer(learners, min_labels=1)
    monkeypatch.setattr(learners["urgency"], "probability", lambda x: math.nan)
    monkeypatch.setattr(learners["automation"], "probability", lambda x: math.inf)
    monkeypatch.setattr(learners["sentiment"], "polarity", lambda x: math.nan)
    text = "Where is my order?"
    with capture_logs() as logs:
        got = scorer.score(text, SKILLS)
    rules = ColdStartScorer().score(text, SKILLS)
    assert got.urgency == rules.urgency < T.urgent
    assert got.sentiment == rules.sentiment
    assert got.automation_success == coldstart.automation_success(
        text, rules.sentiment, rules.urgency, max(got.skill.values())
    )
    warned = {e["learner"] for e in logs if e["event"] == "learner_output_not_finite" and e["log_level"] == "warning"}
    assert warned == {"urgency", "automation", "sentiment"}
    assert got.versions["urgency"].endswith("+nonfinite")
