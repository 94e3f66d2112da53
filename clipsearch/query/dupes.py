"""Duplicate images at three levels; nothing here deletes or moves a file: it reports groups and suggests which
image of each to keep (`query/keeper.py`: most pixels, least compressed, original format, oldest; and says why).

- exact: byte-identical files, by the content digest the catalog stored when it read them. No vectors.
- same (the default): the same picture, whatever the model: perceptual hashes (media/phash.py) within
  SAME_DISTANCE bits, found by multi-index hashing (`vectors/hamming.py`, no pairwise loop), each member
  confirmed by the embedding (cosine >= SAME_CONFIRM to the keeper) where both images have one. Finds resized,
  recompressed, converted and lightly (centrally) cropped copies, also with a small offline model.
- similar: near in the embedding space, cosine >= `threshold`, from a self-join of the store's vector index
  (`VectorIndex.pairs_above`: the index's IVF lists prune the pairs, so 1M images take a minute or two on 2
  cores, not the hours of comparing every pair). Bursts, edits, re-framings — and what the model sees as alike.

Pairs are grouped with union-find; then, because likeness is not transitive (A~B and B~C does not make A~C),
each group is checked against its keeper: members that fail the level's test against the keeper leave it and
are grouped again among themselves the same way. It is handed a catalog and a vector store, never the Store.
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
from clipsearch.fsutil import canonical
from clipsearch.query.engine import check_filters
from clipsearch.query.grouping import connected_groups
from clipsearch.query.keeper import keeper_key, original_format, rank, why
from clipsearch.query.same_picture import SAME_DISTANCE, same_groups

if TYPE_CHECKING:  # pragma: no cover
    from clipsearch.vectors.index import VectorIndex
    from clipsearch.vectors.join import JoinStats
    from clipsearch.vectors.store import VectorStore

LEVELS = ("exact", "same", "similar")
DEFAULT_LEVEL = "same"
DEFAULT_THRESHOLD = 0.99
# "same": the embedding's confirmation of a hash match (the distance is same_picture.SAME_DISTANCE).
# The embedding's veto: pictures whose hashes collide but that the model sees as unrelated (flat, nearly uniform
# images hash to noise) are not "same". Only a veto, set low: offline-mini puts skimage's rocket and its
# half-size q70 copy at 0.75 while two different photos (moon, Hubble field) reach 0.88 — a cosine cannot tell
# copies from look-alikes with a small model, which is why this level stands on the hashes.
SAME_CONFIRM = 0.50
# A vector near several IVF list borders is also joined with the lists behind its MAX_VISITS nearest borders
# (the join is exact while no vector is near more; JoinStats.capped counts those that were). On clustered 512-d
# data with 1% injected copies, 1 already found every injected pair at 100k; 4 found every one at 100k and 1M,
# and at 100k every pair above 0.99 that brute force found (bench/dupes.py).
MAX_VISITS = 4


@dataclass(frozen=True)
class DuplicateImage:
    id: int
    path: str
    size: int
    width: int | None
    height: int | None
    format: str | None
    modified: str  # file modification time, local, ISO 8601
    keeper: bool
    similarity: float | None  # cosine similarity to the keeper (1.0 for the keeper; None without embeddings)
    distance: int | None = None  # "same": Hamming distance of the perceptual hashes to the keeper's (of 64)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class DuplicateGroup:
    """Images alike enough to be one picture; `images` starts with the suggested keeper."""
    keeper: int  # image id
    similarity: float | None  # the lowest similarity of a member to the keeper (None: not measured)
    images: list[DuplicateImage]
    reason: str = ""  # why the keeper was chosen (query/keeper.py's rule, the step that decided)
    level: str = "similar"

    @property
    def extra(self) -> list[DuplicateImage]:
        """The images other than the keeper: the ones a user might remove."""
        return [im for im in self.images if not im.keeper]

    @property
    def reclaimable(self) -> int:
        """Bytes the non-keepers take."""
        return sum(im.size for im in self.extra)

    def to_dict(self) -> dict[str, Any]:
        return {"keeper": self.keeper, "level": self.level, "reason": self.reason, "similarity": self.similarity,
                "distance": max((im.distance or 0 for im in self.images), default=0)
                if self.level == "same" else None,
                "images": [im.to_dict() for im in self.images]}


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


def check_level(level: Any) -> str:
    if level not in LEVELS:
        raise ClipsearchError(f"unknown duplicate level {level!r}",
                              "exact (identical bytes), same (the same picture resized, recompressed, converted or "
                              "lightly cropped; the default) or similar (near in the model's eyes: bursts, edits)",
                              param="level")
    return str(level)


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
                stats: JoinStats | None = None, max_visits: int | None = MAX_VISITS,
                group_keys: Callable[[list[int]], list[Any]] | None = None) -> list[tuple[list[int], list[float]]]:
    """Near-duplicate groups over a vector index: (ids keeper first, similarity to the keeper) per group.

    `vectors_of(ids)` gives (ids, vectors) of the members of connected groups (the stored embeddings), and
    `keys_of(ids)` a keeper sort key per id (see keeper.keeper_key); ids without a key are left out.
    `group_keys(ids)`, when given, replaces those keys within each connected group (a rule that looks at the
    whole group, such as its original format).
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
        group_order = group_keys(ids) if group_keys is not None else [keys[i] for i in ids]
        out.extend(split_by_keeper(ids, vecs[[row_of[i] for i in ids]], group_order, threshold))
    return out


