"""The snapshot size bound, kept whatever the number of classes by giving a model fewer buckets.

Packed tables cost 4 bytes a bucket (`learners.compact`), and a softmax model has one weight table per
class plus the shared document-frequency table, so its worst case (every bucket touched for every
class, where years of open-ended customer language head) is `4 * n_features * (classes + 1)` plus a
little state. With 2^16 buckets that stays under `MAX_SNAPSHOT_BYTES` up to 38 classes. A model that
grows past that folds into half the buckets (2^15 up to 77 classes, 2^14 up to 156, ...) instead of
growing without bound.

Why fold instead of starting with fewer buckets: classes arrive one outcome at a time, and nearly every
team stays well below 38 skills, where nothing is lost. Measured on banking77 (77 intents), 2^15
buckets instead of 2^16 cost 0.15 points of accuracy (held out 0.849 -> 0.847), a third to a half of
what two shuffles of the same data differ by; folding mid-stream ends exactly where 2^15 from the start does.
"""

from __future__ import annotations

from collections.abc import Mapping

from learners.compact import CompactLinear, Vector, round_float32
from learners.features import HashingTFIDF

MAX_SNAPSHOT_BYTES = 10 * 2**20
"""What one learner's snapshot blob may weigh at worst: the README's "≤ 10 MiB"."""
BASE_RESERVE = 64 * 2**10
"""Bytes kept for what is not a table: tracker, TF-IDF and optimizer settings, blob header."""
CLASS_RESERVE = 2**10
"""Bytes kept per class beside its table: label, its optimizer's pickle, array headers (~0.2 KiB measured)."""
MIN_FEATURES = 2**10
"""Folding stops here: fewer buckets would collide more than any bound is worth."""


def worst_case_bytes(n_features: int, classes: int) -> int:
    """Upper bound of a blob with `classes` weight tables over `n_features` buckets, all full."""
    return 4 * n_features * (classes + 1) + BASE_RESERVE + CLASS_RESERVE * classes


MAX_CLASSES = (MAX_SNAPSHOT_BYTES - BASE_RESERVE - 4 * MIN_FEATURES) // (4 * MIN_FEATURES + CLASS_RESERVE)
"""The most classes the bound holds for (2,034); past that a model keeps `MIN_FEATURES` and grows."""


def buckets_for(classes: int, n_features: int) -> int:
    """The largest power-of-two fraction of `n_features` whose worst case fits the bound (an odd count
    stops halving: folding needs the new count to divide the old one)."""
    while n_features % 2 == 0 and n_features > MIN_FEATURES:
        if worst_case_bytes(n_features, classes) <= MAX_SNAPSHOT_BYTES:
            break
        n_features //= 2
    return n_features


def fold_vector(vector: Vector, n_features: int, dfs: Mapping[int, int]) -> None:
    """Merge each bucket at or above `n_features` into `bucket % n_features`.

    The merged weight is the document-frequency-weighted mean of the weights that land there: a message
    that hits the merged bucket most likely held the more frequent of the terms it now stands for.
    """
    merged: dict[int, list[float]] = {}
    for key in [k for k in vector.keys() if type(k) is int and k >= n_features]:
        mass = dfs.get(key, 0) + 1.0
        acc = merged.setdefault(key % n_features, [0.0, 0.0])
        acc[0] += mass * vector.pop(key)
        acc[1] += mass
    for bucket, (total, mass) in merged.items():
        if bucket in vector:
            own = dfs.get(bucket, 0) + 1.0
            total, mass = total + own * vector[bucket], mass + own
        vector[bucket] = total / mass
    round_float32(vector, merged)


def fold(tfidf: HashingTFIDF, clf: CompactLinear, n_features: int) -> None:
    """Give the pair `n_features` buckets; weights first, since their merge reads the old counts."""
    if n_features >= tfidf.n_features:
        return
    for vector in clf.vectors():
        fold_vector(vector, n_features, tfidf.dfs)
    tfidf.fold(n_features)
