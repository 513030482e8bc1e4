"""Examples the TF-IDF index scores alike are told apart by their wording, not by their order in the KB.

With filler and stopwords dropped, "Where is my refund?", "I want a refund" and "Refund please" are all just
"refund": they tied at 1.0 and the earliest entry (refund_policy) answered a customer asking where their money
is, although the question is, word for word, a refund_status example.
"""

from __future__ import annotations

import pytest

from integrations.automation import AnswerBot, Intent, KnowledgeBase, tfidf

BOT = AnswerBot()


@pytest.mark.parametrize(
    ("question", "intent"),
    [
        ("Where is my refund?", "refund_status"),
        ("When will I get my refund?", "refund_status"),
        ("where is my refund", "refund_status"),
        ("WHERE IS MY REFUND!!", "refund_status"),
        ("I want a refund", "refund_policy"),
        ("Refund please", "refund_policy"),
    ],
)
def test_an_examples_own_wording_wins_a_tie(question: str, intent: str) -> None:
    m = BOT.match(question)
    assert m is not None and (m.intent, m.confidence) == (intent, 1.0), m


def test_every_default_example_matches_its_own_entry() -> None:
    """The general form of the bug: an example typed verbatim must get its own entry's answer."""
    wrong = [(e, i.name, m.intent if m else None) for i in BOT.kb.intents for e in i.examples
             if (m := BOT.match(e)) is None or m.intent != i.name]
    assert wrong == []


def test_without_an_exact_example_the_closer_full_wording_wins_not_kb_order() -> None:
    kb = KnowledgeBase(intents=(
        Intent(name="policy", examples=("I want a refund",), answer="30 days"),
        Intent(name="status", examples=("Where is my refund",), answer="5-7 days"),
    ))
    for bot in (AnswerBot(kb), AnswerBot(KnowledgeBase(intents=kb.intents[::-1]))):
        m = bot.match("where's my refund")
        assert m is not None and m.intent == "status" and m.confidence == 1.0, m
        m = bot.match("I would like a refund")
        assert m is not None and m.intent == "policy", m


def test_surface_similarity_keeps_the_words_matching_drops() -> None:
    assert tfidf.surface_similarity("Where is my refund?", "where is my refund") == pytest.approx(1.0)
    assert tfidf.surface_similarity("where's my refund", "Where is my refund?") > tfidf.surface_similarity(
        "where's my refund", "I want a refund")
