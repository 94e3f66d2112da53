"""Near duplicates at scale: the self-join of the store's vector index plus grouping
(clipsearch.query.dupes.near_groups), on synthetic clustered 512-d unit vectors (bench/scale.py's `clustered`)
with injected near copies.

Per size: 1% of the vectors are overwritten with near copies of others (cosine >= 0.995 to their source; 70% of
sources get 1 copy, 20% 2, 10% 3), all stored as float16 like the catalog. The index is the one the store would
choose (flat up to 50k, IVF above), built and timed; then the grouping at the default threshold is timed, and
the pairs inside reported groups are compared with the injected pairs (precision, recall, and injected groups
reported exactly). Baselines from the same run: the index build time, and up to --exact-max vectors a brute-force
exact join (FAISS IndexFlatIP range search of every vector), which also checks that the join found every pair
above the threshold, not only the injected ones.

    python bench/dupes.py                                   # 100k and 1M (~6 min on 2 busy cores)
    OPENBLAS_NUM_THREADS=1 python bench/dupes.py            # on a shared machine: 1 BLAS thread is faster
    python bench/dupes.py --sizes 100000 --exact-max 0      # no brute-force baseline
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from itertools import combinations
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from scale import clustered  # noqa: E402

from clipsearch.query.dupes import DEFAULT_THRESHOLD, MAX_VISITS, near_groups  # noqa: E402
from clipsearch.vectors.index import VectorIndex  # noqa: E402
from clipsearch.vectors.join import JoinStats  # noqa: E402
from clipsearch.vectors.kinds import choose_type


def copy_slots(n: int, fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, list[np.ndarray]]:
    """Where injected copies go: source rows, and for each the rows its 1-3 copies overwrite (70/20/10 %),
    `fraction` of the n rows in all, no row used twice."""
    n_copies = int(n * fraction)
    per_source = rng.choice([1, 2, 3], p=[0.7, 0.2, 0.1], size=n_copies)
    per_source = per_source[:np.searchsorted(np.cumsum(per_source), n_copies) + 1]
    per_source[-1] -= per_source.sum() - n_copies
    per_source = per_source[per_source > 0]
    slots = rng.permutation(n)[:len(per_source) + n_copies]
    sources, copies = slots[:len(per_source)], np.split(slots[len(per_source):], np.cumsum(per_source)[:-1])
    return sources, copies


def with_copies(n: int, dim: int, seed: int, fraction: float = 0.01,
                noise: float = 0.0025) -> tuple[np.ndarray, list[np.ndarray]]:
    """Clustered unit vectors, `fraction` of them overwritten by near copies; returns (vectors, injected groups)."""
    vecs = clustered(n, dim, seed)
    rng = np.random.default_rng(seed + 1)
    sources, copies = copy_slots(n, fraction, rng)
    groups = []
    for src, dst in zip(sources, copies, strict=False):
        block = vecs[src] + noise * rng.normal(size=(len(dst), dim)).astype(np.float32)
        vecs[dst] = block / np.linalg.norm(block, axis=1, keepdims=True)
        groups.append(np.concatenate([[src], dst]))
    return vecs.astype(np.float16).astype(np.float32), groups  # the catalog stores float16


def pair_set(groups) -> set[tuple[int, int]]:
    return {(min(a, b), max(a, b)) for g in groups for a, b in combinations((int(i) for i in g), 2)}


def brute_pairs(vecs: np.ndarray, threshold: float, batch: int = 10_000) -> set[tuple[int, int]]:
    import faiss

    index = faiss.IndexFlatIP(vecs.shape[1])
    index.add(vecs)
    out: set[tuple[int, int]] = set()
    for start in range(0, len(vecs), batch):
        lims, _scores, labels = index.range_search(vecs[start:start + batch], threshold)
        rows = np.repeat(np.arange(start, start + min(batch, len(vecs) - start)), np.diff(lims).astype(np.int64))
        keep = labels > rows
        out |= set(zip(rows[keep].tolist(), labels[keep].tolist(), strict=False))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD)
    ap.add_argument("--exact-max", type=int, default=100_000, help="brute-force baseline up to this size")
    ap.add_argument("--threads", type=int, default=0, help="FAISS OpenMP threads (0: its default)")
    args = ap.parse_args()
    if args.threads:
        import faiss

        faiss.omp_set_num_threads(args.threads)
    print(f"threshold {args.threshold}, max visits {MAX_VISITS}, OPENBLAS_NUM_THREADS="
          f"{os.environ.get('OPENBLAS_NUM_THREADS', 'default')}, {os.cpu_count()} cpus")
    brute_rate = None  # brute-force seconds per n² at the last size it ran
    for n in args.sizes:
        t = time.perf_counter()
        vecs, injected = with_copies(n, args.dim, seed=0)
        gen = time.perf_counter() - t
        inj_pairs = pair_set(injected)
        inj_cos = min(float(vecs[g[0]] @ vecs[c]) for g in injected for c in g[1:])
        ids = np.arange(n, dtype=np.int64)
        t = time.perf_counter()
        vi = VectorIndex.build(ids, vecs, args.dim)
        build = time.perf_counter() - t
        stats = JoinStats()
        t = time.perf_counter()
        groups = near_groups(vi, args.threshold, lambda m, vecs=vecs: (m, vecs[m]),
                             lambda m: {int(i): int(i) for i in m}, stats=stats)
        took = time.perf_counter() - t
        found = pair_set(ids_ for ids_, _sims in groups)
        hit = len(found & inj_pairs)
        exact_groups = {frozenset(g.tolist()) for g in injected} & {frozenset(g) for g, _s in groups}
        print(f"\nn={n}: the store would build {choose_type(n)}, built {vi.kind}; {len(injected)} injected groups, "
              f"{len(inj_pairs)} injected pairs (min cosine to source {inj_cos:.4f}); data {gen:.1f} s")
        print(f"  build index      {build:8.1f} s")
        print(f"  dupes (join+group) {took:6.1f} s = {took / build:.2f}x the index build; {stats.lists} lists, "
              f"{stats.visits / n:.2f} border visits/vector, {stats.capped} capped, "
              f"{stats.compared:.3g} inner products = {stats.compared / (n * (n - 1) / 2):.4f} of all pairs")
        print(f"  found {len(groups)} groups, {len(found)} pairs: precision {hit / max(len(found), 1):.4f}, "
              f"recall {hit / len(inj_pairs):.4f}, injected groups reported exactly "
              f"{len(exact_groups) / len(injected):.4f}")
        if n <= args.exact_max:
            t = time.perf_counter()
            truth = brute_pairs(vecs, args.threshold)
            brute = time.perf_counter() - t
            brute_rate = brute / n / n
            joined: set[tuple[int, int]] = set()
            for a, b, _s in vi.pairs_above(args.threshold, None, None, MAX_VISITS):
                joined |= set(zip(np.minimum(a, b).tolist(), np.maximum(a, b).tolist(), strict=False))
            print(f"  brute force      {brute:8.1f} s (IndexFlatIP range search): dupes is {brute / took:.1f}x faster; "
                  f"join recall of all {len(truth)} pairs >= {args.threshold}: "
                  f"{len(joined & truth) / max(len(truth), 1):.4f}, extra {len(joined - truth)}")
        elif brute_rate is not None:
            print(f"  brute force      ~{brute_rate * n * n:7.0f} s (extrapolated as n² from the smaller size): "
                  f"dupes is ~{brute_rate * n * n / took:.0f}x faster")
        del vi, vecs


if __name__ == "__main__":
    main()
