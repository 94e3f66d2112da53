"""Finding stored ids inside a FAISS index (internal positions or inverted lists), the bitmap layout of FAISS id
selectors, and a row-wise top-k padded the way FAISS pads its results."""

from __future__ import annotations

import numpy as np

PAD_SCORE = float(np.finfo(np.float32).min)  # what FAISS puts in empty result slots of an inner-product search


class IdLookup:
    """Maps external ids to a location (internal position or list number): a table when ids are dense enough."""

    def __init__(self, ids: np.ndarray, locs: np.ndarray, keep_ids: bool = False) -> None:
        self.members = ids  # every id in the index; flat/HNSW (keep_ids): the id of each internal position
        self.positional = keep_ids
        self.table: np.ndarray | None = None
        if len(ids) and ids.min() >= 0 and ids.max() < 4 * len(ids) + (1 << 20):
            self.table = np.full(int(ids.max()) + 1, -1, locs.dtype)
            self.table[ids] = locs
        else:
            order = np.argsort(ids, kind="stable")
            self.ids, self.locs = ids[order], locs[order]

    @property
    def position_ids(self) -> np.ndarray:
        """Flat/HNSW: the external id of each internal position."""
        assert self.positional, "a lookup of list numbers (IVF) has no positions"
        return self.members

    def locate(self, wanted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(ids, locations) of the wanted ids that are in the index, in `wanted` order."""
        if self.table is not None:
            ok = (wanted >= 0) & (wanted < len(self.table))
            locs = self.table[np.where(ok, wanted, 0)]
            ok &= locs >= 0
            return wanted[ok], locs[ok]
        if len(self.ids) == 0:
            return wanted[:0], self.locs[:0]
        at = np.minimum(np.searchsorted(self.ids, wanted), len(self.ids) - 1)
        ok = self.ids[at] == wanted
        return wanted[ok], self.locs[at[ok]]


def bitmap(members: np.ndarray, size: int) -> np.ndarray:
    """FAISS IDSelectorBitmap layout: bit i of byte i >> 3 (little bit order) set for each member."""
    mask = np.zeros(size, bool)
    mask[members] = True
    return np.packbits(mask, bitorder="little")


def top_k(scores: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise top-k of a (queries, candidates) score matrix, padded like FAISS when there are fewer than k."""
    nq, m = scores.shape
    out_scores = np.full((nq, k), PAD_SCORE, np.float32)
    out_ids = np.full((nq, k), -1, np.int64)
    if m == 0:
        return out_scores, out_ids
    take = min(k, m)
    part = np.argpartition(-scores, take - 1, axis=1)[:, :take] if take < m else np.broadcast_to(np.arange(m), (nq, m))
    part_scores = np.take_along_axis(scores, part, axis=1)
    order = np.argsort(-part_scores, axis=1, kind="stable")
    out_scores[:, :take] = np.take_along_axis(part_scores, order, axis=1)
    out_ids[:, :take] = ids[np.take_along_axis(part, order, axis=1)]
    return out_scores, out_ids
