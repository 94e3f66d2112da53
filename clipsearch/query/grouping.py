"""Grouping pairs into connected components (vectorised union-find): what the `same` and `similar` duplicate
levels and the scale bench share, below both so neither imports the other."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

_REDUCE_EVERY = 1 << 20  # union-find edges kept before they are reduced to a spanning forest again


def components(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Union-find over the edges (a[i], b[i]), vectorised: the distinct nodes, and for each the smallest node of
    its connected component."""
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    nodes, inverse = np.unique(np.concatenate([a, b]), return_inverse=True)
    ea, eb = inverse[:len(a)], inverse[len(a):]
    parent = np.arange(len(nodes))  # invariant: parent[x] <= x, and every node points straight at its root
    while True:
        ra, rb = parent[ea], parent[eb]
        differ = ra != rb
        if not differ.any():
            return nodes, nodes[parent]
        lo, hi = np.minimum(ra[differ], rb[differ]), np.maximum(ra[differ], rb[differ])
        np.minimum.at(parent, hi, lo)  # hook each larger root under a smaller one
        while True:  # pointer jumping until every node points at a root again
            up = parent[parent]
            if np.array_equal(up, parent):
                break
            parent = up


def connected_groups(pairs: Iterable[tuple[np.ndarray, np.ndarray, Any]]) -> list[np.ndarray]:
    """Connected components (each of 2 or more ids) of the edges streamed as (ids_a, ids_b, ...) blocks.

    Memory stays bounded by the number of ids in pairs, not of pairs: every block is reduced to a spanning
    forest (edges id -> smallest id of its component) as it arrives.
    """
    forest_a: list[np.ndarray] = []
    forest_b: list[np.ndarray] = []
    held = 0
    for a, b, *_rest in pairs:
        if len(a) == 0:
            continue
        nodes, labels = components(a, b)
        keep = nodes != labels
        forest_a.append(nodes[keep])
        forest_b.append(labels[keep])
        held += int(keep.sum())
        if held > _REDUCE_EVERY:
            nodes, labels = components(np.concatenate(forest_a), np.concatenate(forest_b))
            keep = nodes != labels
            forest_a, forest_b, held = [nodes[keep]], [labels[keep]], int(keep.sum())
    if not forest_a:
        return []
    nodes, labels = components(np.concatenate(forest_a), np.concatenate(forest_b))
    order = np.argsort(labels, kind="stable")
    nodes, labels = nodes[order], labels[order]
    starts = np.flatnonzero(np.r_[True, labels[1:] != labels[:-1]])
    return [g for g in np.split(nodes, starts[1:]) if len(g) >= 2]
