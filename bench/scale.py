"""Vector-index scale: build time, memory per vector, recall@10 against exact search, and query latency
(p50/p99, one query at a time) for each index type the store can choose, at 100k and 1M vectors.

Vectors are synthetic but clustered like CLIP embeddings (unit vectors around a few thousand centres);
uniform random vectors would be an unrealistically hard case for IVF/HNSW.

    python bench/scale.py                          # 100k and 1M, dim 512; HNSW only up to 200k (its build is slow on 2 cores)
    python bench/scale.py --sizes 100000 --hnsw-max 100000
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from clipsearch.vectors import VectorIndex, choose_type  # noqa: E402


def clustered(n: int, dim: int, seed: int, n_centres: int = 2000) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_centres, dim)).astype(np.float32)
    out = np.empty((n, dim), np.float32)
    for start in range(0, n, 100_000):
        m = min(100_000, n - start)
        block = centres[rng.integers(0, n_centres, m)] + 0.6 * rng.normal(size=(m, dim)).astype(np.float32)
        out[start:start + m] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def measure(vi: VectorIndex, queries: np.ndarray, truth: np.ndarray | None,
            allowed: np.ndarray | None = None) -> dict[str, float]:
    lat = []
    got = []
    for q in queries:
        t = time.perf_counter()
        _, ids = vi.search(q[None], 10, allowed)
        lat.append(time.perf_counter() - t)
        got.append(ids[0])
    lat_ms = np.array(lat) * 1e3
    recall = 1.0 if truth is None else float(np.mean([len(set(t) & set(g)) / 10 for t, g in zip(truth, got)]))
    return {"p50_ms": float(np.percentile(lat_ms, 50)), "p99_ms": float(np.percentile(lat_ms, 99)), "recall@10": recall}


def index_bytes(vi: VectorIndex) -> int:
    import faiss

    return int(faiss.serialize_index(vi.index).nbytes)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--hnsw-max", type=int, default=200_000)
    args = ap.parse_args()
    print(f"{'n':>9} {'type':>5} {'build s':>8} {'bytes/vec':>9} {'recall@10':>9} {'p50 ms':>7} {'p99 ms':>7}  speed-up vs flat")
    for n in args.sizes:
        vecs = clustered(n, args.dim, seed=0)
        ids = np.arange(n, dtype=np.int64)
        rng = np.random.default_rng(1)
        queries = vecs[rng.integers(0, n, args.queries)] + 0.05 * rng.normal(size=(args.queries, args.dim)).astype(np.float32)
        queries /= np.linalg.norm(queries, axis=1, keepdims=True)
        results = {}
        truth = None
        for kind in ("flat", "ivf", "hnsw"):
            if kind == "hnsw" and n > args.hnsw_max:
                continue
            t = time.perf_counter()
            vi = VectorIndex.build(ids, vecs, args.dim, kind)
            build = time.perf_counter() - t
            if kind == "flat":
                _, truth = vi.search(queries, 10)
            m = measure(vi, queries, None if kind == "flat" else truth)
            results[kind] = m
            speed = results["flat"]["p50_ms"] / m["p50_ms"]
            filtered = measure(vi, queries[:50], None, allowed=ids[::10])  # a filter that keeps 10% of the ids
            print(f"{n:>9} {kind:>5} {build:>8.1f} {index_bytes(vi) / n:>9.0f} {m['recall@10']:>9.3f} "
                  f"{m['p50_ms']:>7.2f} {m['p99_ms']:>7.2f}  {speed:.1f}x; with a 10% id filter p50 "
                  f"{filtered['p50_ms']:.2f} ms", flush=True)
            del vi
        print(f"{n:>9} the store chooses: {choose_type(n)}")


if __name__ == "__main__":
    main()
