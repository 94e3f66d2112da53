"""Duplicate images: byte-identical files by content digest, near-identical pictures by embedding similarity.

Nothing here deletes or moves a file: it only reports groups and suggests which image of each to keep.

- Exact duplicates: images sharing the content digest the catalog stored when it read them. No vectors.
- Near duplicates: every pair of images whose embeddings have cosine >= `threshold`, from a self-join of the
  store's vector index (`VectorIndex.pairs_above`: the index's IVF lists prune the pairs, so 1M images take
  a minute or two on 2 cores, not the hours of comparing every pair). Pairs are grouped with union-find; then, because
  similarity is not transitive (A~B and B~C does not make A~C), each group is checked against its keeper:
  members below the threshold to the keeper leave it and are grouped again among themselves the same way.
  Every member of a reported group is therefore at least `threshold` similar to the group's keeper.

The keeper of a group is the image with the most pixels, then the oldest (file modification time), then the
first by path. It is handed a catalog and a vector store, never the Store.
"""

from __future__ import annotations

import datetime as dt
import math
import numbers
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from clipsearch.catalog.photo_filter import PhotoFilter
from clipsearch.catalog.reads import CatalogReads
from clipsearch.catalog.records import ImageRecord
from clipsearch.errors import ClipsearchError
from clipsearch.indexing.scan import canonical
from clipsearch.query.engine import check_filters

if TYPE_CHECKING:  # pragma: no cover
    from clipsearch.vectors.index import VectorIndex
    from clipsearch.vectors.join import JoinStats
    from clipsearch.vectors.store import VectorStore

DEFAULT_THRESHOLD = 0.99
# A vector near several IVF list borders is also joined with the lists behind its MAX_VISITS nearest borders
# (the join is exact while no vector is near more; JoinStats.capped counts those that were). On clustered 512-d
# data with 1% injected copies, 1 already found every injected pair at 100k; 4 found every one at 100k and 1M,
# and at 100k every pair above 0.99 that brute force found (bench/dupes.py).
MAX_VISITS = 4
_REDUCE_EVERY = 1 << 20  # union-find edges kept before they are reduced to a spanning forest again


@dataclass(frozen=True)
class DuplicateImage:
    id: int
    path: str
    size: int
    width: int | None
    height: int | None
    modified: str  # file modification time, local, ISO 8601
    keeper: bool
    similarity: float  # cosine similarity to the group's keeper (1.0 for the keeper and for byte copies)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class DuplicateGroup:
    """Images alike enough to be one picture; `images` starts with the suggested keeper."""
    keeper: int  # image id
    similarity: float  # the lowest similarity of a member to the keeper
    images: list[DuplicateImage]

    @property
    def extra(self) -> list[DuplicateImage]:
        """The images other than the keeper: the ones a user might remove."""
        return [im for im in self.images if not im.keeper]

    @property
    def reclaimable(self) -> int:
        """Bytes the non-keepers take."""
        return sum(im.size for im in self.extra)

    def to_dict(self) -> dict[str, Any]:
        return {"keeper": self.keeper, "similarity": self.similarity, "images": [im.to_dict() for im in self.images]}


class Duplicates(list):
    """The groups, biggest first, plus `notes` (e.g. an --under folder with no images) and join `stats`."""

    def __init__(self, groups: Iterable[DuplicateGroup] = (), notes: Iterable[str] = (),
                 stats: JoinStats | None = None) -> None:
        super().__init__(groups)
        self.notes = list(notes)
        self.stats = stats


def check_threshold(threshold: Any) -> float:
    """The threshold as a float in (0, 1], else an error naming the parameter."""
    ok = isinstance(threshold, numbers.Real) and not isinstance(threshold, bool)
    value = float(threshold) if ok else math.nan
    if not (0.0 < value <= 1.0):
        raise ClipsearchError(f"threshold must be a cosine similarity in (0, 1], got {threshold!r}",
                              "0.99 (the default) finds re-encoded and resized copies; lower values also find "
                              "edits and crops, then different shots of one scene", param="threshold")
    return value


def keeper_key(record: ImageRecord) -> tuple:
    """Sort key: the best keeper first (most pixels, then oldest, then first by path)."""
    pixels = (record.width or 0) * (record.height or 0)
    return (-pixels, record.mtime_ns, record.path)


# --- grouping ----------------------------------------------------------------------------------------------

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


def split_by_keeper(ids: Sequence[int], vectors: np.ndarray, keys: Sequence[Any],
                    threshold: float) -> list[tuple[list[int], list[float]]]:
    """Split one connected group so that every member is >= threshold similar to its group's keeper.

    The best keeper (smallest key) takes every member at least `threshold` similar to it; the rest are split
    the same way among themselves; members left alone are dropped. Returns (ids, similarity to the keeper)
    per group, keeper first, the others in key order.
    """
    order = sorted(range(len(ids)), key=lambda i: keys[i])
    remaining = np.asarray(order, dtype=np.int64)
    vectors = np.asarray(vectors, dtype=np.float32)
    out = []
    while len(remaining) >= 2:
        sims = vectors[remaining] @ vectors[remaining[0]]
        take = sims >= threshold
        take[0] = True
        if take.sum() >= 2:
            members = remaining[take]
            member_sims = np.minimum(sims[take], 1.0)
            member_sims[0] = 1.0
            out.append(([ids[i] for i in members], [float(s) for s in member_sims]))
        remaining = remaining[~take]
    return out


