"""Bounded text features: River's TF-IDF with every n-gram hashed into a fixed number of buckets.

Why hashing rather than a capped vocabulary: a capped vocabulary has to decide which terms to evict,
which changes feature meaning under the model's feet and needs its own bookkeeping in every snapshot.
Hashing keeps the model exactly River's `TFIDF(ngram_range=(1, 2))`, only with integer feature names,
so both the document-frequency table and every class's weight vector can never hold more than
`n_features` entries however many messages stream past. Packed (`learners.compact`), each table costs
at most 4 bytes a bucket, and `learners.budget` halves the buckets when a model gains so many classes
that the worst case would pass `MAX_SNAPSHOT_BYTES` (see `tests/test_learners_bounds.py`).

The hash is CRC-32, not `hash()`: Python salts string hashes per process, and a snapshot written by
the learner process must mean the same thing inside every worker.
"""

from __future__ import annotations

import collections
import functools
import itertools
import re
import unicodedata
import zlib
from typing import Any

from river import feature_extraction

from learners.compact import Packed, pack, unpack

N_FEATURES = 2**16
"""Default (and largest) bucket count: 256 KiB per packed table, so up to 38 skills keep it (see `budget`)."""

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

    def fold(self, n_features: int) -> None:
        """Re-hash into `n_features` buckets (a divisor of the current count, so `crc % new` equals
        `(crc % old) % new` and every term lands where its old bucket folds to). A merged bucket's
        count is the sum, an upper bound (a message may hold terms of both), capped at the message count.
        """
        if n_features <= 0 or self.n_features % n_features:
            raise ValueError(f"cannot fold {self.n_features} buckets into {n_features}")
        folded: collections.Counter[int] = collections.Counter()
        for bucket, count in self.dfs.items():
            folded[bucket % n_features] += count
        self.dfs = collections.Counter({b: min(c, self.n) for b, c in folded.items()})
        self.n_features = n_features

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        dfs = self.dfs
        state["dfs"] = pack(dfs, "I" if max(dfs.values(), default=0) < 2**32 else "Q")
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Reads both layouts: schema 2 packs `dfs`, schema 1 pickled the `Counter` itself."""
        dfs: Packed | collections.Counter[Any] = state["dfs"]
        if not isinstance(dfs, collections.Counter):
            counts: collections.Counter[Any] = collections.Counter()
            unpack(dfs, counts)
            state = state | {"dfs": counts}  # same attribute order as the writer's
        self.__dict__.update(state)
