"""Which FAISS structure suits how many vectors, and its parameters (no FAISS import until one is built).

flat up to FLAT_MAX vectors (exact), IVF-Flat above (sqrt(n) lists, ~4% probed), IVF-PQ above PQ_MIN (64-byte codes,
re-ranked exactly); HNSW only when forced. The numbers were measured with bench/scale.py on this 2-core machine.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Any

from clipsearch.errors import ClipsearchError

INDEX_TYPES = ("flat", "ivf", "hnsw", "ivfpq")
FLAT_MAX = 50_000  # exact search stays under ~10 ms/query on 2 cores below this (bench/scale.py)
# Above this, IVF-PQ: 72 bytes a vector in RAM (codes + ids) instead of IVF-Flat's 2 KB of float32, plus the
# mapped float16 re-rank file. Overridable (CLIPSEARCH_PQ_MIN, VectorStore(pq_min=...)).
PQ_MIN = 250_000
PQ_TRAIN_MIN = 256 * 39  # k-means of 256 centroids per sub-quantizer: FAISS wants 39 points per centroid
HNSW_EF_SEARCH = 128
HNSW_M = 32


def import_faiss() -> Any:
    try:
        import faiss
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ClipsearchError(
            "faiss is not installed",
            "install with `pip install 'clipsearch[cpu]'` (or `[gpu]` on a CUDA machine)",
        ) from exc
    return faiss


def choose_type(n: int, pq_min: int | None = None) -> str:
    if n > (PQ_MIN if pq_min is None else pq_min):
        return "ivfpq"
    return "flat" if n <= FLAT_MAX else "ivf"


def pq_m(dim: int) -> int:
    """Sub-quantizers for IVF-PQ: one byte per 8 dimensions (64 bytes at 512-d), at least 16, a divisor of `dim`."""
    for m in range(min(dim, max(16, dim // 8)), 0, -1):
        if dim % m == 0:
            return m
    return 1


def ivf_nlist(n: int) -> int:
    # sqrt(n) lists: k-means training stays seconds on 2 cores at 1M vectors (4*sqrt(n) took minutes)
    return int(min(max(16, math.sqrt(max(n, 1))), 65536))


def ivf_nprobe(nlist: int) -> int:
    # ~4% of the lists reaches recall@10 >= 0.95 on clustered data; bench/scale.py measures it.
    return max(8, nlist // 24)


@contextlib.contextmanager
def one_thread(faiss: Any) -> Iterator[None]:
    """PQ training is many small k-means (8-d, 256 centroids) whose OpenMP regions cost more than they save on a
    shared 2-core machine: 5 s on one thread against 31 s on two for 100k 512-d vectors."""
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)
