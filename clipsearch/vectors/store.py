"""The vector store: the FAISS index of a store, its files, and keeping them true to the catalog.

The index is derived from the catalog's embeddings. Its file is trusted only when its sidecar says it reflects
the catalog's current version and its CRC-32 matches (a file overwritten in place, even with the same length, is
caught); otherwise the index is rebuilt from the embeddings, no image decoded. The CRC is computed while reading
the file in 8 MB pieces, and FAISS then maps the same file (IO_FLAG_MMAP_IFC): the index lives in the page cache
once, not as a second copy in the process; a cold query reads the file once and copies none of it.

IVF-PQ stores also hold the re-rank file (`exact_vectors.py`, float16 in id order, memory-mapped): the sidecar
records its size and checksums, and each block is checked when a query first touches it.

A mapped index is read-only; a writer loads an owned copy (a plain read of the verified file) before changing it.
"""

from __future__ import annotations

import io
import json
import os
import threading
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from clipsearch.catalog.codec import VECTOR_DTYPE
from clipsearch.config import settings
from clipsearch.fsutil import atomic_write, atomic_write_text
from clipsearch.vectors.exact import DamagedVectors, ExactVectors
from clipsearch.vectors.flat_file import numpy_may_search, read_flat
from clipsearch.vectors.index import VectorIndex
from clipsearch.vectors.kinds import INDEX_TYPES, PQ_TRAIN_MIN, choose_type, import_faiss, ivf_nlist

if TYPE_CHECKING:  # pragma: no cover
    from clipsearch.catalog.reads import CatalogReads



FAISS_FILE = "vectors.faiss"
FAISS_SIDECAR = "vectors.json"  # the FAISS file's catalog version, size and CRC-32 (`_sidecar`)
EXACT_FILE = "vectors.f16"  # IVF-PQ stores: the re-rank vectors

def _sidecar(path: Path) -> Path:
    return path.with_suffix(".json")  # vectors.faiss → FAISS_SIDECAR


def saved_meta(path: Path) -> dict[str, Any] | None:
    """The sidecar of a saved index (version, kind, count, dim, forced, bytes, crc32; `exact` for IVF-PQ), or None."""
    try:
        meta = json.loads(_sidecar(path).read_text())
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) else None


def _crc(f: io.BufferedReader) -> tuple[int, int]:
    """(CRC-32, size) of an open file, read in pieces into one reused buffer."""
    buf = bytearray(8 << 20)
    view = memoryview(buf)
    crc = size = 0
    while True:
        got = f.readinto(buf)
        if not got:
            return crc, size
        crc = zlib.crc32(view[:got], crc)
        size += got


def load_index(path: Path, dim: int, mapped: bool = True, device: str | None = None) -> tuple[VectorIndex, int] | None:
    """The saved index and the catalog version it reflects; None if missing, damaged or not this store's.

    `mapped`: FAISS arrays are views of the file (read-only); else owned copies (a writer's). `device`: where
    FAISS may search it (`gpu.gpu_number`). A mapped flat index that FAISS would search on the CPU is mapped
    without FAISS and searched in NumPy (`flat_file`): a small store's cold query never imports FAISS."""
    meta = saved_meta(path)
    if not meta or meta.get("dim") != dim or meta.get("kind") not in INDEX_TYPES:
        return None
    without_faiss = mapped and meta["kind"] == "flat" and numpy_may_search(device)
    try:
        with open(path, "rb") as f:
            if _crc(f) != (meta.get("crc32"), meta.get("bytes")):
                return None
            checked = os.fstat(f.fileno())
            flat = read_flat(path, dim, int(meta.get("count", -1))) if without_faiss else None
            if flat is not None:
                if flat.inode != (checked.st_dev, checked.st_ino):  # replaced since the check: not the file read
                    return None
                return (VectorIndex(dim, "flat", None, bool(meta.get("forced")), mapped=True, device=device,
                                    flat=flat), int(meta["version"]))
            faiss = import_faiss()
            try:
                index = faiss.read_index(str(path), faiss.IO_FLAG_MMAP_IFC if mapped else 0)
            except (RuntimeError, ValueError):
                return None
            now = os.stat(path)
    except OSError:
        return None
    if (now.st_ino, now.st_dev) != (checked.st_ino, checked.st_dev):  # replaced since the check: not the file read
        return None
    if index.d != dim or index.ntotal != meta.get("count"):
        return None
    exact = None
    if meta["kind"] == "ivfpq":
        exact = ExactVectors.open(path.with_name(EXACT_FILE), dim, meta.get("exact") or {})
        if exact is None:
            return None
    return (VectorIndex(dim, str(meta["kind"]), index, bool(meta.get("forced")), mapped=mapped, exact=exact,
                        device=device), int(meta["version"]))


