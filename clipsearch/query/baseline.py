"""What a query's score is worth: the median and spread of its scores over a fixed sample of the store.

Cosine scores mean different things under different models (a match scores 0.3 under CLIP, 0.7 under a small
fine-tuned model), so "the scores fall off here" is judged against the query's own scores over the collection:
a hit some spreads above the typical picture stands out; a nonsense query's best hits do not. The
sample (SAMPLE stored embeddings, drawn with a fixed seed) is read once per catalog version.
"""

from __future__ import annotations

import weakref
from typing import Any

import numpy as np

SAMPLE = 512
_samples: weakref.WeakKeyDictionary[Any, tuple[int, np.ndarray]] = weakref.WeakKeyDictionary()


def sample_vectors(catalog: Any, dim: int) -> np.ndarray:
    """Up to SAMPLE stored embeddings of the catalog (a `CatalogReads`), the same ones until it changes."""
    version = catalog.version()
    cached = _samples.get(catalog)
    if cached is not None and cached[0] == version:
        return cached[1]
    ids = catalog.filter_ids()
    if len(ids) > SAMPLE:
        ids = np.random.default_rng(0).choice(ids, size=SAMPLE, replace=False)
    _found, matrix = catalog.embeddings([int(i) for i in ids], dim)
    _samples[catalog] = (version, matrix)
    return matrix


def typical_scores(catalog: Any, qvec: np.ndarray) -> dict[str, float] | None:
    """{"median", "spread"} of the query vector's scores over the sample, or None for fewer than 3 pictures.

    Robust statistics (the median, and the median absolute deviation scaled to a normal's standard deviation):
    the few pictures that match a query do not move them, so in a small store a real match still stands out
    by many spreads, where the mean and standard deviation would be dragged towards it."""
    matrix = sample_vectors(catalog, len(qvec))
    if len(matrix) < 3:
        return None
    scores = matrix @ qvec.astype(np.float32)
    median = _median(scores)
    spread = 1.4826 * _median(np.abs(scores - median))
    return {"median": round(median, 6), "spread": round(spread, 6)}


def _median(values: np.ndarray) -> float:
    """np.median's value (the mean of the two middle values when their number is even), without its NaN check,
    which imports numpy.ma (~25 ms of a cold query)."""
    n = len(values)
    low, high = (n - 1) // 2, n // 2
    part = np.partition(values, [low, high])
    return float((part[low] + part[high]) / 2)
