"""A saved flat index read without FAISS: the ids and vectors of its file as NumPy views of one read-only map.

A cold query of a small store spent ~0.1 s importing FAISS to search a few thousand vectors that one matrix
product ranks in microseconds. A flat index is written by FAISS as IndexIDMap2(IndexFlatIP), a fixed layout
(faiss/impl/index_write.cpp):

    "IxM2" header  "IxFI" header  uint64 n·d  float32[n·d]  uint64 n  int64[n]
    header = int32 d, int64 ntotal, int64 dummy, int64 dummy, uint8 is_trained, int32 metric (1: inner product)

`read_flat` checks every field and that the file ends where the layout says (None otherwise, and FAISS reads the
file as before); tests check it against the files FAISS writes. The caller has already checked the file's CRC
against its sidecar (`store.load_index`).
"""

from __future__ import annotations

import mmap
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

_HEADER = struct.Struct("<iqqqBi")  # d, ntotal, two dummies, is_trained, metric_type
METRIC_INNER_PRODUCT = 0  # faiss.METRIC_INNER_PRODUCT


@dataclass(frozen=True)
class FlatFile:
    ids: np.ndarray  # int64 (n,): the external id of each position
    vectors: np.ndarray  # float32 (n, d), read-only, in position order
    inode: tuple[int, int]  # (st_dev, st_ino) of the file mapped


def _header(buf: mmap.mmap, at: int, fourcc: bytes, dim: int, count: int) -> int | None:
    if buf[at:at + 4] != fourcc or len(buf) < at + 4 + _HEADER.size:
        return None
    d, ntotal, _a, _b, trained, metric = _HEADER.unpack_from(buf, at + 4)
    if d != dim or ntotal != count or trained != 1 or metric != METRIC_INNER_PRODUCT:
        return None
    return at + 4 + _HEADER.size


def read_flat(path: Path, dim: int, count: int) -> FlatFile | None:
    """The ids and vectors of a flat index file holding `count` vectors of `dim`, mapped; None if it is not one."""
    try:
        with open(path, "rb") as f:
            stat = os.fstat(f.fileno())
            if stat.st_size == 0:
                return None
            buf = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    except (OSError, ValueError):
        return None
    at = _header(buf, 0, b"IxM2", dim, count)
    at = None if at is None else _header(buf, at, b"IxFI", dim, count)
    if at is None or len(buf) < at + 8:
        return None
    (floats,) = struct.unpack_from("<Q", buf, at)
    vec_at = at + 8
    ids_len_at = vec_at + 4 * floats
    if floats != count * dim or len(buf) < ids_len_at + 8:
        return None
    (n,) = struct.unpack_from("<Q", buf, ids_len_at)
    if n != count or len(buf) != ids_len_at + 8 + 8 * n:
        return None
    vectors = np.frombuffer(buf, dtype="<f4", count=count * dim, offset=vec_at).reshape(count, dim)
    ids = np.frombuffer(buf, dtype="<i8", count=count, offset=ids_len_at + 8)
    return FlatFile(ids, vectors, (stat.st_dev, stat.st_ino))


def gpu_visible() -> bool:
    """Whether this machine may have a GPU FAISS could use (an NVIDIA driver is loaded): then FAISS decides."""
    return os.path.exists("/proc/driver/nvidia/version") or os.path.exists("/dev/nvidia0")


def numpy_may_search(device: str | None) -> bool:
    """Whether a flat index for `device` is searched on the CPU for sure, so NumPy may do it: FAISS follows a
    CUDA (or the default) device only onto a GPU it sees (`gpu.gpu_number`), and it sees none without a driver."""
    return (device is not None and device.startswith("cpu")) or not gpu_visible()
