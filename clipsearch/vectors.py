"""The FAISS index: a structure derived from the stored embeddings, rebuilt from them whenever in doubt.

Scores are inner products of L2-normalised vectors (= cosine similarity). Every index type supports
search restricted to a set of ids (FAISS IDSelector), so filters never over-fetch and discard.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ClipsearchError
from .fsutil import atomic_write, atomic_write_text

INDEX_TYPES = ("flat", "ivf", "hnsw")
FLAT_MAX = 50_000  # exact search stays under ~10 ms/query on 2 cores below this (bench/scale.py)
HNSW_EF_SEARCH = 128
HNSW_M = 32


def import_faiss() -> Any:
    try:
        import faiss  # type: ignore
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ClipsearchError(
            "faiss is not installed",
            "install with `pip install 'clipsearch[cpu]'` (or `[gpu]` on a CUDA machine)",
        ) from exc
    return faiss


def choose_type(n: int) -> str:
    return "flat" if n <= FLAT_MAX else "ivf"


def ivf_nlist(n: int) -> int:
    # sqrt(n) lists: k-means training stays seconds on 2 cores at 1M vectors (4*sqrt(n) took minutes)
    return int(min(max(16, math.sqrt(max(n, 1))), 65536))


def ivf_nprobe(nlist: int) -> int:
    # ~4% of the lists reaches recall@10 >= 0.95 on clustered data; bench/scale.py measures it.
    return max(8, nlist // 24)


class VectorIndex:
    def __init__(self, dim: int, kind: str, index: Any, forced: bool = False) -> None:
        self.dim = dim
        self.kind = kind
        self.index = index
        self.forced = forced  # chosen by the user: size thresholds no longer switch the type

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    @property
    def supports_remove(self) -> bool:
        return self.kind != "hnsw"

    @classmethod
    def empty(cls, dim: int, kind: str = "flat") -> "VectorIndex":
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
              forced: bool = False) -> "VectorIndex":
        """Build the index type that fits the collection (or `kind`) from stored embeddings."""
        faiss = import_faiss()
        kind = kind or choose_type(len(ids))
        vecs = np.ascontiguousarray(vecs, dtype=np.float32)
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        if kind == "ivf":
            nlist = ivf_nlist(len(ids))
            quantizer = faiss.IndexFlatIP(dim)
            index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
            if len(ids) < nlist * 8:  # too few to train the coarse quantizer: exact search is better anyway
                return cls.build(ids, vecs, dim, "flat", forced)
            rng = np.random.default_rng(0)
            sample = vecs[rng.choice(len(vecs), size=min(len(vecs), nlist * 64), replace=False)]
            index.train(sample)
            index.nprobe = ivf_nprobe(nlist)
            vi = cls(dim, kind, index)
        else:
            vi = cls.empty(dim, kind)
        if len(ids):
            vi.index.add_with_ids(vecs, ids)
        vi.forced = forced
        return vi

    def add(self, ids: np.ndarray, vecs: np.ndarray) -> None:
        self._drop_gpu()
        if len(ids):
            self.index.add_with_ids(np.ascontiguousarray(vecs, dtype=np.float32),
                                    np.ascontiguousarray(ids, dtype=np.int64))

    def remove(self, ids: np.ndarray) -> None:
        self._drop_gpu()
        if len(ids):
            faiss = import_faiss()
            self.index.remove_ids(faiss.IDSelectorBatch(np.ascontiguousarray(ids, dtype=np.int64)))

    def _gpu(self) -> Any:
        """A GPU copy for unfiltered searches when the faiss GPU build and a GPU are present (else None)."""
        if not hasattr(self, "_gpu_index"):
            self._gpu_index = None
            faiss = import_faiss()
            if self.kind in ("flat", "ivf") and hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0:
                try:
                    self._gpu_res = faiss.StandardGpuResources()
                    self._gpu_index = faiss.index_cpu_to_gpu(self._gpu_res, 0, self.index)
                except (RuntimeError, AttributeError):  # an index type the GPU build lacks: stay on CPU
                    self._gpu_index = None
        return self._gpu_index

    def _drop_gpu(self) -> None:
        self.__dict__.pop("_gpu_index", None)

    def _params(self, selector: Any) -> Any:
        faiss = import_faiss()
        if self.kind == "ivf":
            return faiss.SearchParametersIVF(sel=selector, nprobe=self.index.nprobe)
        if self.kind == "hnsw":
            return faiss.SearchParametersHNSW(sel=selector, efSearch=HNSW_EF_SEARCH)
        return faiss.SearchParameters(sel=selector)

    def search(self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, ids) per query; `allowed` restricts the search to those ids."""
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        k = max(1, min(k, self.ntotal)) if self.ntotal else 1
        if self.ntotal == 0:
            return np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64)
        if allowed is None:
            scores, ids = (self._gpu() or self.index).search(queries, k)
        else:
            faiss = import_faiss()
            allowed = np.ascontiguousarray(allowed, dtype=np.int64)
            if len(allowed) == 0:
                return np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64)
            selector = faiss.IDSelectorBatch(allowed)
            scores, ids = self.index.search(queries, k, params=self._params(selector))
        return scores, ids

    def save(self, path: Path, version: int) -> None:
        faiss = import_faiss()
        atomic_write(path, lambda tmp: faiss.write_index(self.index, str(tmp)))
        atomic_write_text(path.with_suffix(".json"), json.dumps(
            {"version": version, "kind": self.kind, "count": self.ntotal, "dim": self.dim, "forced": self.forced}))

    @classmethod
    def load(cls, path: Path) -> tuple["VectorIndex", int] | None:
        """The saved index and the catalog version it reflects; None if missing or unreadable."""
        side = path.with_suffix(".json")
        if not path.exists() or not side.exists():
            return None
        try:
            meta = json.loads(side.read_text())
            index = import_faiss().read_index(str(path))
        except (OSError, ValueError, RuntimeError):
            return None
        return cls(int(meta["dim"]), str(meta["kind"]), index, bool(meta.get("forced"))), int(meta["version"])


def saved_meta(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.with_suffix(".json").read_text())
    except (OSError, ValueError):
        return None
