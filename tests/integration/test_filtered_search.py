"""Filtered vector search returns min(k, allowed) hits with recall@10 >= 0.95 of exact filtered search, for every
index type, including the sizes where IVF only probes a few lists and HNSW only visits part of its graph, and
IVF-PQ ranks by codes then re-ranks from its float16 vectors (mapped from the re-rank file after a save).

Synthetic clustered unit vectors (like bench/scale.py); exact answers by NumPy brute force over the allowed vectors.
"""

from __future__ import annotations

import numpy as np
import pytest

from clipsearch.vectors.index import VectorIndex

K = 10
DIM = 64
# HNSW builds slowly on 2 cores; 20k is still HNSW
SIZES = {"flat": 100_000, "ivf": 100_000, "hnsw": 20_000, "ivfpq": 100_000}


def clustered(n: int, dim: int, seed: int, n_centres: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_centres, dim)).astype(np.float32)
    vecs = centres[rng.integers(0, n_centres, n)] + 0.6 * rng.normal(size=(n, dim)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    return vecs.astype(np.float16).astype(np.float32)  # the catalog's precision: IVF-PQ re-ranks with these


@pytest.fixture(scope="module")
def data():
    n = max(SIZES.values())
    vecs = clustered(n, DIM, seed=0, n_centres=2000)
    ids = np.arange(n, dtype=np.int64) * 3 + 7  # catalog ids are not internal positions
    rng = np.random.default_rng(1)
    queries = vecs[rng.integers(0, n, 20)] + 0.05 * rng.normal(size=(20, DIM)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    return ids, vecs, queries


@pytest.fixture(scope="module", params=["flat", "ivf", "hnsw", "ivfpq"])
def index(request, data):
    ids, vecs, _queries = data
    n = SIZES[request.param]
    vi = VectorIndex.build(ids[:n], vecs[:n], DIM, request.param)
    assert vi.kind == request.param  # IVF really is IVF at this size (it falls back to flat below nlist*8)
    return vi, ids[:n], vecs[:n]


def allowed_sets(ids: np.ndarray, vecs: np.ndarray, queries: np.ndarray) -> dict[str, np.ndarray]:
    n = len(ids)
    rng = np.random.default_rng(2)
    # "folders": images alike one another and unlike every query (the vectors nearest a far anchor)
    far = np.argmin((vecs[:2000] @ queries.T).max(axis=1))
    near_far = np.argsort(-(vecs @ vecs[far]))
    return {
        "5 random": rng.choice(ids, 5, replace=False),
        "folder of 100": ids[near_far[:100]],
        "1% random": rng.choice(ids, n // 100, replace=False),
        "10% random": rng.choice(ids, n // 10, replace=False),
        "30% random": rng.choice(ids, n * 3 // 10, replace=False),  # IVF at 100k: scans part of the lists
        "30% folder": ids[near_far[:n * 3 // 10]],
    }


def exact_filtered(ids: np.ndarray, vecs: np.ndarray, queries: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    rows = np.flatnonzero(np.isin(ids, allowed))
    scores = queries @ vecs[rows].T
    return ids[rows][np.argsort(-scores, axis=1)[:, :K]]


def check(vi: VectorIndex, ids: np.ndarray, vecs: np.ndarray, queries: np.ndarray, allowed: np.ndarray,
          expected: int) -> float:
    scores, got = vi.search(queries, K, allowed)
    truth = exact_filtered(ids, vecs, queries, allowed)
    row_of = dict(zip(ids.tolist(), range(len(ids)), strict=False))
    recalls = []
    for q, s, g, t in zip(queries, scores, got, truth, strict=False):
        hits = g >= 0
        assert hits.sum() == expected
        assert hits[:expected].all()  # padding only at the end
        assert np.isin(g[hits], allowed).all()
        assert len(set(g[hits].tolist())) == expected
        assert np.all(np.diff(s[hits]) <= 1e-6)  # best first
        assert np.allclose(s[hits], vecs[[row_of[i] for i in g[hits]]] @ q, atol=1e-4)  # scores are cosines
        recalls.append(len(set(g[hits].tolist()) & set(t.tolist())) / expected)
    return float(np.mean(recalls))


def test_unfiltered_recall(index, data):
    vi, ids, vecs = index
    queries = data[2]
    scores, got = vi.search(queries, K)
    truth = ids[np.argsort(-(queries @ vecs.T), axis=1)[:, :K]]
    recall = np.mean([len(set(g.tolist()) & set(t.tolist())) / K for g, t in zip(got, truth, strict=False)])
    assert recall >= 0.95, f"{vi.kind}: recall@10 {recall:.3f}"
    row_of = dict(zip(ids.tolist(), range(len(ids)), strict=False))
    for q, s, g in zip(queries, scores, got, strict=False):
        assert np.allclose(s, vecs[[row_of[i] for i in g]] @ q, atol=1e-4)  # exact cosines, re-ranked too


@pytest.mark.parametrize("case", ["5 random", "folder of 100", "1% random", "10% random", "30% random", "30% folder"])
def test_filtered_count_and_recall(index, data, case):
    vi, ids, vecs = index
    queries = data[2]
    allowed = allowed_sets(ids, vecs, queries)[case]
    recall = check(vi, ids, vecs, queries, allowed, min(K, len(allowed)))
    assert recall >= 0.95, f"{vi.kind} {case}: recall@10 {recall:.3f}"


def test_allowed_ids_missing_from_index(index, data):
    """Allowed ids the index does not hold (deleted images, stale filters) are ignored; no padding among hits."""
    vi, ids, vecs = index
    queries = data[2]
    allowed = np.concatenate([ids[[3, 50, 700]], [-1, 0, 8, int(ids.max()) + 3, 10**15]])
    check(vi, ids, vecs, queries, allowed, 3)
    scores, got = vi.search(queries, K, np.array([int(ids.max()) + 3], np.int64))
    assert (got == -1).all()


def test_filtered_search_follows_add_and_remove(data):
    """Cached id lookups are rebuilt after the index changes."""
    ids, vecs, queries = data
    for kind in ("flat", "ivf", "ivfpq"):
        n = 20_000
        vi = VectorIndex.build(ids[:n], vecs[:n], DIM, kind)
        assert vi.kind == kind
        allowed = ids[:50]
        before = vi.search(queries, K, allowed)[1]
        vi.remove(before[:, 0])
        after = vi.search(queries, K, allowed)[1]
        assert (after >= 0).sum(axis=1).tolist() == [K] * len(queries)
        assert not np.isin(after, before[:, 0]).any()
        vi.add(ids[n:n + 5], vecs[n:n + 5])
        got = vi.search(queries, K, ids[n:n + 5])[1]
        assert ((got >= 0).sum(axis=1) == 5).all() and np.isin(got[:, :5], ids[n:n + 5]).all()


def test_filtered_search_after_save_and_load(index, data, tmp_path):
    """A loaded index (the CLI's case) has no cached lookups yet and generic FAISS wrappers underneath."""
    vi, ids, vecs = index
    queries = data[2]
    from clipsearch.vectors.store import load_index, save_index

    save_index(vi, tmp_path / "vectors.faiss", version=1)
    loaded, version = load_index(tmp_path / "vectors.faiss", vi.dim)
    assert loaded.kind == vi.kind and version == 1 and loaded.mapped
    allowed = allowed_sets(ids, vecs, queries)["folder of 100"]
    assert check(loaded, ids, vecs, queries, allowed, K) >= 0.95


def test_unfiltered_search_returns_min_k_n_on_every_type(index, data):
    """HNSW's graph and IVF's probed lists can reach fewer than k vectors: k past what they reach still
    returns k distinct hits, best first (as filtered searches already do)."""
    vi, ids, vecs = index
    queries = data[2][:3]
    k = 6000  # past HNSW's efSearch and IVF's probed lists at these sizes
    scores, got = vi.search(queries, k)
    for s, g in zip(scores, got, strict=False):
        assert (g >= 0).all() and len(set(g.tolist())) == k and np.isin(g, ids).all()
        assert np.all(np.diff(s) <= 1e-6)


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_a_small_store_returns_every_image_at_k_n(kind):
    vecs = clustered(200, DIM, seed=3, n_centres=8)
    ids = np.arange(200, dtype=np.int64) + 1
    vi = VectorIndex.build(ids, vecs, DIM, kind)
    assert vi.kind == kind
    _scores, got = vi.search(vecs[:4], 200)
    assert all(sorted(g.tolist()) == ids.tolist() for g in got)
