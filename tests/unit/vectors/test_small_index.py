"""VectorIndex on small seeded data, every type: counts at k >= n, filters, add/remove, the id lookup and the
padded top-k (the large-scale recall checks are in tests/integration/vectors)."""

from __future__ import annotations

import numpy as np
import pytest

from clipsearch.vectors.index import VectorIndex
from clipsearch.vectors.kinds import choose_type, ivf_nlist, pq_m
from clipsearch.vectors.lookup import IdLookup, bitmap, top_k

DIM = 32


def unit_vectors(n: int, seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=(n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_every_image_comes_back_at_k_n_and_scores_are_cosines(kind: str) -> None:
    vecs = unit_vectors(300, seed=1)
    ids = np.arange(300, dtype=np.int64) * 5 + 2
    vi = VectorIndex.build(ids, vecs, DIM, kind)
    scores, got = vi.search(vecs[:3], 300)
    for q, s, g in zip(vecs[:3], scores, got, strict=True):
        assert sorted(g.tolist()) == ids.tolist()
        assert np.all(np.diff(s) <= 1e-6)
        assert np.allclose(s, vecs[(g - 2) // 5] @ q, atol=1e-5)
    assert got[0][0] == ids[0]  # a stored vector finds itself first


def test_filters_add_and_remove() -> None:
    vecs = unit_vectors(200, seed=2)
    ids = np.arange(1, 201, dtype=np.int64)
    vi = VectorIndex.build(ids[:150], vecs[:150], DIM, "flat")
    vi.add(ids[150:], vecs[150:])
    vi.remove(np.array([1, 2, 3], np.int64))
    assert vi.ntotal == 197
    _s, got = vi.search(vecs[:1], 10, allowed=np.array([1, 2, 50, 160, 999], np.int64))
    assert sorted(g for g in got[0].tolist() if g >= 0) == [50, 160]  # removed and unknown ids never come back
    assert (got[0][2:] == -1).all()


def test_type_choice_and_parameters() -> None:
    assert choose_type(10) == "flat" and choose_type(100_000) == "ivf" and choose_type(300_000) == "ivfpq"
    assert choose_type(6000, pq_min=5000) == "ivfpq"
    assert pq_m(512) == 64 and 512 % pq_m(512) == 0 and DIM % pq_m(DIM) == 0
    assert ivf_nlist(1_000_000) == 1000 and ivf_nlist(1) == 16


def test_lookup_bitmap_and_top_k() -> None:
    lookup = IdLookup(np.array([10, 30, 20], np.int64), np.array([0, 1, 2], np.int64), keep_ids=True)
    found, pos = lookup.locate(np.array([20, 99, 10], np.int64))
    assert found.tolist() == [20, 10] and pos.tolist() == [2, 0]
    sparse = IdLookup(np.array([5, 1 << 40], np.int64), np.array([3, 4], np.int32))  # sorted search, no table
    assert sparse.locate(np.array([1 << 40, 6], np.int64))[1].tolist() == [4]
    assert np.unpackbits(bitmap(np.array([0, 9]), 16), bitorder="little").nonzero()[0].tolist() == [0, 9]
    s, i = top_k(np.array([[0.1, 0.9, 0.5]], np.float32), np.array([7, 8, 9]), 5)
    assert i.tolist() == [[8, 9, 7, -1, -1]] and s[0][0] == pytest.approx(0.9)
