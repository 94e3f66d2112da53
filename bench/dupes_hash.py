"""The `same` level of duplicates at scale: perceptual-hash pairs within SAME_DISTANCE bits by multi-index hashing
(clipsearch.vectors.hamming, through query.same_picture.hash_pairs) plus grouping, at 100k and 1M pictures.

Data: each picture has three 64-bit hashes like the catalog's (whole frame, centred 92 % and 85 % windows): the
whole frame uniform random, each window the whole frame with 10 / 14 random bits flipped (about what the
transform bench measures between a frame and its windows). 1% of the pictures are overwritten with copies of
others (70% of sources get 1 copy, 20% 2, 10% 3): half "recompressed/resized" (the source's three hashes with 0-6
bits flipped, distances as measured for those transforms), half "centred crops" (the crop's whole frame is the
source's 92 % window with 0-4 bits flipped; its windows fresh). Reported: the time of the pair search and of the
grouping (keeper checks included), precision / recall of the pairs inside reported groups against the injected
pairs, and in the same run two baselines: comparing every pair (NumPy, blocks of 2048; run up to --exact-max and
checked equal to the search's pairs, extrapolated as n² above) and FAISS's IndexBinaryMultiHash range search
(3 tables of 21 bits, 2 flips: the same exact search in C++) at the first size.

    OPENBLAS_NUM_THREADS=1 python bench/dupes_hash.py                 # 100k and 1M
    python bench/dupes_hash.py --sizes 100000 --exact-max 20000
"""

from __future__ import annotations

import argparse
import sys
import time
from itertools import combinations
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from dupes import copy_slots  # noqa: E402  (the same injection as the embedding bench)

from clipsearch.query.grouping import connected_groups  # noqa: E402
from clipsearch.query.same_picture import SAME_DISTANCE, hash_pairs, split_by_hash  # noqa: E402
from clipsearch.vectors.hamming import popcount  # noqa: E402


