"""The re-rank file: every stored embedding as float16, in id order, memory-mapped and never read whole.

An IVF-PQ index ranks by 64-byte codes; its best candidates are then scored exactly against these vectors, so
only the rows a query touches are paged in (a few hundred KB), not the n x d x 2 bytes of the file.

Layout (little-endian): a 64-byte header (magic, format, dim, count, catalog version, rows per block), the ids
(int64, ascending), the vectors (float16, count x dim, same order), one CRC-32 per block of rows.

Trust: the sidecar of the FAISS file records this file's size and the CRC-32 of its header, ids and block table,
checked on open (8.5 MB at 1M vectors). A block of vectors is checked against its CRC the first time a query
touches it, so a cold query reads only what it uses and a damaged block is never used: `DamagedVectors` is raised
and the vector store rebuilds from the catalog.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from clipsearch.errors import ClipsearchError

MAGIC = b"CSEXACT\x00"
FORMAT = 1
_HEADER = struct.Struct("<8sIIqqI28x")  # magic, format, dim, count, catalog version, rows per block
BLOCK_BYTES = 8192  # rows per CRC block: ~8 KB (8 rows at 512-d): what a query reads per candidate anyway


class DamagedVectors(ClipsearchError):
    """The re-rank file disagrees with its checksums or with the index; the vector store rebuilds."""

    def __init__(self, message: str) -> None:
        super().__init__(f"the re-rank vectors are damaged: {message}",
                         "run an index of the store: it rebuilds the vectors from the stored embeddings")


def _block_rows(dim: int) -> int:
    return max(1, BLOCK_BYTES // (2 * dim))


class ExactVectors:
    """float16 vectors by id: a mapped file (or arrays, before the first save) plus the changes since.

    Adds and removes after loading live in memory (`_added`, `_removed`) until `write` merges them into a new file.
    """

    def __init__(self, dim: int, ids: np.ndarray, vecs: np.ndarray, crcs: np.ndarray | None = None,
                 path: Path | None = None, meta: dict[str, Any] | None = None) -> None:
        self.dim = dim
        self.ids = ids  # ascending int64
        self.vecs = vecs  # float16 (count, dim), row i belongs to ids[i]
        self.crcs = crcs  # per block; None for arrays held in memory
        self.path = path
        self.meta = meta or {}
        self.block = _block_rows(dim)
        self._checked = np.zeros(0 if crcs is None else len(crcs), bool)
        self._added: dict[int, np.ndarray] = {}
        self._removed: set[int] = set()

    @classmethod
    def from_arrays(cls, ids: np.ndarray, vecs: np.ndarray, dim: int) -> ExactVectors:
        ids = np.asarray(ids, dtype=np.int64)
        order = np.argsort(ids, kind="stable")
        return cls(dim, ids[order], np.ascontiguousarray(np.asarray(vecs)[order], dtype=np.float16))

    @property
    def dirty(self) -> bool:
        return bool(self._added or self._removed)

    @property
    def mapped(self) -> bool:
        return self.path is not None

    def __len__(self) -> int:
        return len(self.ids) + len(self._added) - sum(1 for i in self._removed if self._in_base(i))

    def _in_base(self, i: int) -> bool:
        at = int(np.searchsorted(self.ids, i))
        return at < len(self.ids) and int(self.ids[at]) == i

    # -- changes ------------------------------------------------------------------------------------------

    def add(self, ids: np.ndarray, vecs: np.ndarray) -> None:
        for i, v in zip(np.asarray(ids, dtype=np.int64).tolist(), np.asarray(vecs, dtype=np.float16), strict=False):
            self._added[i] = v.copy()
            self._removed.discard(i)

    def remove(self, ids: np.ndarray) -> None:
        for i in np.asarray(ids, dtype=np.int64).tolist():
            self._added.pop(i, None)
            self._removed.add(i)

    # -- reading ------------------------------------------------------------------------------------------

    def get(self, ids: np.ndarray) -> np.ndarray:
        """float32 vectors of `ids` (all must be present: the index holds nothing else, else DamagedVectors)."""
        ids = np.asarray(ids, dtype=np.int64).ravel()
        out = np.empty((len(ids), self.dim), np.float32)
        todo = np.ones(len(ids), bool)
        if self._added or self._removed:
            for j, i in enumerate(ids.tolist()):
                v = self._added.get(i)
                if v is not None:
                    out[j] = v
                    todo[j] = False
                elif i in self._removed:
                    raise DamagedVectors(f"id {i} was removed but is still ranked")
        want = ids[todo]
        if len(want):
            if len(self.ids) == 0:
                raise DamagedVectors("the re-rank vectors are empty")
            pos = np.minimum(np.searchsorted(self.ids, want), len(self.ids) - 1)
            if not np.array_equal(np.asarray(self.ids[pos]), want):
                raise DamagedVectors("the index holds ids the re-rank file lacks")
            self._check_blocks(pos)
            out[todo] = self.vecs[pos]
        return out

    def verify(self) -> None:
        """Check every block now (a writer's full check; reads the whole file): DamagedVectors if one fails."""
        if self.crcs is not None:
            for b in np.flatnonzero(~self._checked).tolist():
                self._check_block(b)

    def _check_blocks(self, pos: np.ndarray) -> None:
        if self.crcs is None:
            return
        blocks = np.unique(pos // self.block)
        for b in blocks[~self._checked[blocks]].tolist():
            self._check_block(b)

    def _check_block(self, b: int) -> None:
        assert self.crcs is not None
        if zlib.crc32(self.vecs[b * self.block:(b + 1) * self.block].data) != int(self.crcs[b]):
            raise DamagedVectors(f"block {b} of the re-rank file fails its checksum")
        self._checked[b] = True  # benign race between threads: both compute the same answer

    # -- the file -----------------------------------------------------------------------------------------

    def write(self, path: Path, version: int) -> dict[str, Any]:
        """Write base + changes as a new file at `path` (streamed, atomic); returns what the sidecar records."""
        from clipsearch.fsutil import atomic_write

        self.verify()  # never carry a damaged block into a file with fresh checksums
        added = np.fromiter(self._added.keys(), np.int64, len(self._added))
        drop = np.fromiter(self._removed | set(self._added), np.int64)
        keep = np.flatnonzero(~np.isin(np.asarray(self.ids), drop)) if len(drop) else np.arange(len(self.ids))
        all_ids = np.concatenate([np.asarray(self.ids)[keep], added])
        src = np.concatenate([keep, -1 - np.arange(len(added))])  # >= 0: base row; < 0: -1 - index into `added`
        order = np.argsort(all_ids, kind="stable")
        all_ids, src = all_ids[order], src[order]
        added_vecs = np.stack([self._added[i] for i in added.tolist()]) if len(added) else None
        n, block = len(all_ids), self.block
        header = _HEADER.pack(MAGIC, FORMAT, self.dim, n, version, block)
        crcs = np.zeros((n + block - 1) // block, np.uint32)
        chunk = block * max(1, (1 << 24) // (block * 2 * self.dim))  # ~16 MB of rows at a time, whole blocks

        def fill(tmp: Path) -> None:
            with open(tmp, "wb") as f:
                f.write(header)
                f.write(all_ids.astype("<i8").tobytes())
                for start in range(0, n, chunk):
                    s = src[start:start + chunk]
                    rows = np.empty((len(s), self.dim), np.float16)
                    base = s >= 0
                    rows[base] = self.vecs[s[base]]
                    if added_vecs is not None and (~base).any():
                        rows[~base] = added_vecs[-1 - s[~base]]
                    for b in range(0, len(rows), block):
                        crcs[(start + b) // block] = zlib.crc32(rows[b:b + block].data)
                    f.write(rows.tobytes())
                f.write(crcs.astype("<u4").tobytes())

        atomic_write(path, fill)
        crc = zlib.crc32(crcs.astype("<u4").tobytes(), zlib.crc32(all_ids.astype("<i8").tobytes(), zlib.crc32(header)))
        return {"bytes": _HEADER.size + n * 8 + n * self.dim * 2 + len(crcs) * 4, "count": n, "crc32": crc,
                "version": version}

    @classmethod
    def open(cls, path: Path, dim: int, meta: dict[str, Any]) -> ExactVectors | None:
        """The mapped file if it is the one `meta` (the sidecar's record, from `write`) describes, else None."""
        try:
            raw = np.memmap(path, dtype=np.uint8, mode="r")
        except (OSError, ValueError):
            return None
        if len(raw) != meta.get("bytes") or len(raw) < _HEADER.size:
            return None
        magic, fmt, fdim, n, fversion, block = _HEADER.unpack(bytes(raw[:_HEADER.size]))
        nblocks = (n + block - 1) // block if block else -1
        if (magic, fmt, fdim, fversion, block) != (MAGIC, FORMAT, dim, meta.get("version"), _block_rows(dim)) or \
                n != meta.get("count") or len(raw) != _HEADER.size + n * (8 + 2 * dim) + 4 * nblocks:
            return None
        ids_end = _HEADER.size + 8 * n
        vecs_end = ids_end + 2 * dim * n
        ids, table = raw[_HEADER.size:ids_end], raw[vecs_end:]
        if zlib.crc32(table.data, zlib.crc32(ids.data, zlib.crc32(raw[:_HEADER.size].data))) != meta.get("crc32"):
            return None
        return cls(dim, ids.view("<i8"), raw[ids_end:vecs_end].view("<f2").reshape(n, dim), table.view("<u4"),
                   Path(path), dict(meta))
