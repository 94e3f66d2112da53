"""Vector-index scale: build time, memory per vector, recall@10 against exact search, and query latency
(p50/p99, one query at a time) for each index type the store can choose, at 100k and 1M vectors; then filtered
search (allowed ids = 0.01%, 1%, 10%, 30% of the store, random or a "folder" of neighbouring vectors far from
the queries): mean hits returned vs the min(10, allowed) expected, recall@10 against exact filtered search, p50/p99,
and filtered p50 over the unfiltered p50 of the same index.

Vectors are synthetic but clustered like CLIP embeddings (unit vectors around a few thousand centres);
uniform random vectors would be an unrealistically hard case for IVF/HNSW.

    python bench/scale.py                          # 100k and 1M, dim 512; HNSW only up to 200k (its build is slow on 2 cores)
    python bench/scale.py --sizes 100000 --hnsw-max 100000
    python bench/scale.py --sizes 1000000 --types ivf   # IVF alone at 1M (truth by NumPy brute force)
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


def exact_top10(vecs: np.ndarray, ids: np.ndarray, queries: np.ndarray, block: int = 100_000) -> np.ndarray:
    """Exact top-10 ids per query over (ids, vecs), by NumPy brute force in blocks."""
    best_s = np.full((len(queries), 0), -np.inf, np.float32)
    best_i = np.zeros((len(queries), 0), np.int64)
    for start in range(0, len(ids), block):
        s = queries @ vecs[start:start + block].T
        cand_s = np.concatenate([best_s, s], axis=1)
        cand_i = np.concatenate([best_i, np.broadcast_to(ids[start:start + block], s.shape)], axis=1)
        top = np.argsort(-cand_s, axis=1)[:, :10]
        best_s, best_i = np.take_along_axis(cand_s, top, axis=1), np.take_along_axis(cand_i, top, axis=1)
    return best_i


def filters(vecs: np.ndarray, queries: np.ndarray, seed: int = 2):
    """(name, allowed ids) for random subsets and "folders": the vectors nearest an anchor far from every query."""
    n = len(vecs)
    rng = np.random.default_rng(seed)
    cand = rng.choice(n, size=min(n, 2000), replace=False)
    anchor = vecs[cand[np.argmin((vecs[cand] @ queries.T).max(axis=1))]]
    near_anchor = np.argsort(-(vecs @ anchor))
    for pct in (0.01, 1, 10, 30):
        m = max(1, round(n * pct / 100))
        yield f"random {pct:g}%", np.sort(rng.choice(n, size=m, replace=False)).astype(np.int64)
        yield f"folder {pct:g}%", np.sort(near_anchor[:m]).astype(np.int64)


def measure(vi: VectorIndex, queries: np.ndarray, truth: np.ndarray | None,
            allowed: np.ndarray | None = None) -> dict[str, float]:
    lat = []
    got = []
    for q in queries:
        t = time.perf_counter()
        _, ids = vi.search(q[None], 10, allowed)
        lat.append(time.perf_counter() - t)
        got.append(ids[0][ids[0] >= 0])
    lat_ms = np.array(lat) * 1e3
    recall = 1.0 if truth is None else float(np.mean(
        [len(set(t.tolist()) & set(g.tolist())) / min(10, len(t)) for t, g in zip(truth, got)]))
    return {"p50_ms": float(np.percentile(lat_ms, 50)), "p99_ms": float(np.percentile(lat_ms, 99)), "recall@10": recall,
            "returned": float(np.mean([len(g) for g in got]))}


def index_bytes(vi: VectorIndex) -> int:
    import faiss

    return int(faiss.serialize_index(vi.index).nbytes)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--hnsw-max", type=int, default=200_000)
    ap.add_argument("--types", nargs="+", choices=("flat", "ivf", "hnsw"), default=["flat", "ivf", "hnsw"])
    ap.add_argument("--threads", type=int, default=0,
                    help="FAISS OpenMP threads (0: its default). On a busy 2-core machine, 1 avoids ~7 ms of "
                         "thread start-up per single-query flat/HNSW search")
    args = ap.parse_args()
    if args.threads:
        import faiss

        faiss.omp_set_num_threads(args.threads)
    print(f"{'n':>9} {'type':>5} {'build s':>8} {'bytes/vec':>9} {'recall@10':>9} {'p50 ms':>7} {'p99 ms':>7}  speed-up vs flat")
    print(f"{'':>9} {'':>5} {'filter':>14} {'allowed':>8} {'returned/expected':>17} {'recall@10':>9} {'p50 ms':>7} "
          f"{'p99 ms':>7}  p50 vs unfiltered")
    for n in args.sizes:
        vecs = clustered(n, args.dim, seed=0)
        ids = np.arange(n, dtype=np.int64)
        rng = np.random.default_rng(1)
        queries = vecs[rng.integers(0, n, args.queries)] + 0.05 * rng.normal(size=(args.queries, args.dim)).astype(np.float32)
        queries /= np.linalg.norm(queries, axis=1, keepdims=True)
        truth = exact_top10(vecs, ids, queries)
        cases = [(name, allowed, exact_top10(vecs[allowed], allowed, queries)) for name, allowed in filters(vecs, queries)]
        flat_p50 = None
        for kind in ("flat", "ivf", "hnsw"):
            if kind not in args.types or (kind == "hnsw" and n > args.hnsw_max):
                continue
            t = time.perf_counter()
            vi = VectorIndex.build(ids, vecs, args.dim, kind)
            build = time.perf_counter() - t
            m = measure(vi, queries, truth)
            if kind == "flat":
                flat_p50 = m["p50_ms"]
            speed = f"{flat_p50 / m['p50_ms']:.1f}x" if flat_p50 else "-"
            print(f"{n:>9} {kind:>5} {build:>8.1f} {index_bytes(vi) / n:>9.0f} {m['recall@10']:>9.3f} "
                  f"{m['p50_ms']:>7.2f} {m['p99_ms']:>7.2f}  {speed}", flush=True)
            for name, allowed, ftruth in cases:
                f = measure(vi, queries, ftruth, allowed)
                expected = min(10, len(allowed))
                print(f"{'':>9} {'':>5} {name:>14} {len(allowed):>8} {f['returned']:>11.2f}/{expected:<5} "
                      f"{f['recall@10']:>9.3f} {f['p50_ms']:>7.2f} {f['p99_ms']:>7.2f}  "
                      f"{f['p50_ms'] / m['p50_ms']:.2f}x", flush=True)
            del vi
        print(f"{n:>9} the store chooses: {choose_type(n)}")


if __name__ == "__main__":
    main()