def save_index(vi: VectorIndex, path: Path, version: int) -> None:
    """Write the FAISS file (and, for IVF-PQ, the re-rank file if it changed), then the sidecar naming both.

    IVF-PQ's re-rank vectors are mapped from the new file afterwards: the arrays of a fresh build are freed."""
    faiss = import_faiss()
    meta: dict[str, Any] = {"version": version, "kind": vi.kind, "count": vi.ntotal, "dim": vi.dim,
                            "forced": vi.forced}
    if vi.exact is not None:
        exact_path = path.with_name(EXACT_FILE)
        if vi.exact.dirty or vi.exact.path != exact_path:
            written = vi.exact.write(exact_path, version)
            reopened = ExactVectors.open(exact_path, vi.dim, written)
            if reopened is None:
                raise DamagedVectors(f"{exact_path.name} changed while it was written")
            vi.exact = reopened
        meta["exact"] = vi.exact.meta

    def write(tmp: Path) -> None:
        faiss.write_index(vi.index, str(tmp))
        with open(tmp, "rb") as f:
            meta["crc32"], meta["bytes"] = _crc(f)

    atomic_write(path, write)
    atomic_write_text(_sidecar(path), json.dumps(meta))


def why_not(kind: str, n: int) -> str:
    """Why a build of `kind` over `n` vectors gave another type (VectorIndex.build falls back to exact)."""
    if kind in ("ivf", "ivfpq"):
        need = max(ivf_nlist(n) * 8, PQ_TRAIN_MIN if kind == "ivfpq" else 0)
        return (f"{n} vectors are too few to train an {kind.upper()} index ({need} needed); built an exact (flat) "
                "index, which is also faster at this size")
    return f"built another index type than {kind} for {n} vectors"


