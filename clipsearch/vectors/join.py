"""The self-join behind near-duplicate search: every pair of vectors above a score, without scoring all n² pairs.

`VectorIndex.pairs_above` hands it the vectors split into cells (IVF lists) and the cells' centroids; a vector
visits a neighbouring cell only when it lies near enough to that cell's border to have a partner there.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

# Self-join (pairs_above): up to this many vectors every pair is scored (BLAS); above, an IVF partition prunes the
# pairs. Measured at 512-d on a busy 2-core machine: 0.45 s either way at 5k; at 10k 1.5 s vs 1.0 s, at 20k
# 4.4 s vs 2.2 s with a partition built for the join (bench/dupes.py for 100k and 1M).
EXACT_JOIN_MAX = 8_000
_JOIN_BLOCK = 2048  # rows and columns per score block: 16 MB of float32


@dataclass
class JoinStats:
    """What one `pairs_above` did: vectors joined, partition lists, extra list visits, vector pairs scored."""
    vectors: int = 0
    lists: int = 0
    visits: int = 0  # (vector, neighbouring list) joins beyond each vector's own list
    compared: int = 0  # inner products computed
    capped: int = 0  # vectors near more borders than max_visits (only the nearest visited: the join is not exact)
    partition: str = ""


_BORDER_SLACK = 1e-4  # float32 rounding between FAISS's list assignment and the border test: visit rather than miss


def member_test(allowed: np.ndarray | None) -> Any:
    """A function ids -> bool mask of those in `allowed` (None: no restriction)."""
    if allowed is None:
        return None
    wanted = np.unique(np.asarray(allowed, dtype=np.int64))
    if len(wanted) == 0:
        return lambda ids: np.zeros(len(ids), bool)
    top = int(wanted[-1])
    if wanted[0] >= 0 and top < 64 * len(wanted) + (1 << 20):  # dense enough for a table
        table = np.zeros(top + 1, bool)
        table[wanted] = True
        return lambda ids: (ids >= 0) & (ids <= top) & table[np.clip(ids, 0, top)]
    return lambda ids: _in_sorted(wanted, ids)


def _in_sorted(sorted_values: np.ndarray, values: np.ndarray) -> np.ndarray:
    if len(sorted_values) == 0:
        return np.zeros(len(values), bool)
    at = np.minimum(np.searchsorted(sorted_values, values), len(sorted_values) - 1)
    return sorted_values[at] == values


def _score_blocks(queries: np.ndarray, targets: np.ndarray, threshold: float, stats: JoinStats,
                  upper: bool) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(row, column, score) of every score >= threshold in queries @ targets.T, a block at a time;
    `upper` (queries is targets): each unordered pair once, no self-pairs."""
    b = _JOIN_BLOCK
    for i in range(0, len(queries), b):
        q = queries[i:i + b]
        for j in range(i if upper else 0, len(targets), b):
            scores = q @ targets[j:j + b].T
            stats.compared += scores.size
            hit = scores >= threshold
            if upper and j == i:
                hit = np.triu(hit, 1)
            rows, cols = np.nonzero(hit)
            if len(rows):
                yield i + rows, j + cols, scores[rows, cols]