def near_groups(index: VectorIndex, threshold: float, vectors_of: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]],
                keys_of: Callable[[np.ndarray], dict[int, Any]], allowed: np.ndarray | None = None,
                stats: JoinStats | None = None,
                max_visits: int | None = MAX_VISITS) -> list[tuple[list[int], list[float]]]:
    """Near-duplicate groups over a vector index: (ids keeper first, similarity to the keeper) per group.

    `vectors_of(ids)` gives (ids, vectors) of the members of connected groups (the stored embeddings), and
    `keys_of(ids)` a keeper sort key per id (see keeper_key); ids without a key are left out.
    """
    from clipsearch.vectors.join import JoinStats

    stats = stats if stats is not None else JoinStats()
    groups = connected_groups(index.pairs_above(threshold, allowed, stats, max_visits))
    if not groups:
        return []
    members = np.concatenate(groups)
    found, vecs = vectors_of(members)
    row_of = {int(i): r for r, i in enumerate(found.tolist())}
    keys = keys_of(members)
    out = []
    for group in groups:
        ids = [int(i) for i in group if int(i) in row_of and int(i) in keys]
        if len(ids) < 2:
            continue
        out.extend(split_by_keeper(ids, vecs[[row_of[i] for i in ids]], [keys[i] for i in ids], threshold))
    return out


# --- the verb ----------------------------------------------------------------------------------------------

def find_duplicates(catalog: CatalogReads, vectors: VectorStore | None, threshold: float = DEFAULT_THRESHOLD,
                    exact: bool = False, under: Sequence[str] | None = None,
                    photo: PhotoFilter | None = None) -> Duplicates:
    """Duplicate groups, biggest first: byte-identical files (`exact`, no vectors needed) or near duplicates.

    `under` (and `photo`: capture time, camera, place) restricts both members of every pair; images under a
    root that no longer exists (deleted or unmounted) are left out, as from query results.
    """
    threshold = check_threshold(threshold)
    check_filters("under", under)
    under = [canonical(u) for u in under] if under else None
    notes = [f"no indexed images under {u}" for u in under or () if catalog.count_under(u) == 0]
    hidden = [r["path"] for r in catalog.roots() if not os.path.isdir(r["path"])]  # vanished roots
    if exact:
        digest_groups = catalog.duplicate_digests(under, hidden_under=hidden)
        if photo:
            kept = set(catalog.filter_ids(under, hidden_under=hidden, stills_only=True, photo=photo).tolist())
            digest_groups = [g for g in ([r for r in records if r.id in kept] for records in digest_groups)
                             if len(g) > 1]
        groups = [_group([(r, 1.0) for r in sorted(records, key=keeper_key)]) for records in digest_groups]
        return Duplicates(_biggest_first(groups), notes)
    if vectors is None:
        raise ClipsearchError("near duplicates need the store's vectors", "ask for exact duplicates instead")
    from clipsearch.vectors.join import JoinStats

    stills_only = catalog.has_videos()  # a video's frames are moments of one file, not duplicates
    filtered = bool(under or hidden or stills_only or photo)
    allowed = catalog.filter_ids(under, hidden_under=hidden, stills_only=stills_only, photo=photo or None) \
        if filtered else None
    stats = JoinStats()
    records: dict[int, ImageRecord] = {}

    def keys_of(ids: np.ndarray) -> dict[int, Any]:
        records.update(catalog.images([int(i) for i in ids]))
        return {i: keeper_key(r) for i, r in records.items()}

    def vectors_of(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return catalog.embeddings([int(i) for i in ids], vectors.dim)

    found = near_groups(vectors.current(), threshold, vectors_of, keys_of, allowed, stats)
    groups = [_group([(records[i], s) for i, s in zip(ids, sims, strict=False)]) for ids, sims in found]
    return Duplicates(_biggest_first(groups), notes, stats)


def _group(members: list[tuple[ImageRecord, float]]) -> DuplicateGroup:
    """A group from (record, similarity to the keeper), keeper first."""
    images = [DuplicateImage(r.id, r.path, r.size, r.width, r.height, _modified(r.mtime_ns), i == 0, round(s, 6))
              for i, (r, s) in enumerate(members)]
    return DuplicateGroup(images[0].id, min(im.similarity for im in images), images)


def _modified(mtime_ns: int) -> str:
    return dt.datetime.fromtimestamp(mtime_ns / 1e9).isoformat(timespec="seconds")


def _biggest_first(groups: list[DuplicateGroup]) -> list[DuplicateGroup]:
    return sorted(groups, key=lambda g: (-len(g.images), -g.reclaimable, g.images[0].path))
