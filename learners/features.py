"""Bounded text features: River's TF-IDF with every n-gram hashed into a fixed number of buckets.

Why hashing rather than a capped vocabulary: a capped vocabulary has to decide which terms to evict,
which changes feature meaning under the model's feet and needs its own bookkeeping in every snapshot.
Hashing keeps the model exactly River's `TFIDF(ngram_range=(1, 2))`, only with integer feature names,
so both the document-frequency table and every class's weight vector can never hold more than
`n_features` entries however many messages stream past. The worst-case snapshot size is therefore
a constant we can measure (see `bench/learners.py` and `tests/test_learners_snapshot.py`).

The hash is CRC-32, not `hash()`: Python salts string hashes per process, and a snapshot written by
the learner process must mean the same thing inside every worker.
"""

from __future__ import annotations

import functools
import itertools
import re
import unicodedata
import zlib
from typing import Any

from river import feature_extraction

N_FEATURES = 2**16
"""Default bucket count; 65,536 buckets keep a 5-skill snapshot near 5 MB in the worst case."""

_TOKEN = re.compile(r"(?u)\b\w[\w\-]+\b")  # River's default tokenizer pattern


def _fold(text: str) -> str:
    try:
        text.encode("ascii")
    except UnicodeEncodeError:
        text = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    return text.lower()


@functools.lru_cache(maxsize=512)
def hashed_terms(text: str, n_features: int) -> tuple[int, ...]:
    """Unigram and bigram bucket ids of one message.

    Cached because the four learners of a worker all featurise the same message back to back; the
    cache turns three of those four tokenisations into a dictionary lookup.
    """
    tokens = _TOKEN.findall(_fold(text))
    grams = tokens + [f"{a} {b}" for a, b in itertools.pairwise(tokens)]
    return tuple(zlib.crc32(g.encode()) % n_features for g in grams)


class HashingTFIDF(feature_extraction.TFIDF):
    """`TFIDF(ngram_range=(1, 2))` whose terms are bucket ids, so its memory is bounded."""

    def __init__(self, n_features: int = N_FEATURES, ngram_range: tuple[int, int] = (1, 2)) -> None:
        if ngram_range != (1, 2):
            raise ValueError("HashingTFIDF only implements ngram_range=(1, 2), the measured best")
        super().__init__(ngram_range=ngram_range)
        self.n_features = n_features

    def process_text(self, x: Any) -> tuple[int, ...]:
        return hashed_terms(str(x), self.n_features)
