"""An IVF / IVF-PQ build through an assignment index — the path its k-means and list assignment take on a GPU
(vectors/gpu.py) — run on the CPU with a CPU index standing in for the GPU one: it must build exactly the index
the plain CPU build does. tests/gpu/ runs it with a real GPU index."""

from __future__ import annotations

from typing import Any

import faiss
import numpy as np
import pytest

from clipsearch.vectors import gpu
from clipsearch.vectors.index import VectorIndex

DIM = 32


def unit_vectors(n: int, seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=(n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@pytest.mark.parametrize("kind", ["ivf", "ivfpq"])
def test_ivf_build_through_an_assignment_index_matches_the_plain_build(kind: str, monkeypatch) -> None:
    """The k-means assigns with the given index (it ends holding the centroids) and each vector's list comes from
    it: with a CPU stand-in the lists, centroids and results equal the plain CPU build's."""
    vecs, ids = unit_vectors(12_000, seed=3), np.arange(12_000, dtype=np.int64) * 7 + 1
    plain = VectorIndex.build(ids, vecs, DIM, kind, device="cpu")
    made: list[Any] = []

    def stand_in(dim: int, device: str | None, faiss_module: Any) -> Any:
        assert device == "cuda"
        made.append(faiss.IndexFlatIP(dim))
        return made[-1]

    monkeypatch.setattr(gpu, "assignment_index", stand_in)
    built = VectorIndex.build(ids, vecs, DIM, kind, device="cuda")
    assert built.kind == kind and built.ntotal == len(ids) and len(made) == 1
    nlist = built.index.nlist
    centroids = built.index.quantizer.reconstruct_n(0, nlist)
    assert made[0].ntotal == nlist and np.array_equal(made[0].reconstruct_n(0, nlist), centroids)
    assert np.array_equal(centroids, plain.index.quantizer.reconstruct_n(0, nlist))
    sizes = [built.index.invlists.list_size(i) for i in range(nlist)]
    assert sizes == [plain.index.invlists.list_size(i) for i in range(nlist)] and sum(sizes) == len(ids)
    assert np.array_equal(built.search(vecs[:20], 10)[1], plain.search(vecs[:20], 10)[1])
    assert built.index.clustering_index is None  # no reference to the GPU index is kept in the saved index
