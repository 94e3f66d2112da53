"""The `same` level of duplicates: the same picture by perceptual hash, whatever the model.

Every still image's hashes (the whole frame and two centred windows, `media/phash.py`) are joined by Hamming
distance with multi-index hashing (`vectors/hamming.py`): the whole-frame hash of each image against every hash
of every other, so a centred crop meets its original's window. Pairs within `distance` bits are grouped
(union-find); each group is ranked by the keeper rule and split like the similar level: a member stays with the
keeper when their hashes are within `distance` and, where both have an embedding, their cosine is at least
`confirm` (flat, nearly uniform pictures hash to noise and may collide; the model tells those apart).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from clipsearch.catalog.reads import CatalogReads
from clipsearch.catalog.records import ImageRecord
from clipsearch.indexing.scan import is_inside
from clipsearch.query.grouping import connected_groups
from clipsearch.query.keeper import keeper_key, original_format, why
from clipsearch.vectors.hamming import pairs_within, popcount

if TYPE_CHECKING:  # pragma: no cover
    from clipsearch.vectors.store import VectorStore

# "same": hash distance (of 64 bits) and the embedding's confirmation. At 8 bits the transform bench
# (bench/phash_transforms.py) finds every resized (0.25-2x), recompressed (JPEG q30-95), converted (PNG, WebP)
# copy, 98-100 % of centred 5-15 % crops and 91 % of watermarked ones, and no pair of different photos.
SAME_DISTANCE = 8

# (records keeper first, why that keeper, cosine to the keeper or None, hash distance to the keeper) per group
SameGroup = tuple[list[ImageRecord], str, list[float | None], list[int]]


def hash_pairs(words: np.ndarray, distance: int) -> tuple[np.ndarray, np.ndarray]:
    """Row pairs (a, b), a != b, whose pictures are within `distance` (whole frame of a against any hash of b).
    `words`: (n, k) uint64, column 0 the whole frame."""
    n, k = words.shape
    firsts, seconds = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    for qi, t, _d in pairs_within(words[:, 0], words.ravel(), distance):
        owner = t // k
        other = owner != qi
        firsts.append(qi[other])
        seconds.append(owner[other])
    return np.concatenate(firsts), np.concatenate(seconds)


def picture_distances(words: np.ndarray, keeper: int, rows: np.ndarray) -> np.ndarray:
    """Distance of each picture in `rows` to the keeper's: the nearer of its whole frame against the keeper's
    hashes and the keeper's whole frame against its hashes."""
    one = popcount(words[rows, 0][:, None] ^ words[keeper][None, :]).min(axis=1)
    other = popcount(words[rows] ^ words[keeper, 0]).min(axis=1)
    return np.minimum(one, other)


def same_groups(catalog: CatalogReads, vectors: VectorStore | None, under: Sequence[str] | None,
                hidden: Sequence[str], distance: int, confirm: float,
                allowed: np.ndarray | None = None) -> tuple[list[SameGroup], int]:
    """The groups, and how many images in scope have no hashes yet (indexed before hashes were kept);
    `allowed`: only these ids (e.g. what the photo metadata filters allow)."""
    unhashed = catalog.count_unhashed(under, hidden)
    ids, words = catalog.picture_hashes(under, hidden)
    if allowed is not None:
        keep = np.isin(ids, allowed)
        ids, words = ids[keep], words[keep]
    if len(ids) < 2:
        return [], unhashed
    a, b = hash_pairs(words, distance)
    components = connected_groups([(ids[a], ids[b], None)])
    if not components:
        return [], unhashed
    members = [int(i) for i in np.concatenate(components)]
    records = catalog.images(members)
    embedded = catalog.embeddings_by_id(members, vectors.dim) if vectors is not None else {}
    row_of = {int(i): r for r, i in enumerate(ids.tolist())}
    out: list[SameGroup] = []
    for component in components:
        group = [int(i) for i in component if int(i) in records]
        original = original_format([records[i] for i in group])
        ordered_ids = sorted(group, key=lambda i: keeper_key(records[i], original))
        for members, sims, dists in split_by_hash(ordered_ids, words, row_of, distance,
                                                  lambda a, b: _cosine(embedded, a, b), confirm):
            ordered = [records[i] for i in members]
            out.append((ordered, why(ordered, original_format(ordered)), sims, dists))
    return out, unhashed


