"""FAISS on the GPU (faiss-gpu) against the CPU: flat and IVF searches return the same ids, and IVF / IVF-PQ
built with their k-means on the GPU reach the CPU build's recall and save as CPU indexes."""

from __future__ import annotations

import numpy as np
import pytest

from clipsearch.vectors.index import VectorIndex

DIM = 512


def clustered(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((200, DIM), dtype=np.float32)
    vecs = centers[rng.integers(0, 200, n)] + 0.6 * rng.standard_normal((n, DIM), dtype=np.float32)
    return vecs / np.linalg.norm(vecs, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    vecs = clustered(60_000, seed=1)
    return np.arange(len(vecs), dtype=np.int64) * 3 + 1, vecs, clustered(200, seed=2)


def _same_sets(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean([set(x) == set(y) for x, y in zip(a, b, strict=True)]))


@pytest.mark.parametrize("kind", ["flat", "ivf"])
def test_gpu_search_returns_the_cpu_ids(faiss_gpu, data, kind: str) -> None:
    ids, vecs, queries = data
    cpu = VectorIndex.build(ids, vecs, DIM, kind, device="cpu")
    gpu = VectorIndex(DIM, cpu.kind, cpu.index, device="cuda")  # the same trained index, searched on the GPU
    assert cpu.kind == kind and gpu.searches_on_gpu and gpu.faiss_device == "cuda:0" and not cpu.searches_on_gpu
    s_cpu, i_cpu = cpu.search(queries, 10)
    s_gpu, i_gpu = gpu.search(queries, 10)
    # exact ties aside, the same ids: all of them on flat; IVF probes the same lists (a float rounding may swap
    # the 10th and 11th of a query)
    assert _same_sets(i_cpu, i_gpu) >= (1.0 if kind == "flat" else 0.99)
    assert np.abs(s_cpu - s_gpu).max() < 1e-3
    allowed = ids[::7]  # filtered searches run on the CPU index's selectors, also with a GPU copy present
    assert np.array_equal(gpu.search(queries[:5], 10, allowed)[1], cpu.search(queries[:5], 10, allowed)[1])


@pytest.mark.parametrize("kind", ["ivf", "ivfpq"])
def test_ivf_built_on_the_gpu_matches_the_cpu_build(faiss_gpu, data, kind: str, tmp_path) -> None:
    from clipsearch.vectors.store import load_index, save_index

    ids, vecs, queries = data
    exact = VectorIndex.build(ids, vecs, DIM, "flat", device="cpu").search(queries, 10)[1]
    recall = {}
    for device in ("cpu", "cuda"):
        vi = VectorIndex.build(ids, vecs, DIM, kind, device=device)
        assert vi.kind == kind and vi.ntotal == len(ids)
        got = vi.search(queries, 10)[1]
        recall[device] = float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(exact, got, strict=True)]))
        if device == "cuda":
            save_index(vi, tmp_path / "vectors.faiss", 1)  # a CPU index: it saves and loads like any other
            loaded = load_index(tmp_path / "vectors.faiss", DIM)
            assert loaded is not None and np.array_equal(loaded[0].search(queries, 10)[1], got)
    assert recall["cuda"] >= 0.9 and recall["cuda"] >= recall["cpu"] - 0.02, recall
