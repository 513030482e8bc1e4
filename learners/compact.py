"""River's linear models with weights kept on the float32 grid and pickled as packed arrays.

Why: River keeps every weight vector as a dict of Python floats, and pickle spends ~12 bytes on each
entry. A softmax model has one vector per class, each up to `n_features` entries, so the worst-case
snapshot grew by ~0.8 MB per skill and a 13-skill team already passed the 10 MiB the README promises.
Packed as float32 arrays a vector costs at most `4 * n_features` bytes.

Why round in memory too, not only in the pickle: a snapshot is then an exact copy of the model that
wrote it, so every worker serves bit for bit the model whose accuracy the learner process tracks,
and a new leader resumes exactly where the old one stopped. float32 keeps ~7 significant digits,
far below what SGD(2.0) on TF-IDF features can resolve (accuracy is unchanged on the shared data).

Learning and prediction stay River's own `learn_one` / `predict_proba_one`. The overrides: the
softmax model's SGD rounds as it steps (`Float32SGD`), and its dot product sums in the message's
feature order, so the result cannot depend on the order a restored vector's entries were re-inserted.
"""

from __future__ import annotations

import collections
import copy
import functools
import math
from array import array
from collections.abc import Iterable, Mapping, MutableMapping
from typing import Any, TypeAlias, cast

import numpy as np
from river import linear_model, optim, utils
from river.base.typing import ClfTarget, FeatureName

Vector: TypeAlias = "MutableMapping[Any, float] | utils.VectorDict[Any, float]"
"""One weight vector: a dict for `SoftmaxRegression`'s classes, River's `VectorDict` for `LogisticRegression`
(a string: `VectorDict` cannot be subscripted at run time)."""
Packed = tuple[array | None, array, dict[Any, Any]]
"""(bucket ids, or None when `values` is indexed by bucket id; the values; entries with other keys).
Standard-library arrays, not numpy's, so a snapshot does not depend on numpy's pickle format."""

_MAX_BUCKET = 2**32
"""Keys from 0 to this (exclusive) are hashed buckets; anything else (automation's `_urgency`...) is kept as is."""
_DTYPES = {"f": np.float32, "H": np.uint16, "I": np.uint32, "Q": np.uint64}


def _hole(typecode: str) -> float:
    """What marks an untouched bucket in a dense table: NaN for weights (0.0 is a real weight), 0 for counts."""
    return math.nan if typecode == "f" else 0


def _to_array(values: np.ndarray, typecode: str) -> array:
    out = array(typecode)
    out.frombytes(values.astype(_DTYPES[typecode], copy=False).tobytes())
    return out


def pack(table: Mapping[Any, Any], typecode: str = "f") -> Packed:
    """The smaller of a dense array (holes marked, see `_hole`) and a sparse keys + values pair.

    Dense costs at most 4 bytes per bucket of the hashing space, which is what bounds the worst case;
    sparse keeps a young model (few buckets touched) small. numpy does the per-entry work: a full
    50-class model has 1.6 million entries.
    """
    other = {k: table[k] for k in [k for k in table if type(k) is not int]}  # `is not`: True/False stay keys
    buckets = {k: v for k, v in table.items() if k not in other} if other else table
    keys = np.fromiter(buckets.keys(), dtype=np.int64, count=len(buckets))
    if len(keys) and (keys.min() < 0 or keys.max() >= _MAX_BUCKET):
        other |= {k: v for k, v in buckets.items() if not 0 <= k < _MAX_BUCKET}
        buckets = {k: v for k, v in buckets.items() if 0 <= k < _MAX_BUCKET}
        keys = np.fromiter(buckets.keys(), dtype=np.int64, count=len(buckets))
    with np.errstate(over="ignore"):  # a weight beyond float32's range becomes inf, as array("f") would
        values = np.fromiter(buckets.values(), dtype=np.float64 if typecode == "f" else np.uint64, count=len(keys))
    size = int(keys.max()) + 1 if len(keys) else 0
    keycode = "H" if size <= 2**16 else "I"
    item = array(typecode).itemsize
    if item * size <= (item + array(keycode).itemsize) * len(keys):
        dense = np.full(size, _hole(typecode), dtype=_DTYPES[typecode])
        with np.errstate(over="ignore"):
            dense[keys] = values
        return None, _to_array(dense, typecode), other
    with np.errstate(over="ignore"):
        return _to_array(keys, keycode), _to_array(values, typecode), other


