"""Multi-index hashing finds exactly the pairs that comparing every pair finds, each once, at every radius."""

from __future__ import annotations

import numpy as np
import pytest

from clipsearch.vectors.hamming import MAX_RADIUS, pairs_within, popcount


def _hashes(n: int, seed: int) -> np.ndarray:
    """Random 64-bit hashes, a tenth of them near copies (0-12 bits flipped) of others."""
    rng = np.random.default_rng(seed)
    words = rng.integers(0, 2**63, size=n, dtype=np.int64).astype(np.uint64) * np.uint64(2) \
        + rng.integers(0, 2, size=n).astype(np.uint64)
    for i in range(n // 10):
        x = words[i]
        for b in rng.choice(64, size=int(rng.integers(0, 13)), replace=False):
            x ^= np.uint64(1) << np.uint64(int(b))
        words[n - 1 - i] = x
    return words


@pytest.mark.parametrize("radius", [0, 1, 4, 8, 11])
def test_pairs_within_equals_comparing_every_pair(radius: int) -> None:
    queries = _hashes(400, 1)
    targets = np.concatenate([queries, _hashes(500, 2)])  # the queries themselves among the targets
    found: list[tuple[int, int, int]] = []
    for q, t, d in pairs_within(queries, targets, radius, block=64):  # several blocks
        found.extend(zip(q.tolist(), t.tolist(), d.tolist(), strict=True))
    assert len(found) == len(set(found))  # each pair once
    dist = popcount(queries[:, None] ^ targets[None, :])
    rows, cols = np.nonzero(dist <= radius)
    assert sorted(found) == sorted(zip(rows.tolist(), cols.tolist(), dist[rows, cols].tolist(), strict=True))
    assert len(found) > 400  # at least every shared hash with itself


def test_bounds_and_empty_inputs() -> None:
    with pytest.raises(ValueError):
        list(pairs_within(_hashes(4, 0), _hashes(4, 0), MAX_RADIUS + 1))
    assert list(pairs_within(np.zeros(0, np.uint64), _hashes(4, 0), 3)) == []
    top = np.array([(1 << 64) - 1], dtype=np.uint64)
    assert [d.tolist() for _q, _t, d in pairs_within(top, top ^ np.uint64(7), 3)] == [[3]]