class VectorStore:
    """The FAISS index of one store, mirrored from the catalog and saved beside it.

    `pq_min`: above this many vectors the store builds IVF-PQ with re-ranking (default: CLIPSEARCH_PQ_MIN, else
    `vectors.PQ_MIN`). `device`: the store's device, which FAISS follows where it can (`gpu.gpu_number`: a GPU
    copy for searches, IVF builds on the GPU)."""

    def __init__(self, folder: Path, catalog: CatalogReads, dim: int, pq_min: int | None = None,
                 device: str | None = None) -> None:
        self.path = Path(folder) / FAISS_FILE
        self.catalog = catalog
        self.dim = dim
        self.device = device
        self.pq_min = pq_min if pq_min is not None else settings().pq_min
        self._index: VectorIndex | None = None
        self._version = -1
        self._reload_lock = threading.RLock()

    def current(self) -> VectorIndex:
        """The index matching the catalog now: the one in memory, the saved file, or rebuilt from embeddings.

        Safe to call from several threads (a server's): one reloads, the others wait for it and share the result.
        """
        version = self.catalog.version()
        index = self._index
        if index is not None and self._version == version:
            return index
        with self._reload_lock:
            version = self.catalog.version()
            if self._index is not None and self._version == version:
                return self._index
            return self._reload()

    def _reload(self) -> VectorIndex:
        version = self.catalog.version()
        loaded = load_index(self.path, self.dim, device=self.device)
        if loaded and loaded[1] == version:
            self._index, self._version = loaded
            return self._index
        return self._rebuild()

    def _rebuild(self) -> VectorIndex:
        """Build again, keeping a type the user forced (the sidecar remembers it)."""
        meta = saved_meta(self.path) or {}
        forced = bool(meta.get("forced")) and meta.get("kind") in INDEX_TYPES
        return self.build(meta["kind"] if forced else None, forced)

    def build(self, kind: str | None = None, forced: bool = False) -> VectorIndex:
        """Build from the stored embeddings (no image decoded) and make it current; a forced kind is kept."""
        version, ids, vecs = self.catalog.all_embeddings(self.dim)
        kind = kind or choose_type(len(ids), self.pq_min)
        self._index, self._version = VectorIndex.build(ids, vecs, self.dim, kind, forced,
                                                                self.device), version
        return self._index

    def _owned(self, vi: VectorIndex) -> VectorIndex:
        """A changeable copy of a mapped index: the verified file read again without mapping, else a rebuild."""
        loaded = load_index(self.path, self.dim, mapped=False, device=self.device)
        if loaded and loaded[1] == self._version:
            self._index = loaded[0]
            return self._index
        return self.build(vi.kind if vi.forced else None, vi.forced)

    def apply(self, removed: list[int], added: list[int], vecs: list[np.ndarray], version: int) -> None:
        """Mirror one committed chunk (the catalog already holds it) into the in-memory index.

        When another writer committed in between (a shared catalog: other folders indexed at the same time)
        this index no longer mirrors the catalog step by step: it is dropped, and the next `current()` (at the
        end of the run) rebuilds it once from the embeddings instead of once per chunk."""
        vi = self._index
        if vi is None or self._version != version - 1:
            self._index, self._version = None, -1
            return
        if removed and not vi.supports_remove:  # HNSW: rebuild from the committed embeddings
            self.build(vi.kind if vi.forced else None, vi.forced)
            return
        if vi.mapped:
            vi = self._owned(vi)
            if self._version != version - 1:  # rebuilt: already holds this chunk
                return
        vi.remove(np.asarray(removed, dtype=np.int64))
        if added:
            # the stored (float16) values, so a rebuild from the catalog ranks exactly the same
            vi.add(np.asarray(added, dtype=np.int64), np.stack(vecs).astype(VECTOR_DTYPE).astype(np.float32))
        self._version = version

    def retype_if_needed(self) -> None:
        """Switch flat ↔ IVF ↔ IVF-PQ when the size crossed a threshold (unless the user forced a type)."""
        vi = self.current()
        if not vi.forced and choose_type(vi.ntotal, self.pq_min) != vi.kind:
            self.build()

    def save(self) -> None:
        """Write the index (rebuilt first if `apply` dropped it) unless the file already reflects a newer
        state of the catalog: another writer's, saved after ours was made. A damaged mapped re-rank file is
        rebuilt from the catalog."""
        vi = self.current() if self._index is None else self._index
        saved = (saved_meta(self.path) or {}).get("version", -1)
        if saved > self._version and saved <= self.catalog.version():
            return
        try:
            save_index(vi, self.path, self._version)
        except DamagedVectors:
            vi = self._rebuild()
            save_index(vi, self.path, self._version)

    def sync_file(self) -> None:
        """Save the files if missing, damaged or older than the catalog (readers only rebuild in memory).

        A writer checks every block of the re-rank file here (readers check only the blocks they touch)."""
        loaded = load_index(self.path, self.dim)
        if loaded is not None and loaded[0].exact is not None:
            try:
                loaded[0].exact.verify()
            except DamagedVectors:
                with self._reload_lock:
                    self._rebuild()
                    self.save()
                return
        if loaded is None or loaded[1] != self.catalog.version():
            self.current()
            self.save()

    def search(self, query: np.ndarray, k: int, allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        vi = self.current()
        try:
            return vi.search(query[None], k, allowed)
        except DamagedVectors:  # a re-rank block failed its checksum: never ranked with, rebuilt in memory
            with self._reload_lock:
                if self._index is vi:
                    self._rebuild()
            return self.current().search(query[None], k, allowed)
