"""A small TF-IDF index with cosine nearest-neighbour lookup.

Own implementation rather than River's streaming `TFIDF`: the knowledge base is a fixed corpus, so a
batch IDF is exact, deterministic and lets us keep an inverted index (a query only touches documents
sharing a term), which keeps matching well under a millisecond for a few thousand examples.
"""

from __future__ import annotations

import itertools
import math
import re
from collections import Counter, defaultdict
from collections.abc import Sequence

_TOKEN = re.compile(r"[a-z]+(?:'[a-z]+)?|\d+")
STOPWORDS = frozenset(
    "a an the i me my we our you your it is are am be to of in on for at and or do does did can could "
    "would will please pls hi hello hey there this that with how what when where which who im i'm what's "
    "it's i've i'd i'll where's when's how's who's".split()
)
FILLER = frozenset(
    "help helping assist assistance need needs want wanna know dont don't got gotta have has "
    "should possible ya u ur yo like try trying tell let some any just".split()
)
"""Words that wrap a support request rather than say what it is about ("I need assistance to ...", "I
don't know how to ..."). A word the KB never uses still counts in a question's length (see
`TfidfIndex.unknown_idf`), so each of them cuts the confidence of an otherwise exact question."""


def stem(word: str) -> str:
    """Fold the common inflections: tracking/tracked → track, invoices → invoic(e), cancelling → cancel.

    Deliberately crude (no dictionary, a handful of suffix rules applied the same way to examples and
    questions): the KB lists a few phrasings per intent and customers inflect them every which way.
    """
    if len(word) <= 3 or not word.isalpha():
        return word
    for suffix in ("ing", "ed", "ies", "es", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3 and not word.endswith(("ss", "us", "is")):
            word = word[: -len(suffix)] + ("y" if suffix == "ies" else "")
            break
    if word.endswith("e") and len(word) > 4:
        word = word[:-1]
    if len(word) > 3 and word[-1] == word[-2] and word[-1] not in "aeious":
        word = word[:-1]
    return word


def tokens(text: str) -> list[str]:
    """Stemmed words and word pairs; numbers collapse to '#', because order ids must not look like topics."""
    words = ["#" if t.isdigit() else t for t in _TOKEN.findall(text.lower())]
    words = [stem(w) for w in words if w not in STOPWORDS and w not in FILLER]
    return words + [f"{a} {b}" for a, b in itertools.pairwise(words)]


def surface(text: str) -> str:
    """The words of a text as typed, lower-cased, without punctuation: "Where is my refund?" → "where is my refund"."""
    return " ".join(_TOKEN.findall(text.lower()))


def surface_similarity(a: str, b: str) -> float:
    """Cosine of the stemmed words *with* stopwords and filler kept.

    Not a match score (that is `TfidfIndex`, which drops the words that wrap a request so "I need help to
    track my order" finds "track my order"), but a tie-break between examples the index scores alike: with
    only "refund" left, "Where is my refund?" ties with "I want a refund"; the dropped "where is my" is what
    tells them apart.
    """
    ca = Counter(stem(w) for w in _TOKEN.findall(a.lower()))
    cb = Counter(stem(w) for w in _TOKEN.findall(b.lower()))
    dot = sum(v * cb[t] for t, v in ca.items())
    na = math.sqrt(sum(v * v for v in ca.values()))
    nb = math.sqrt(sum(v * v for v in cb.values()))
    return dot / (na * nb) if na and nb else 0.0


class TfidfIndex:
    def __init__(self, documents: Sequence[str]) -> None:
        counts = [Counter(tokens(d)) for d in documents]
        df: Counter[str] = Counter()
        for c in counts:
            df.update(c.keys())
        n = len(documents)
        self.idf = {t: math.log((1 + n) / (1 + k)) + 1.0 for t, k in df.items()}
        self.postings: dict[str, list[tuple[int, float]]] = defaultdict(list)
        self.size = n
        self.unknown_idf = math.log(1 + n) + 1.0
        """Terms the KB has never seen still count in a query's length: an off-topic question sharing
        one word with an example must not look like a perfect match."""
        for i, c in enumerate(counts):
            for term, w in self._weights(c).items():
                self.postings[term].append((i, w))

    def _weights(self, counts: Counter[str]) -> dict[str, float]:
        """Sublinear tf × idf, L2-normalised (unknown terms weigh in the norm only, see `unknown_idf`)."""
        raw = {t: (1.0 + math.log(k)) * self.idf.get(t, self.unknown_idf) for t, k in counts.items()}
        norm = math.sqrt(sum(v * v for v in raw.values()))
        return {t: v / norm for t, v in raw.items() if t in self.idf} if norm else {}

    def similarities(self, text: str) -> dict[int, float]:
        """Cosine similarity to every document sharing at least one term."""
        scores: dict[int, float] = defaultdict(float)
        for term, wq in self._weights(Counter(tokens(text))).items():
            for doc, wd in self.postings.get(term, ()):
                scores[doc] += wq * wd
        return dict(scores)


def cosine(a: str, b: str) -> float:
    """Similarity of two texts on their own (used to spot a customer repeating themselves)."""
    ca, cb = Counter(tokens(a)), Counter(tokens(b))
    dot = sum(v * cb[t] for t, v in ca.items())
    na = math.sqrt(sum(v * v for v in ca.values()))
    nb = math.sqrt(sum(v * v for v in cb.values()))
    return dot / (na * nb) if na and nb else 0.0
