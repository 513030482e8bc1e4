"""Knowledge base: intents with example questions and one answer, plus the bitext loader.

Answers are written by people (or come from the bitext corpus); the bot only picks one. Keeping the KB
as data means support leads can add an intent without touching code.
"""

from __future__ import annotations

import csv
import hashlib
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

DEFAULT_KB_PATH = Path(__file__).with_name("default_kb.yaml")


class Intent(BaseModel):
    """One entry: example questions and the answer they get.

    `handoff: true` marks an entry whose examples are *problems* a person must handle (a sign-up that
    fails, a payment error, a complaint). It has no answer: when a question lands nearest to it, the bot
    hands off instead of answering with the closest how-to, which for "I can't sign up" is the sign-up
    instructions the customer has already tried. Nearest-neighbour matching cannot tell "how do I sign up"
    from "I can't sign up" without such counter-examples.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=80)
    examples: tuple[str, ...] = Field(min_length=1)
    answer: str = ""
    category: str | None = None
    handoff: bool = False

    @model_validator(mode="after")
    def _answer_unless_handoff(self) -> Intent:
        if self.handoff and self.answer:
            raise ValueError(f"intent {self.name!r}: a handoff entry has no answer (the bot never sends it)")
        if not self.handoff and not self.answer.strip():
            raise ValueError(f"intent {self.name!r}: an answer is required unless 'handoff: true'")
        return self


class KnowledgeBase(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    intents: tuple[Intent, ...] = Field(min_length=1)

    def by_name(self) -> dict[str, Intent]:
        return {i.name: i for i in self.intents}


class KnowledgeBaseError(ValueError):
    pass


def load_kb(path: str | Path | None = None) -> KnowledgeBase:
    """YAML (`intents: [{name, examples, answer | handoff: true}]`) or CSV (`intent,question,answer` rows)."""
    p = Path(path) if path else DEFAULT_KB_PATH
    try:
        if p.suffix.lower() == ".csv":
            return kb_from_pairs(_csv_rows(p))
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
        return KnowledgeBase.model_validate(data)
    except OSError as exc:
        raise KnowledgeBaseError(f"knowledge base {p}: {exc.strerror or exc}") from exc
    except (ValueError, yaml.YAMLError, KeyError) as exc:
        raise KnowledgeBaseError(f"knowledge base {p}: {exc}") from exc


def _csv_rows(p: Path) -> Iterable[tuple[str, str, str]]:
    with p.open(newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            yield row["intent"], row["question"], row["answer"]


def kb_from_pairs(rows: Iterable[tuple[str, str, str]]) -> KnowledgeBase:
    """Group (intent, question, answer) rows; an intent's answer is its most frequent one."""
    examples: dict[str, list[str]] = defaultdict(list)
    answers: dict[str, Counter[str]] = defaultdict(Counter)
    for intent, question, answer in rows:
        if question.strip():
            examples[intent].append(question.strip())
        if answer.strip():
            answers[intent][answer.strip()] += 1
    return KnowledgeBase(
        intents=tuple(
            Intent(name=name, examples=tuple(ex), answer=answers[name].most_common(1)[0][0])
            for name, ex in sorted(examples.items())
            if answers[name]
        )
    )


class BitextRow(BaseModel):
    instruction: str
    intent: str
    category: str
    response: str


def load_bitext(path: str | Path, intents: Sequence[str] | None = None) -> list[BitextRow]:
    """Rows of the Bitext customer-support corpus, read where it lives (it is never copied into the repo)."""
    wanted = set(intents) if intents else None
    out: list[BitextRow] = []
    with Path(path).open(newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            if wanted is None or row["intent"] in wanted:
                out.append(BitextRow(instruction=row["instruction"], intent=row["intent"],
                                     category=row["category"], response=row["response"]))
    return out


def split_bitext(rows: Sequence[BitextRow], test_fraction: float = 0.2) -> tuple[list[BitextRow], list[BitextRow]]:
    """Deterministic train/test split by a hash of the question, so runs and machines agree."""
    train: list[BitextRow] = []
    test: list[BitextRow] = []
    cut = int(test_fraction * 1000)
    for r in rows:
        bucket = int(hashlib.sha1(r.instruction.encode()).hexdigest()[:8], 16) % 1000
        (test if bucket < cut else train).append(r)
    return train, test


def kb_from_bitext(rows: Iterable[BitextRow]) -> KnowledgeBase:
    return kb_from_pairs((r.intent, r.instruction, r.response) for r in rows)
