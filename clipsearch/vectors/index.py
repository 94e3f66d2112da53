"""The FAISS index: a structure derived from the stored embeddings, rebuilt from them whenever in doubt.

Scores are inner products of L2-normalised vectors (= cosine similarity). Every index type supports
search restricted to a set of ids, and a filtered search returns min(k, allowed ids in the index) hits:

- flat and HNSW: exact, over the allowed vectors only (HNSW's own flat storage; its graph is not used, since a
  FAISS id selector only filters the nodes the graph search happens to visit and small folders come back empty).
- IVF: only the inverted lists that hold allowed ids are scanned, with an id selector so distances are computed
  for allowed ids only. Exact while the allowed vectors are few (IVF_FILTER_BUDGET, IVF_FILTER_MIN); above that,
  lists are taken in centroid order until that many allowed vectors are covered.
- IVF-PQ: the IVF search above over 64-byte codes picks RERANK_FACTOR x k candidates (at least RERANK_MIN), which
  are re-scored exactly from the float16 vectors of `exact_vectors.ExactVectors` (a memory-mapped file). A filter
  of at most PQ_GATHER_MAX allowed vectors skips the codes: those vectors are scored exactly.

`pairs_above` is a self-join (every pair of stored vectors above a score, for near duplicates) that uses the IVF
lists to skip pairs that cannot qualify.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from clipsearch.errors import ClipsearchError
from clipsearch.vectors import gpu
from clipsearch.vectors.exact import ExactVectors
from clipsearch.vectors.flat_file import FlatFile
from clipsearch.vectors.join import EXACT_JOIN_MAX, JoinStats, join_cells, member_test
from clipsearch.vectors.kinds import (
    HNSW_EF_SEARCH,
    HNSW_M,
    INDEX_TYPES,
    PQ_TRAIN_MIN,
    choose_type,
    import_faiss,
    ivf_nlist,
    ivf_nprobe,
    one_thread,
    pq_m,
)
from clipsearch.vectors.lookup import PAD_SCORE, IdLookup, bitmap, top_k

# candidates re-ranked per hit asked for. At 1M clustered 512-d vectors (nprobe 82), recall@10 was 0.914 with
# 20 x k (at least 200), 0.999 with 50 x k (at least 500) and 1.000 with 100 x k, p50 6.6 / 6.3 / 7.5 ms
RERANK_FACTOR = 50
RERANK_MIN = 500
PQ_GATHER_MAX = 4096  # a filter this small is scored exactly from the re-rank file, no codes scanned
# Flat/HNSW filters: copy out the allowed vectors when they are at most 1/64 of the index, else scan the
# storage with a bitmap of allowed positions (the scan's fixed cost, one bit test per vector, wins above that).
GATHER_DIV = 64
# IVF filters: scan every allowed vector (exact) while they number at most max(IVF_FILTER_BUDGET x the vectors an
# unfiltered search scans, IVF_FILTER_MIN); above that, scan that many, nearest lists first. Measured on clustered
# 512-d data (bench/scale.py): with 2x and 16384, recall@10 >= 0.97 for random and "folder" filters of 10% and
# 30% at 100k and 1M, at 2.4-5x the unfiltered p50 (the exact scan of a 30% filter at 1M: 12x). A budget of 1x
# without the floor ran at ~2x but fell to 0.84 recall on a 30% folder at 100k.
IVF_FILTER_BUDGET = 2.0
IVF_FILTER_MIN = 16_384


class VectorIndex:
    def __init__(self, dim: int, kind: str, index: Any, forced: bool = False, mapped: bool = False,
                 exact: ExactVectors | None = None, device: str | None = None, flat: FlatFile | None = None) -> None:
        self.dim = dim
        self.kind = kind
        self._index = index
        # a saved flat index mapped without FAISS (`flat_file.read_flat`): NumPy searches it, and the FAISS index
        # is built from the same arrays only if something else is asked of it
        self.flat = flat
        self.forced = forced  # chosen by the user: size thresholds no longer switch the type
        self.mapped = mapped  # FAISS arrays are views of a mapped file: read-only (FAISS aborts on a change)
        self.exact = exact  # IVF-PQ: the float16 vectors candidates are re-ranked with
        self.device = device  # where FAISS may search: `gpu.gpu_number`'s rules

    @property
    def index(self) -> Any:
        """The FAISS index; for a flat file mapped without FAISS, built from its arrays on first use."""
        if self._index is None and self.flat is not None:
            faiss = import_faiss()
            index = faiss.IndexIDMap2(faiss.IndexFlatIP(self.dim))
            if len(self.flat.ids):
                index.add_with_ids(np.ascontiguousarray(self.flat.vectors, dtype=np.float32),
                                   np.ascontiguousarray(self.flat.ids, dtype=np.int64))
            self._index = index
        return self._index

    @property
    def ntotal(self) -> int:
        if self.flat is not None:
            return len(self.flat.ids)
        return int(self.index.ntotal)

    @property
    def supports_remove(self) -> bool:
        return self.kind != "hnsw"

    @classmethod
    def empty(cls, dim: int, kind: str = "flat") -> VectorIndex:
        faiss = import_faiss()
        if kind == "flat":
            return cls(dim, kind, faiss.IndexIDMap2(faiss.IndexFlatIP(dim)))
        if kind == "hnsw":
            inner = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
            inner.hnsw.efConstruction = 80
            inner.hnsw.efSearch = HNSW_EF_SEARCH
            return cls(dim, kind, faiss.IndexIDMap2(inner))
        raise ClipsearchError(f"unknown index type {kind!r}", f"choose one of {', '.join(INDEX_TYPES)}")

    @classmethod
    def build(cls, ids: np.ndarray, vecs: np.ndarray, dim: int, kind: str | None = None,
              forced: bool = False, device: str | None = None) -> VectorIndex:
        """Build the index type that fits the collection (or `kind`) from stored embeddings. Where `device`
        gives FAISS a GPU (`gpu.gpu_number`), an IVF build's k-means and list assignment run there."""
        faiss = import_faiss()
        gpu.check_device(device)
        kind = kind or choose_type(len(ids))
        vecs = np.ascontiguousarray(vecs, dtype=np.float32)
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        if kind in ("ivf", "ivfpq"):
            nlist = ivf_nlist(len(ids))
            quantizer = faiss.IndexFlatIP(dim)
            if kind == "ivf":
                index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
            else:
                index = faiss.IndexIVFPQ(quantizer, dim, nlist, pq_m(dim), 8, faiss.METRIC_INNER_PRODUCT)
            if len(ids) < nlist * 8 or (kind == "ivfpq" and len(ids) < PQ_TRAIN_MIN):
                # too few to train the quantizers: exact search is better anyway
                return cls.build(ids, vecs, dim, "flat", forced, device)
            rng = np.random.default_rng(0)
            sample = vecs[rng.choice(len(vecs), size=min(len(vecs), max(nlist * 64, PQ_TRAIN_MIN)), replace=False)]
            # on a GPU: the coarse k-means assigns with this index, which ends holding the centroids
            assigner = gpu.assignment_index(dim, device, faiss)
            index.clustering_index = assigner
            try:
                if kind == "ivfpq":
                    index.pq.cp.niter = 10  # recall after re-ranking is the same as with 25 (bench/scale.py)
                    with one_thread(faiss):
                        index.train(sample)
                else:
                    index.train(sample)
            finally:
                index.clustering_index = None
            # codes are 32x cheaper to scan than IVF-Flat's vectors: probe twice the lists, and at least 32 (a
            # small store's few lists: a tightly clustered library missed neighbours in the 16 it probed)
            index.nprobe = max(32, 2 * ivf_nprobe(nlist)) if kind == "ivfpq" else ivf_nprobe(nlist)
            vi = cls(dim, kind, index)
            if kind == "ivfpq":
                vi.exact = ExactVectors.from_arrays(ids, vecs, dim)
            if assigner is not None and len(ids):  # each vector's list found on the GPU, then added to it
                lists = np.ascontiguousarray(assigner.search(vecs, 1)[1].ravel(), dtype=np.int64)
                index.add_core(len(ids), faiss.swig_ptr(vecs), faiss.swig_ptr(ids), faiss.swig_ptr(lists))
                ids = ids[:0]
        else:
            vi = cls.empty(dim, kind)
        if len(ids):
            vi.index.add_with_ids(vecs, ids)
        vi.forced = forced
        vi.device = device
        return vi

    def add(self, ids: np.ndarray, vecs: np.ndarray) -> None:
        self._writable()
        self._drop_caches()
        if len(ids):
            self.index.add_with_ids(np.ascontiguousarray(vecs, dtype=np.float32),
                                    np.ascontiguousarray(ids, dtype=np.int64))
            if self.exact is not None:
                self.exact.add(ids, vecs)

    def remove(self, ids: np.ndarray) -> None:
        self._writable()
        self._drop_caches()
        if len(ids):
            faiss = import_faiss()
            self.index.remove_ids(faiss.IDSelectorBatch(np.ascontiguousarray(ids, dtype=np.int64)))
            if self.exact is not None:
                self.exact.remove(ids)

    def _writable(self) -> None:
        if self.mapped:  # FAISS would abort the process on a change to a mapped array
            raise RuntimeError("a memory-mapped index is read-only: load it owned before changing it")

    def _gpu(self) -> Any:
        """A GPU copy for unfiltered flat/IVF searches where `device` gives FAISS a GPU (else None)."""
        if not hasattr(self, "_gpu_index"):
            self._gpu_index = None
            if self.kind in ("flat", "ivf"):
                faiss = import_faiss()
                number = gpu.gpu_number(self.device, faiss)
                if number is not None:
                    self._gpu_index = gpu.search_copy(self.index, number, faiss)
        return self._gpu_index

    @property
    def faiss_device(self) -> str:
        """Where FAISS works for this index's `device`: "cuda:N" (GPU builds and unfiltered searches) or "cpu"."""
        number = gpu.gpu_number(self.device, import_faiss())
        return "cpu" if number is None else f"cuda:{number}"

    @property
    def searches_on_gpu(self) -> bool:
        """Whether unfiltered searches run on a GPU copy of this index."""
        return self._gpu() is not None

    def search(self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, ids) per query; `allowed` restricts the search to those ids.

        With `allowed`, every row holds min(k, allowed ids in the index) hits, the rest padded with id -1.
        """
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        k = max(1, min(k, self.ntotal)) if self.ntotal else 1
        if self.ntotal == 0:
            return np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64)
        if self.kind == "ivfpq":
            return self._search_pq(queries, k, allowed)
        if allowed is not None:
            allowed = np.ascontiguousarray(allowed, dtype=np.int64).ravel()
            if len(allowed) == 0:
                return np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64)
        if self.flat is not None:  # exact in NumPy: the same ids as FAISS's flat search, and no FAISS import
            return self._search_numpy(queries, k, allowed)
        if allowed is None:
            scores, labels = (self._gpu() or self.index).search(queries, k)
            short = (labels < 0).any(axis=1)
            if short.any():  # HNSW's graph or IVF's probes reached fewer than k vectors: those rows scan them all
                scores[short], labels[short] = self._search_allowed(queries[short], k, self._lookup().members)
            return scores, labels
        return self._search_allowed(queries, k, allowed)

    def _search_numpy(self, queries: np.ndarray, k: int, allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Flat, mapped without FAISS: one matrix product over the vectors (or the allowed ones), then top-k."""
        assert self.flat is not None
        vectors, position_ids = self.flat.vectors, self.flat.ids
        if allowed is not None:
            _ids, pos = self._lookup().locate(allowed)
            pos = np.unique(pos)
            if len(pos) * GATHER_DIV <= len(position_ids):  # few allowed: score those rows only
                return top_k(np.einsum("qd,md->qm", queries, vectors[pos]), position_ids[pos], k)
            scores = (queries @ vectors.T)[:, pos]
            return top_k(scores, position_ids[pos], k)
        return top_k(queries @ vectors.T, position_ids, k)

    def _search_allowed(self, queries: np.ndarray, k: int, allowed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.kind == "ivf":
            return self._search_ivf_filtered(queries, k, allowed)
        return self._search_exact_filtered(queries, k, allowed)

    def _search_pq(self, queries: np.ndarray, k: int, allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """IVF-PQ: candidates by codes, then exact scores from the re-rank vectors (DamagedVectors if they lie)."""
        assert self.exact is not None
        want = min(max(k * RERANK_FACTOR, RERANK_MIN), self.ntotal)
        if allowed is None:
            _scores, cand = self.index.search(queries, want)
            short = (cand >= 0).sum(axis=1) < min(k, self.ntotal)
            if short.any():  # the probed lists held fewer than k vectors: those rows take candidates from all lists
                cand[short] = self._search_ivf_filtered(queries[short], want, self._lookup().members)[1]
        else:
            allowed = np.ascontiguousarray(allowed, dtype=np.int64).ravel()
            if len(allowed) == 0:
                return np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64)
            present, _lists = self._lookup().locate(allowed)
            if len(present) == 0:
                return np.full((len(queries), k), PAD_SCORE, np.float32), np.full((len(queries), k), -1, np.int64)
            if len(present) <= PQ_GATHER_MAX:
                present = np.unique(present)
                scores = np.einsum("qd,md->qm", queries, self.exact.get(present))
                return top_k(scores, present, k)
            _scores, cand = self._search_ivf_filtered(queries, want, present)
        out_s = np.full((len(queries), k), PAD_SCORE, np.float32)
        out_i = np.full((len(queries), k), -1, np.int64)
        for row, (q, c) in enumerate(zip(queries, cand, strict=False)):
            c = c[c >= 0]
            s, i = top_k(np.einsum("d,md->m", q, self.exact.get(c))[None], c, k)
            out_s[row], out_i[row] = s[0], i[0]
        return out_s, out_i

    # -- self-join: every pair above a score (near duplicates) -----------------------------------------

    def pairs_above(self, threshold: float, allowed: np.ndarray | None = None, stats: JoinStats | None = None,
                    max_visits: int | None = None) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Every pair of stored vectors (both in `allowed`, when given) whose inner product is >= `threshold`,
        each pair once, as blocks of (ids_a, ids_b, scores). Exact on every index type, unless `max_visits` caps
        the neighbouring lists a vector visits (then `stats.capped` counts the vectors that had more).

        Up to EXACT_JOIN_MAX vectors every pair is scored (BLAS, in blocks). Above that the vectors are split by
        an IVF partition: an IVF index's own lists, or, for flat and HNSW, a partition built for the join. Each
        list is joined with itself, and a vector visits a neighbouring list only when it lies near enough to
        that list's border to have a partner there: <x, y> >= t means |x - y| <= r = sqrt(|x|² + |y|² - 2t),
        and a y in list j (its nearest centroid, not x's list l) has <y, c_l - c_j> <= 0, so
        <x, c_l> - <x, c_j> <= r |c_l - c_j|. Vectors deep inside their list visit no other, so the work is
        about n·sqrt(n) rather than n² for a threshold near 1 (a low threshold widens r and visits more lists).
        """
        stats = stats if stats is not None else JoinStats()
        if self.kind in ("ivf", "ivfpq"):
            cells = self._ivf_cells(allowed)
        else:
            ids, vecs = self._flat_members(allowed)
            cells = [(0, ids, vecs)]
        n = sum(len(c[1]) for c in cells)
        stats.vectors = n
        if n < 2:
            return
        is_ivf = self.kind in ("ivf", "ivfpq")
        if n <= EXACT_JOIN_MAX or (not is_ivf and len(cells[0][1]) < ivf_nlist(n) * 8):
            if len(cells) > 1:
                cells = [(0, np.concatenate([c[1] for c in cells]), np.concatenate([c[2] for c in cells]))]
            stats.partition = "exhaustive"
            yield from join_cells(cells, None, threshold, stats)
        elif is_ivf:
            stats.partition = "ivf lists"
            if getattr(self, "_centroids", None) is None:
                self._centroids = self.index.quantizer.reconstruct_n(0, self.index.nlist)
            yield from join_cells(cells, self._centroids, threshold, stats, max_visits)
        else:  # flat / HNSW above EXACT_JOIN_MAX: partition the (allowed) vectors for the join alone
            partition = VectorIndex.build(cells[0][1], cells[0][2], self.dim, "ivf")
            del cells
            yield from partition.pairs_above(threshold, None, stats, max_visits)
            stats.partition = stats.partition.replace("ivf lists", "ivf lists built for the join", 1)

    def _ivf_cells(self, allowed: np.ndarray | None) -> list[tuple[int, np.ndarray, np.ndarray]]:
        """(list number, ids, vectors) of each inverted list holding allowed vectors; views when unfiltered
        (IVF-Flat), the re-rank vectors (IVF-PQ: its codes are not vectors)."""
        faiss = import_faiss()
        invlists = self.index.invlists
        keep = member_test(allowed)
        cells = []
        for list_no in range(self.index.nlist):
            size = invlists.list_size(list_no)
            if not size:
                continue
            ids = faiss.rev_swig_ptr(invlists.get_ids(list_no), size)
            if keep is not None:
                mask = keep(ids)
                if not mask.any():
                    continue
            if self.exact is not None:  # IVF-PQ: its codes are not vectors
                ids = ids[mask] if keep is not None else ids.copy()
                cells.append((list_no, ids, self.exact.get(ids)))
                continue
            codes = faiss.rev_swig_ptr(invlists.get_codes(list_no), size * self.index.code_size)
            vecs = codes.view(np.float32).reshape(size, self.dim)  # IVF-Flat codes are the raw float32 vectors
            if keep is not None:
                ids, vecs = ids[mask], vecs[mask]
            cells.append((list_no, ids, vecs))
        return cells

    def _flat_members(self, allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """(ids, vectors) of a flat or HNSW index, restricted to `allowed`; a view of the storage when unfiltered."""
        n = self.ntotal
        if n == 0:
            return np.zeros(0, np.int64), np.zeros((0, self.dim), np.float32)
        if self.flat is not None:
            vecs = self.flat.vectors
        else:
            faiss = import_faiss()
            vecs = faiss.rev_swig_ptr(self._storage().get_xb(), n * self.dim).reshape(n, self.dim)
        lookup = self._lookup()
        if allowed is None:
            return lookup.position_ids, vecs
        _ids, pos = lookup.locate(np.unique(np.asarray(allowed, dtype=np.int64)))
        pos = np.sort(pos)
        return lookup.position_ids[pos], vecs[pos]

    # -- filtered search -------------------------------------------------------------------------------

    def _drop_caches(self) -> None:
        for name in ("_gpu_index", "_lookup_cache", "_centroids"):
            self.__dict__.pop(name, None)

    def _lookup(self) -> IdLookup:
        """External id -> internal position (flat, HNSW) or inverted list number (IVF); rebuilt after add/remove."""
        if getattr(self, "_lookup_cache", None) is None:
            if self.flat is not None:
                self._lookup_cache = IdLookup(self.flat.ids, np.arange(len(self.flat.ids), dtype=np.int64),
                                              keep_ids=True)
                return self._lookup_cache
            faiss = import_faiss()
            if self.kind in ("ivf", "ivfpq"):
                invlists = self.index.invlists
                ids, lists = [], []
                for list_no in range(self.index.nlist):
                    size = invlists.list_size(list_no)
                    if size:
                        ids.append(faiss.rev_swig_ptr(invlists.get_ids(list_no), size).copy())
                        lists.append(np.full(size, list_no, np.int32))
                self._lookup_cache = IdLookup(np.concatenate(ids), np.concatenate(lists))
            else:
                id_map = faiss.vector_to_array(self.index.id_map).astype(np.int64, copy=False)
                self._lookup_cache = IdLookup(id_map, np.arange(len(id_map), dtype=np.int64), keep_ids=True)
        return self._lookup_cache

    def _storage(self) -> Any:
        """The IndexFlat holding the vectors of a flat or HNSW index, in internal-position order."""
        faiss = import_faiss()
        inner = faiss.downcast_index(self.index.index)
        return inner if self.kind == "flat" else faiss.downcast_index(inner.storage)

    def _search_exact_filtered(self, queries: np.ndarray, k: int, allowed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Flat and HNSW: exact search over the allowed vectors, cost proportional to how many are allowed."""
        faiss = import_faiss()
        lookup = self._lookup()
        _ids, pos = lookup.locate(allowed)
        if len(pos) * GATHER_DIV <= self.ntotal:
            pos = np.unique(pos)
            vecs = self._storage().reconstruct_batch(pos) if len(pos) else np.zeros((0, self.dim), np.float32)
            scores = np.einsum("qd,md->qm", queries, vecs)  # einsum: no BLAS thread start-up for one query
            return top_k(scores, lookup.position_ids[pos], k)
        sel = faiss.IDSelectorBitmap(bitmap(pos, self.ntotal))
        scores, labels = self._storage().search(queries, k, params=faiss.SearchParameters(sel=sel))
        return scores, np.where(labels >= 0, lookup.position_ids[np.maximum(labels, 0)], -1)

    def _search_ivf_filtered(self, queries: np.ndarray, k: int, allowed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """IVF: scan only lists that hold allowed ids, nearest centroid first, all of them up to the budget."""
        faiss = import_faiss()
        index = self.index
        ids, lists = self._lookup().locate(allowed)
        nq, m = len(queries), len(ids)
        if m == 0:
            return np.full((nq, k), PAD_SCORE, np.float32), np.full((nq, k), -1, np.int64)
        if ids.max() < 64 * self.ntotal + (1 << 20):  # a bitmap of at most 8 bytes per vector: fastest test
            sel = faiss.IDSelectorBitmap(bitmap(ids, int(ids.max()) + 1))
        else:  # sparse, huge ids
            sel = faiss.IDSelectorBatch(ids)
        per_list = np.bincount(lists, minlength=index.nlist)
        touched = np.flatnonzero(per_list)
        if getattr(self, "_centroids", None) is None:
            self._centroids = index.quantizer.reconstruct_n(0, index.nlist)
        coarse = np.einsum("qd,ld->ql", queries, self._centroids[touched])
        budget = max(IVF_FILTER_BUDGET * index.nprobe * self.ntotal / index.nlist, IVF_FILTER_MIN)
        exact = m <= budget
        if exact:  # every list holding an allowed id
            assign = np.broadcast_to(touched, coarse.shape)
        else:  # nearest lists first until `budget` allowed vectors are covered; the rest of a row is -1 (skipped)
            order = np.argsort(-coarse, axis=1)
            assign = touched[order]
            coarse = np.take_along_axis(coarse, order, axis=1)
            covered = np.cumsum(per_list[assign], axis=1)
            depth = (covered < budget).sum(axis=1) + 1
            width = int(depth.max())
            assign, coarse = assign[:, :width].copy(), coarse[:, :width]
            assign[np.arange(width)[None, :] >= depth[:, None]] = -1
        scores, labels = self._ivf_scan(queries, k, assign, coarse, sel)
        short = (labels >= 0).sum(axis=1) < min(k, m)
        if short.any() and not exact:  # too few came back (duplicate allowed ids): those rows scan every list
            full = np.broadcast_to(touched, (int(short.sum()), len(touched)))
            full_coarse = np.einsum("qd,ld->ql", queries[short], self._centroids[touched])
            scores[short], labels[short] = self._ivf_scan(queries[short], k, full, full_coarse, sel)
        return scores, labels

    def _ivf_scan(self, queries: np.ndarray, k: int, assign: np.ndarray, coarse: np.ndarray,
                  sel: Any) -> tuple[np.ndarray, np.ndarray]:
        faiss = import_faiss()
        nq, width = assign.shape
        assign = np.ascontiguousarray(assign, dtype=np.int64)
        coarse = np.ascontiguousarray(coarse, dtype=np.float32)
        scores = np.empty((nq, k), np.float32)
        labels = np.empty((nq, k), np.int64)
        params = faiss.SearchParametersIVF(sel=sel, nprobe=width, max_codes=0)
        self.index.search_preassigned_c(nq, faiss.swig_ptr(queries), k, faiss.swig_ptr(assign),
                                        faiss.swig_ptr(coarse), faiss.swig_ptr(scores), faiss.swig_ptr(labels),
                                        False, params)
        return scores, labels