def join_cells(cells: list[tuple[int, np.ndarray, np.ndarray]], centroids: np.ndarray | None, threshold: float,
                stats: JoinStats, max_visits: int | None = None) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Pairs >= threshold among the vectors of partition cells (list number, ids, vectors), each pair once."""
    stats.lists = len(cells)
    sizes = np.array([len(c[1]) for c in cells], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(sizes)])  # cell vectors numbered one after another: "positions"
    n_cells = len(cells)
    # Pass 1: which vectors lie near enough to which other cells to have a partner there.
    req_pos = np.zeros(0, np.int64)
    req_cell = np.zeros(0, np.int64)
    if n_cells > 1 and centroids is not None:
        norm2 = max(float(np.einsum("nd,nd->n", v, v).max()) for _l, _i, v in cells)
        radius = math.sqrt(max(2.0 * norm2 - 2.0 * threshold, 0.0))
        cent = np.ascontiguousarray(centroids[[c[0] for c in cells]], dtype=np.float32)
        cent2 = np.einsum("ld,ld->l", cent, cent)
        found_pos, found_cell = [], []
        for ci, (_l, _ids, vecs) in enumerate(cells):
            apart = np.sqrt(np.maximum(cent2[ci] + cent2 - 2.0 * (cent @ cent[ci]), 0.0))  # |c_l - c_j|
            for start in range(0, len(vecs), 4 * _JOIN_BLOCK):
                scores = vecs[start:start + 4 * _JOIN_BLOCK] @ cent.T
                # distance from each vector to the border with each other cell (for equal-norm centroids)
                gap = (scores[:, ci:ci + 1] - scores - _BORDER_SLACK) / np.maximum(apart, 1e-6)
                gap[:, ci] = np.inf
                near = gap <= radius
                if max_visits is not None:
                    over = near.sum(axis=1) > max_visits
                    if over.any():  # keep the nearest borders only
                        stats.capped += int(over.sum())
                        if max_visits <= 0:
                            near[over] = False
                        else:
                            kth = np.partition(gap[over], max_visits - 1, axis=1)[:, max_visits - 1]
                            near[over] &= gap[over] <= kth[:, None]
                rows, js = np.nonzero(near)
                found_pos.append(offsets[ci] + start + rows)
                found_cell.append(js)
        req_pos, req_cell = np.concatenate(found_pos), np.concatenate(found_cell).astype(np.int64)
        order = np.lexsort((req_pos, req_cell))
        req_pos, req_cell = req_pos[order], req_cell[order]
    per_cell = np.diff(np.searchsorted(req_cell, np.arange(n_cells + 1)))
    n = int(offsets[-1])
    if n_cells > 1 and int((sizes * sizes).sum() // 2 + (per_cell * sizes).sum()) > n * (n - 1) // 2:
        # so near the border that most vectors visit most lists (a low threshold): score every pair instead
        stats.partition += " (too many visits: every pair scored)"
        cells = [(0, np.concatenate([c[1] for c in cells]), np.concatenate([c[2] for c in cells]))]
        yield from join_cells(cells, None, threshold, stats)
        return
    stats.visits = len(req_pos)
    visited = np.sort(req_pos * n_cells + req_cell)  # (position, cell) visits, for seeing a pair from both sides
    bounds = np.searchsorted(req_cell, np.arange(n_cells + 1))
    # Pass 2: each cell with itself, then with the vectors of other cells that visit it.
    for cj, (_l, ids_j, vecs_j) in enumerate(cells):
        for rows, cols, scores in _score_blocks(vecs_j, vecs_j, threshold, stats, upper=True):
            yield ids_j[rows], ids_j[cols], scores
        qpos = req_pos[bounds[cj]:bounds[cj + 1]]  # ascending, so grouped by cell in cell order
        if not len(qpos):
            continue
        qcell = np.searchsorted(offsets, qpos, side="right") - 1
        src = np.unique(qcell)
        qvecs = np.concatenate([cells[c][2][qpos[qcell == c] - offsets[c]] for c in src])
        qids = np.concatenate([cells[c][1][qpos[qcell == c] - offsets[c]] for c in src])
        for rows, cols, scores in _score_blocks(qvecs, vecs_j, threshold, stats, upper=False):
            # x (cell qcell) visiting cj found y; if y also visits x's cell, the lower cell number reports it
            both = _in_sorted(visited, (offsets[cj] + cols) * n_cells + qcell[rows])
            keep = ~both | (qcell[rows] < cj)
            if keep.any():
                yield qids[rows[keep]], ids_j[cols[keep]], scores[keep]
