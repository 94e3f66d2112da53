"""The vector store: the FAISS index of a store, its file, and keeping both true to the catalog.

The index is derived from the catalog's embeddings. Its file is trusted only when its sidecar says it
reflects the catalog's current version and its CRC-32 matches (a file overwritten in place, even with the
same length, is caught); otherwise the index is rebuilt from the embeddings, no image decoded.
"""

from __future__ import annotations

import json
import threading
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .catalog_layout import VECTOR_DTYPE
from .fsutil import atomic_write, atomic_write_text
from .vectors import VectorIndex, choose_type, import_faiss, ivf_nlist

if TYPE_CHECKING:  # pragma: no cover
    from .catalog import Catalog

FAISS_FILE = "vectors.faiss"


def _sidecar(path: Path) -> Path:
    return path.with_suffix(".json")


def saved_meta(path: Path) -> dict[str, Any] | None:
    """The sidecar of a saved index (version, kind, count, dim, forced, crc32), or None."""
    try:
        meta = json.loads(_sidecar(path).read_text())
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) else None


def load_index(path: Path, dim: int) -> tuple[VectorIndex, int] | None:
    """The saved index and the catalog version it reflects; None if missing, damaged or not this store's."""
    meta = saved_meta(path)
    try:
        data = path.read_bytes()
    except OSError:
        return None
    if not meta or meta.get("crc32") != zlib.crc32(data) or meta.get("bytes") != len(data) or meta.get("dim") != dim:
        return None
    try:
        index = import_faiss().deserialize_index(np.frombuffer(data, dtype=np.uint8))
    except (RuntimeError, ValueError):
        return None
    if index.d != dim or index.ntotal != meta.get("count"):
        return None
    return VectorIndex(dim, str(meta["kind"]), index, bool(meta.get("forced"))), int(meta["version"])


def save_index(vi: VectorIndex, path: Path, version: int) -> None:
    data = import_faiss().serialize_index(vi.index).tobytes()
    atomic_write(path, lambda tmp: tmp.write_bytes(data))
    atomic_write_text(_sidecar(path), json.dumps({
        "version": version, "kind": vi.kind, "count": vi.ntotal, "dim": vi.dim, "forced": vi.forced,
        "bytes": len(data), "crc32": zlib.crc32(data)}))


def why_not(kind: str, n: int) -> str:
    """Why a build of `kind` over `n` vectors gave another type (VectorIndex.build falls back to exact)."""
    if kind == "ivf":
        need = ivf_nlist(n) * 8
        return (f"{n} vectors are too few to train an IVF index ({need} needed); built an exact (flat) index, "
                "which is also faster at this size")
    return f"built another index type than {kind} for {n} vectors"


class VectorStore:
    """The in-memory FAISS index of one store, mirrored from the catalog and saved beside it."""

    def __init__(self, folder: Path, catalog: "Catalog", dim: int) -> None:
        self.path = Path(folder) / FAISS_FILE
        self.catalog = catalog
        self.dim = dim
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
        loaded = load_index(self.path, self.dim)
        if loaded and loaded[1] == version:
            self._index, self._version = loaded
            return self._index
        meta = saved_meta(self.path) or {}
        forced = bool(meta.get("forced")) and meta.get("kind") in ("flat", "ivf", "hnsw")
        return self.build(meta["kind"] if forced else None, forced)

    def build(self, kind: str | None = None, forced: bool = False) -> VectorIndex:
        """Build from the stored embeddings (no image decoded) and make it current; a forced kind is kept."""
        version, ids, vecs = self.catalog.all_embeddings(self.dim)
        self._index, self._version = VectorIndex.build(ids, vecs, self.dim, kind, forced), version
        return self._index

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
        vi.remove(np.asarray(removed, dtype=np.int64))
        if added:
            # the stored (float16) values, so a rebuild from the catalog ranks exactly the same
            vi.add(np.asarray(added, dtype=np.int64), np.stack(vecs).astype(VECTOR_DTYPE).astype(np.float32))
        self._version = version

    def retype_if_needed(self) -> None:
        """Switch flat ↔ IVF when the collection crossed the size threshold (unless the user forced a type)."""
        vi = self.current()
        if not vi.forced and choose_type(vi.ntotal) != vi.kind:
            self.build()

    def save(self) -> None:
        """Write the index (rebuilt first if `apply` dropped it) unless the file already reflects a newer
        state of the catalog: another writer's, saved after ours was made."""
        vi = self.current() if self._index is None else self._index
        saved = (saved_meta(self.path) or {}).get("version", -1)
        if saved > self._version and saved <= self.catalog.version():
            return
        save_index(vi, self.path, self._version)

    def sync_file(self) -> None:
        """Save the file if it is missing, damaged or older than the catalog (readers only rebuild in memory)."""
        loaded = load_index(self.path, self.dim)
        if loaded is None or loaded[1] != self.catalog.version():
            self.current()
            self.save()

    def search(self, query: np.ndarray, k: int, allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        return self.current().search(query[None], k, allowed)
