"""When the bot must step aside, decided on the whole conversation rather than the last line.

Each check returns a reason a human reads on the card ("customer asked for a human ('a person')"), so
the agent who picks the conversation up knows why the bot let go.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from gateway.domain import Conversation, Direction, Scores
from integrations.automation.tfidf import cosine, tokens
from router.rules import find_phrase, normalise

DID_NOT_HELP = (
    "didn't help", "did not help", "doesn't help", "does not help", "not helpful", "no help", "useless",
    "not what i asked", "that's not what i", "doesn't answer", "does not answer", "didn't answer",
    "wrong answer", "still doesn't work", "still not working", "still does not work", "didn't work",
    "did not work", "that's wrong", "not my question", "you don't understand", "you're not understanding",
)

PROBLEM_WORDS = (
    "error", "errors", "problem", "problems", "issue", "issues", "trouble", "not working", "doesn't work",
    "does not work", "isn't working", "won't work", "failed", "fails", "failing", "wrong", "incorrect",
    "broken", "damaged", "missing", "never arrived", "hasn't arrived", "has not arrived", "didn't arrive",
    "did not arrive", "not arrived", "declined", "charged twice", "double charged", "stuck",
)
"""Words of a customer describing something that went wrong rather than asking how to do it."""


def unaddressed_problem(question: str, example: str, words: Sequence[str] = PROBLEM_WORDS) -> str | None:
    """A reason to hand off when the question states a problem the matched entry was not written for.

    The nearest example decides: "Wrong address on my order" or "My discount code doesn't work" are
    problem phrasings a KB author put in on purpose, so their answer addresses the problem; "I have errors
    trying to change the address" matching "How do I change my address?" would get the how-to the customer
    already tried. The KB's handoff entries catch the problems we know; this catches the rest.
    """
    hit = find_phrase(normalise(question), words)
    if hit and not find_phrase(normalise(example), words):
        return f"customer describes a problem ('{hit}') the answer does not address"
    return None


@dataclass(frozen=True, slots=True)
class HandoffRules:
    human_phrases: tuple[str, ...]
    frustration_keywords: tuple[str, ...]
    sentiment_floor: float = -0.4
    repeat_similarity: float = 0.8
    max_bot_answers: int = 3
    did_not_help: tuple[str, ...] = DID_NOT_HELP


Check = Callable[[Conversation, Scores, HandoffRules], str | None]


def _inbound(conv: Conversation) -> list[str]:
    return [m.text for m in conv.messages if m.direction is Direction.INBOUND]


def asks_for_human(conv: Conversation, scores: Scores, rules: HandoffRules) -> str | None:
    for text in reversed(_inbound(conv)):
        hit = find_phrase(normalise(text), rules.human_phrases)
        if hit:
            return f"customer asked for a human ('{hit}')"
    return None


def frustrated(conv: Conversation, scores: Scores, rules: HandoffRules) -> str | None:
    for text in reversed(_inbound(conv)):
        hit = find_phrase(normalise(text), rules.frustration_keywords)
        if hit:
            return f"customer is frustrated (keyword '{hit}')"
    if scores.sentiment < rules.sentiment_floor:
        return f"customer is frustrated (sentiment {scores.sentiment:.2f} < {rules.sentiment_floor:.2f})"
    return None


def answer_did_not_help(conv: Conversation, scores: Scores, rules: HandoffRules) -> str | None:
    """Only after the bot has said something: "didn't help" in a first message is a different story."""
    seen_answer = False
    for m in conv.messages:
        if m.direction is Direction.OUTBOUND:
            seen_answer = True
        elif seen_answer and find_phrase(normalise(m.text), rules.did_not_help):
            return "customer said the answer did not help"
    return None


def repeats_themselves(conv: Conversation, scores: Scores, rules: HandoffRules) -> str | None:
    texts = _inbound(conv)
    if len(texts) < 2:
        return None
    last = texts[-1]
    if _too_short(last):
        return None
    if any(cosine(last, earlier) >= rules.repeat_similarity for earlier in texts[:-1] if not _too_short(earlier)):
        return "customer repeated their question"
    return None


def _too_short(text: str) -> bool:
    """Fewer than two words once filler is dropped: "I need help with my order" and "Where is my order?" are both
    just "order", a perfect match that is no repeat; two such messages say too little to call one a repeat."""
    return sum(1 for t in tokens(text) if " " not in t) < 2


def too_many_answers(conv: Conversation, scores: Scores, rules: HandoffRules) -> str | None:
    answers = sum(1 for m in conv.messages if m.direction is Direction.OUTBOUND)
    if answers >= rules.max_bot_answers:
        return f"bot already answered {answers} times"
    return None


CHECKS: tuple[Check, ...] = (asks_for_human, frustrated, answer_did_not_help, repeats_themselves, too_many_answers)


def handoff_reasons(
    conv: Conversation, scores: Scores, rules: HandoffRules, checks: Sequence[Check] = CHECKS
) -> list[str]:
    return [r for r in (check(conv, scores, rules) for check in checks) if r]