def split_by_hash(ordered_ids: list[int], words: np.ndarray, row_of: dict[int, int], distance: int,
                  cosine: Callable[[int, int], float | None], confirm: float
                  ) -> list[tuple[list[int], list[float | None], list[int]]]:
    """Split one connected group (ids in keeper order) so that every member is within `distance` of its
    keeper's hashes and, where `cosine` knows both, at least `confirm` alike; the rest regroup the same way.
    (ids keeper first, cosine to the keeper, distance to the keeper) per group of two or more."""
    out = []
    remaining = list(ordered_ids)
    while len(remaining) >= 2:
        keeper, rest = remaining[0], remaining[1:]
        dists = picture_distances(words, row_of[keeper], np.asarray([row_of[i] for i in rest]))
        sims = [cosine(keeper, i) for i in rest]
        take = [bool(d <= distance) and (s is None or s >= confirm) for d, s in zip(dists, sims, strict=True)]
        if any(take):
            kept = [i for i, t in zip(rest, take, strict=True) if t]
            first = None if cosine(keeper, keeper) is None else 1.0
            out.append(([keeper, *kept], [first] + [s for s, t in zip(sims, take, strict=True) if t],
                        [0] + [int(d) for d, t in zip(dists, take, strict=True) if t]))
        remaining = [i for i, t in zip(rest, take, strict=True) if not t]
    return out


def _cosine(embedded: dict[int, np.ndarray], a: int, b: int) -> float | None:
    if a not in embedded or b not in embedded:
        return None
    return float(min(float(embedded[a] @ embedded[b]), 1.0))


class StoredPictures:
    """The perceptual hashes of a store's still pictures, read from the catalog once and kept in memory while
    the catalog's vectors and hashes versions stay (two meta reads per query), so an image query or an upload
    in a long-running process does not read every stored hash again: a few MB at 100k pictures.
    One per open store; threads share it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._key: tuple[int, int] | None = None
        self._ids = np.zeros(0, np.int64)
        self._words = np.zeros((0, 1), np.uint64)

    def hashes(self, catalog: CatalogReads) -> tuple[np.ndarray, np.ndarray]:
        """(ids, (n, HASH_WORDS) uint64) of every still with hashes, as the catalog holds them now."""
        key = (catalog.version(), catalog.hashes_version())
        with self._lock:
            if key != self._key:
                self._ids, self._words = catalog.picture_hashes()
                self._key = key
            return self._ids, self._words

    def nearest(self, catalog: CatalogReads, blob: bytes, hidden: Sequence[str]) -> tuple[ImageRecord, int] | None:
        """The stored picture nearest to the query's hashes within the `same` level's distance, and that
        distance (the lowest id among equals), leaving out what lies under `hidden` (vanished roots)."""
        ids, words = self.hashes(catalog)
        if not len(ids):
            return None
        query = np.frombuffer(blob, dtype=">u8").astype(np.uint64)
        both = np.concatenate([query[None, :], words])
        dists = picture_distances(both, 0, np.arange(1, len(both)))
        close = np.flatnonzero(dists <= SAME_DISTANCE)
        for row in close[np.argsort(dists[close], kind="stable")]:
            record = catalog.images([int(ids[row])]).get(int(ids[row]))
            if record is not None and not is_inside(record.path, hidden):
                return record, int(dists[row])
        return None


def in_store_notes(catalog: CatalogReads, pictures: list[tuple[str, bytes]], hidden: Sequence[str],
                   stored: StoredPictures | None = None) -> list[str]:
    """A note per query image (label, perceptual hashes) whose picture the store holds: a byte copy, or the same
    picture resized, recompressed, converted or lightly cropped (within the `same` level's distance), naming the
    nearest stored file. `stored`: the store's kept hashes (without it, they are read for this query)."""
    stored = stored or StoredPictures()
    notes = []
    for label, blob in pictures:
        found = stored.nearest(catalog, blob, hidden)
        if found is not None:
            record, distance = found
            how = "the same picture" if distance else "the same picture, hash for hash"
            notes.append(f"{label} is in the store: {record.path} ({how})")
    return notes