def flip(words: np.ndarray, counts: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each word with `counts[i]` distinct random bits flipped."""
    out = words.copy()
    for i, k in enumerate(counts):
        for b in rng.choice(64, size=int(k), replace=False):
            out[i] ^= np.uint64(1) << np.uint64(int(b))
    return out


def flip_fast(words: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Each word with k random bits flipped (bits may repeat: k is an upper bound), vectorised."""
    out = words.copy()
    for _ in range(k):
        out ^= np.uint64(1) << rng.integers(0, 64, size=len(words)).astype(np.uint64)
    return out


def with_copies(n: int, seed: int, fraction: float = 0.01) -> tuple[np.ndarray, list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    full = rng.integers(0, 2**63, size=n, dtype=np.int64).astype(np.uint64) * np.uint64(2) \
        + rng.integers(0, 2, size=n).astype(np.uint64)
    words = np.stack([full, flip_fast(full, 10, rng), flip_fast(full, 14, rng)], axis=1)
    sources, copies = copy_slots(n, fraction, rng)
    groups = []
    for src, dst in zip(sources, copies, strict=True):
        for c in dst:
            if rng.random() < 0.5:  # recompressed / resized: every hash a few bits off
                words[c] = flip(words[src].copy(), rng.integers(0, 7, size=3), rng)
            else:  # a centred crop: its whole frame is the source's inner window
                crop = flip(words[src, 1:2], rng.integers(0, 5, size=1), rng)[0]
                words[c] = [crop, *flip(np.array([crop, crop]), np.array([10, 14]), rng)]
        groups.append(np.concatenate([[src], dst]))
    return words, groups


def pair_set(groups) -> set[tuple[int, int]]:
    return {(min(a, b), max(a, b)) for g in groups for a, b in combinations((int(i) for i in g), 2)}


def brute_pairs(words: np.ndarray, distance: int, block: int = 2048) -> set[tuple[int, int]]:
    """Every picture pair within `distance` (whole frame against any hash of the other), all pairs compared."""
    full, flat = words[:, 0], words.ravel()
    out: set[tuple[int, int]] = set()
    for start in range(0, len(full), block):
        d = popcount(full[start:start + block, None] ^ flat[None, :])
        rows, cols = np.nonzero(d <= distance)
        owner = cols // words.shape[1]
        keep = owner != start + rows
        a, b = start + rows[keep], owner[keep]
        out |= set(zip(np.minimum(a, b).tolist(), np.maximum(a, b).tolist(), strict=True))
    return out


def faiss_multihash(words: np.ndarray, distance: int) -> tuple[float, int]:
    """(seconds, pairs) of FAISS's exact multi-index range search (whole frames against every hash)."""
    import faiss

    flat = np.ascontiguousarray(words.ravel()).view(np.uint8).reshape(-1, 8)
    index = faiss.IndexBinaryMultiHash(64, 3, 21)
    index.nflip = distance // 3
    t = time.perf_counter()
    index.add(flat)
    lims, _d, _labels = index.range_search(np.ascontiguousarray(words[:, 0]).view(np.uint8).reshape(-1, 8),
                                           distance + 1)  # FAISS: distance < radius
    return time.perf_counter() - t, int(lims[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--distance", type=int, default=SAME_DISTANCE)
    ap.add_argument("--exact-max", type=int, default=20_000, help="compare every pair up to this size")
    ap.add_argument("--no-faiss", action="store_true")
    args = ap.parse_args()
    print(f"distance <= {args.distance} bits of 64; 3 hashes a picture")
    if args.exact_max:
        words, _groups = with_copies(args.exact_max, seed=1)
        t = time.perf_counter()
        truth = brute_pairs(words, args.distance)
        brute = time.perf_counter() - t
        a, b = hash_pairs(words, args.distance)
        found = set(zip(np.minimum(a, b).tolist(), np.maximum(a, b).tolist(), strict=True))
        brute_rate = brute / args.exact_max ** 2
        print(f"n={args.exact_max}: every pair compared in {brute:.1f} s; the search finds the same "
              f"{len(truth)} pairs: {found == truth}")
    for number, n in enumerate(args.sizes):
        t = time.perf_counter()
        words, injected = with_copies(n, seed=0)
        gen = time.perf_counter() - t
        inj_pairs = pair_set(injected)
        t = time.perf_counter()
        a, b = hash_pairs(words, args.distance)
        search = time.perf_counter() - t
        t = time.perf_counter()
        row_of = {i: i for i in range(n)}
        groups = []
        for component in connected_groups([(a, b, None)]):
            for members, _s, _d in split_by_hash(sorted(int(i) for i in component), words, row_of, args.distance,
                                                 lambda _x, _y: None, 0.0):
                groups.append(members)
        grouping = time.perf_counter() - t
        found = pair_set(groups)
        hit = len(found & inj_pairs)
        exact_groups = {frozenset(g.tolist()) for g in injected} & {frozenset(g) for g in groups}
        print(f"\nn={n}: {len(injected)} injected groups, {len(inj_pairs)} injected pairs; data {gen:.1f} s")
        print(f"  pair search (multi-index hashing) {search:7.1f} s; grouping {grouping:5.1f} s; "
              f"{len(a)} candidate pairs within {args.distance} bits")
        print(f"  found {len(groups)} groups, {len(found)} pairs: precision {hit / max(len(found), 1):.4f}, "
              f"recall {hit / len(inj_pairs):.4f}, injected groups reported exactly "
              f"{len(exact_groups) / len(injected):.4f}")
        if args.exact_max:
            est = brute_rate * n * n
            print(f"  every pair compared: ~{est:7.0f} s (extrapolated as n² from n={args.exact_max}): "
                  f"the search is ~{est / (search + grouping):.0f}x faster")
        if number == 0 and not args.no_faiss:
            took, pairs = faiss_multihash(words, args.distance)
            print(f"  FAISS IndexBinaryMultiHash range search: {took:.1f} s ({pairs} pairs, each picture with "
                  "itself and its own windows included): the search here is "
                  f"{took / search:.1f}x faster")


if __name__ == "__main__":
    main()
