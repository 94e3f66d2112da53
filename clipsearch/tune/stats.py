"""Confidence intervals for the numbers a fine-tune reports: Wilson intervals for a proportion, and a paired
bootstrap for the difference between two models scored on the same images (it is the difference that matters)."""

from __future__ import annotations

import math

import numpy as np


def wilson(k: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval for k successes in n trials (sound at small n and near 0 or 1)."""
    if n <= 0:
        return 0.0, 1.0
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def paired_difference(a: np.ndarray, b: np.ndarray, rounds: int = 2000, seed: int = 0) -> dict[str, float]:
    """Mean of b − a over the same items with a 95% percentile bootstrap interval (items resampled together)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    diff = b - a
    if len(diff) == 0:
        return {"difference": 0.0, "low": 0.0, "high": 0.0}
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, len(diff), size=(rounds, len(diff)))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return {"difference": float(diff.mean()), "low": float(low), "high": float(high)}
