"""A query's typical score: NumPy's median, without the NaN check that imports numpy.ma."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from clipsearch.query.baseline import _median, typical_scores


@pytest.mark.parametrize("n", [1, 2, 3, 4, 47, 48, 511, 512])
def test_median_is_numpys(n: int) -> None:
    values = np.random.default_rng(n).standard_normal(n).astype(np.float32)
    assert _median(values) == float(np.median(values))
    spread = np.abs(values - _median(values))
    assert _median(spread) == float(np.median(spread))


class _Catalog:
    def __init__(self, matrix: np.ndarray) -> None:
        self.matrix = matrix

    def version(self) -> int:
        return 1

    def filter_ids(self) -> np.ndarray:
        return np.arange(len(self.matrix))

    def embeddings(self, ids: list[int], dim: int) -> tuple[np.ndarray, np.ndarray]:
        return np.asarray(ids), self.matrix[ids]


def test_typical_scores_are_the_median_and_scaled_deviation() -> None:
    rng = np.random.default_rng(0)
    matrix = rng.standard_normal((40, 8)).astype(np.float32)
    qvec = rng.standard_normal(8).astype(np.float32)
    scores = matrix @ qvec
    median = float(np.median(scores))
    assert typical_scores(_Catalog(matrix), qvec) == {
        "median": round(median, 6), "spread": round(1.4826 * float(np.median(np.abs(scores - median))), 6)}
    assert typical_scores(_Catalog(matrix[:2]), qvec) is None


def test_no_numpy_ma() -> None:
    code = ("import sys, numpy as np\n"
            "from clipsearch.query.baseline import _median\n"
            "_median(np.arange(5, dtype=np.float32))\n"
            "print('numpy.ma' in sys.modules)\n")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip() == "False"