# --- the verb ----------------------------------------------------------------------------------------------

def find_duplicates(catalog: CatalogReads, vectors: VectorStore | None, level: str = DEFAULT_LEVEL,
                    threshold: float | None = None, under: Sequence[str] | None = None,
                    photo: PhotoFilter | None = None) -> Duplicates:
    """Duplicate groups at `level` (exact, same, similar; see the module), biggest first.

    `threshold` is the cosine of the similar level (default DEFAULT_THRESHOLD). `under` restricts both members
    of every pair to those folders; images under a root that no longer exists (deleted or unmounted) are left
    out, as from query results. `vectors` may be None for exact, and for same (then nothing is confirmed by
    an embedding). `photo` (capture time, camera, place) restricts both members of every pair like `under`.
    """
    level = check_level(level)
    if threshold is not None and level != "similar":
        raise ClipsearchError(f"a similarity threshold goes with the similar level, not {level}",
                              "leave the threshold out, or ask for the similar level", param="threshold")
    threshold = check_threshold(DEFAULT_THRESHOLD if threshold is None else threshold)
    check_filters("under", under)
    under = [canonical(u) for u in under] if under else None
    notes = [f"no indexed images under {u}" for u in under or () if catalog.count_under(u) == 0]
    hidden = [r["path"] for r in catalog.roots() if not os.path.isdir(r["path"])]  # vanished roots
    photo_ids = catalog.filter_ids(under, hidden_under=hidden, stills_only=True, photo=photo) if photo else None
    if level == "exact":
        digest_groups = catalog.duplicate_digests(under, hidden_under=hidden)
        if photo_ids is not None:  # only the files the photo filters allow, as if the others were not there
            kept = set(photo_ids.tolist())
            digest_groups = [g for g in ([r for r in records if r.id in kept] for records in digest_groups)
                             if len(g) > 1]
        groups = [_group(*rank(records), level) for records in digest_groups]
        return Duplicates(_biggest_first(groups), notes)
    if level == "same":
        same, unhashed = same_groups(catalog, vectors, under, hidden, SAME_DISTANCE, SAME_CONFIRM, photo_ids)
        if unhashed:
            notes.append(f"{unhashed} {'image has' if unhashed == 1 else 'images have'} no perceptual hashes yet "
                         "(indexed by an older clipsearch): index their folders again to compute them (nothing "
                         "is re-encoded)")
        groups = [_group(ordered, reason, level, sims, dists) for ordered, reason, sims, dists in same]
        return Duplicates(_biggest_first(groups), notes)
    if vectors is None:
        raise ClipsearchError("similar images need the store's vectors", "ask for exact or same duplicates instead")
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

    def group_keys(ids: list[int]) -> list[Any]:
        original = original_format([records[i] for i in ids])
        return [keeper_key(records[i], original) for i in ids]

    def vectors_of(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return catalog.embeddings([int(i) for i in ids], vectors.dim)

    found = near_groups(vectors.current(), threshold, vectors_of, keys_of, allowed, stats, group_keys=group_keys)
    groups = []
    for ids, sims in found:
        members = [records[i] for i in ids]  # in the rule's order: the split keeps it
        groups.append(_group(members, why(members, original_format(members)), level, sims))
    return Duplicates(_biggest_first(groups), notes, stats)


def _group(ordered: Sequence[ImageRecord], reason: str, level: str, sims: Sequence[float | None] | None = None,
           dists: Sequence[int | None] | None = None) -> DuplicateGroup:
    """A group from its records keeper first, why that keeper, and each member's similarity (and hash
    distance) to it; byte copies are 1.0 alike."""
    sims = list(sims) if sims is not None else [1.0] * len(ordered)
    dists = list(dists) if dists is not None else [None] * len(ordered)
    images = [DuplicateImage(r.id, r.path, r.size, r.width, r.height, r.format, _modified(r.mtime_ns), i == 0,
                             None if s is None else round(float(s), 6), d)
              for i, (r, s, d) in enumerate(zip(ordered, sims, dists, strict=True))]
    measured = [im.similarity for im in images if im.similarity is not None]
    return DuplicateGroup(images[0].id, min(measured) if len(measured) == len(images) else None, images, reason,
                          level)


def _modified(mtime_ns: int) -> str:
    return dt.datetime.fromtimestamp(mtime_ns / 1e9).isoformat(timespec="seconds")


def _biggest_first(groups: list[DuplicateGroup]) -> list[DuplicateGroup]:
    return sorted(groups, key=lambda g: (-len(g.images), -g.reclaimable, g.images[0].path))