def unpack(packed: Packed, into: dict[Any, Any]) -> None:
    """Fill an empty `into`; `dict.update` because `Counter.update` would add counts, not set them."""
    keys, values, other = packed
    if keys is None:
        dense = np.frombuffer(values, dtype=_DTYPES[values.typecode])
        at = np.flatnonzero(~np.isnan(dense) if values.typecode == "f" else dense != 0)
        dict.update(into, zip(at.tolist(), dense[at].tolist(), strict=True))
    else:
        dict.update(into, zip(keys.tolist(), values.tolist(), strict=True))
    dict.update(into, other)


def round_float32(vector: Vector, keys: Iterable[Any] | None = None) -> None:
    """Snap `keys` (all entries when None) to the nearest float32; one C-level cast for the batch."""
    keys = list(vector.keys()) if keys is None else [k for k in keys if k in vector]
    if keys:
        vector.update(dict(zip(keys, array("f", [vector[k] for k in keys]), strict=True)))  # VectorDict wants a dict


def dot(weights: Mapping[Any, float], x: Mapping[Any, float]) -> float:
    """`utils.math.dot`, always in `x`'s order: River iterates the shorter dict, so its sum (floats are
    not associative) could differ in the last bit between a model and its restored copy."""
    return sum(xi * weights[i] for i, xi in x.items() if i in weights)


class Float32SGD(optim.SGD):
    """River's SGD whose step lands on the float32 grid: rounding inside the step's own pass costs a
    third of what a rounding pass after it did (a 77-class model learns ~15 % slower, not ~40 %)."""

    @classmethod
    def of(cls, optimizer: optim.base.Optimizer | None) -> Float32SGD:
        if isinstance(optimizer, Float32SGD):
            return optimizer
        if optimizer is not None and type(optimizer) is not optim.SGD:
            raise TypeError(f"float32 weights are implemented for SGD, not {type(optimizer).__name__}")
        fresh = cls.__new__(cls)
        fresh.__dict__.update(vars(optimizer or optim.SGD(0.01)))  # same learning rate and step count
        return fresh

    def _step_with_dict(self, w: Any, g: Any) -> Any:
        lr = self.learning_rate
        w.update(zip(g, array("f", [w[i] - lr * gi for i, gi in g.items()]), strict=True))
        return w


class CompactSoftmaxRegression(linear_model.SoftmaxRegression):
    """`SoftmaxRegression` whose per-class weights live on the float32 grid and pickle as arrays."""

    def __init__(
        self,
        optimizer: optim.base.Optimizer | None = None,
        loss: optim.losses.MultiClassLoss | None = None,
        l2: float = 0,
    ) -> None:
        super().__init__(optimizer=Float32SGD.of(optimizer), loss=loss, l2=l2)

    def predict_proba_one(self, x: dict[FeatureName, Any], **kwargs: Any) -> dict[ClfTarget, float]:
        return cast(dict[ClfTarget, float], utils.math.softmax({label: dot(w, x) for label, w in self.weights.items()}))

    def vectors(self) -> list[Vector]:
        return list(self.weights.values())

    def to_float32(self) -> None:
        """Bring a model trained with float64 weights (schema 1) onto the grid, and its optimizers too."""
        for vector in self.weights.values():
            round_float32(vector)
        self.optimizer = Float32SGD.of(self.optimizer)
        optimizers = {label: Float32SGD.of(o) for label, o in self.optimizers.items()}
        self.optimizers = collections.defaultdict(functools.partial(copy.deepcopy, self.optimizer), optimizers)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["weights"] = {label: pack(w) for label, w in self.weights.items()}
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        weights: collections.defaultdict[Any, dict[Any, float]]
        weights = collections.defaultdict(functools.partial(collections.defaultdict, float))
        for label, vector in state["weights"].items():
            unpack(vector, weights[label])
        self.__dict__.update(state | {"weights": weights})  # same attribute order as the writer's


class CompactLogisticRegression(linear_model.LogisticRegression):
    """`LogisticRegression` (one vector) with the same float32 grid and packed pickle. Its step runs in
    River's Rust `VectorDict`, so the few weights a message touched are rounded after it instead."""

    def learn_one(self, x: dict[Any, float], y: Any, w: float = 1.0) -> None:
        super().learn_one(x, y, w)
        round_float32(self._weights, list(x))

    def vectors(self) -> list[Vector]:
        return [self._weights]

    def to_float32(self) -> None:
        round_float32(self._weights)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_weights"] = pack(self._weights.to_dict())
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        weights: dict[Any, float] = {}
        unpack(state["_weights"], weights)
        self.__dict__.update(state | {"_weights": utils.VectorDict(weights)})


CompactLinear = CompactSoftmaxRegression | CompactLogisticRegression
