"""Saying "this picture is in the store" reads the stored perceptual hashes once per catalog state, not on every
image query: a catalog that counts the rows it hands out shows a second query reading none, and a change (new
rows: the vectors version; hashes added to old rows: the hashes version) reading them again. The answers stay
those of comparing against every stored hash (nearest within the `same` distance, lowest id among equals,
nothing under a vanished root)."""

from __future__ import annotations

import numpy as np

from clipsearch.catalog.codec import hash_blobs_to_matrix
from clipsearch.catalog.records import ImageRecord
from clipsearch.query.same_picture import SAME_DISTANCE, StoredPictures, in_store_notes

RNG = np.random.default_rng(3)


def blob(words: np.ndarray) -> bytes:
    return np.asarray(words, dtype=">u8").tobytes()


def flip(words: np.ndarray, bits: int) -> np.ndarray:
    out = words.copy()
    out[0] ^= np.uint64((1 << bits) - 1)  # the lowest `bits` bits of the whole-frame hash
    return out


class CountingCatalog:
    """The reads `in_store_notes` makes, over a list of (path, hash words); counts the hash rows it returns."""

    def __init__(self, n: int) -> None:
        self.rows = [(f"/photos/{i:04d}.jpg", RNG.integers(0, 2**63, size=3, dtype=np.int64).astype(np.uint64))
                     for i in range(n)]
        self.vectors, self.hashes = 1, 0
        self.hash_rows_read = 0

    def version(self) -> int:
        return self.vectors

    def hashes_version(self) -> int:
        return self.hashes

    def picture_hashes(self, under=None, hidden_under=()) -> tuple[np.ndarray, np.ndarray]:
        self.hash_rows_read += len(self.rows)
        return np.arange(1, len(self.rows) + 1), hash_blobs_to_matrix([blob(w) for _p, w in self.rows])

    def images(self, ids) -> dict[int, ImageRecord]:
        return {i: ImageRecord(i, self.rows[i - 1][0], 1, 1, 1, 1, "JPEG", None) for i in ids}


def test_a_second_image_query_reads_no_stored_hash() -> None:
    catalog, stored = CountingCatalog(2000), StoredPictures()
    query = blob(flip(catalog.rows[1234][1], 3))
    assert in_store_notes(catalog, [("q.jpg", query)], [], stored) == \
        ["q.jpg is in the store: /photos/1234.jpg (the same picture)"]
    assert catalog.hash_rows_read == 2000
    for _ in range(5):
        assert in_store_notes(catalog, [("q.jpg", query)], [], stored)
    assert catalog.hash_rows_read == 2000  # five more queries, no row read

    catalog.rows.append(("/photos/new.jpg", flip(catalog.rows[7][1], 1)))
    catalog.vectors += 1  # an index run committed
    assert in_store_notes(catalog, [("new", blob(catalog.rows[-1][1]))], [], stored) == \
        ["new is in the store: /photos/new.jpg (the same picture, hash for hash)"]
    assert catalog.hash_rows_read == 2000 + 2001

    catalog.rows[5] = ("/photos/0005.jpg", flip(catalog.rows[9][1], 2))
    catalog.hashes += 1  # hashes added to rows indexed before hashes were kept
    assert in_store_notes(catalog, [("q", blob(catalog.rows[5][1]))], [], stored) == \
        ["q is in the store: /photos/0005.jpg (the same picture, hash for hash)"]
    assert catalog.hash_rows_read == 2000 + 2 * 2001


def reference(catalog: CountingCatalog, query: bytes, hidden: list[str]) -> str | None:
    """What the notes said before hashes were kept: every visible stored hash compared, the first nearest named."""
    from clipsearch.query.same_picture import picture_distances

    rows = [(i + 1, p, w) for i, (p, w) in enumerate(catalog.rows) if not any(p.startswith(h + "/") for h in hidden)]
    words = np.stack([w for _i, _p, w in rows])
    both = np.concatenate([np.frombuffer(query, dtype=">u8").astype(np.uint64)[None, :], words])
    dists = picture_distances(both, 0, np.arange(1, len(both)))
    best = int(np.argmin(dists))
    return rows[best][1] if dists[best] <= SAME_DISTANCE else None


def test_the_answers_are_those_of_comparing_with_every_hash() -> None:
    catalog, stored = CountingCatalog(300), StoredPictures()
    base = catalog.rows[40][1]
    for i, bits in ((41, 2), (42, 1), (43, 1)):  # pictures near row 40's: a tie at one bit (42 and 43)
        catalog.rows[i] = (f"/photos/{'hidden/' if i == 42 else ''}{i:04d}.jpg", flip(base, bits))
    queries = [blob(flip(base, bits)) for bits in range(12)] + [blob(w) for _p, w in catalog.rows[::7]]
    queries += [blob(RNG.integers(0, 2**63, size=3, dtype=np.int64).astype(np.uint64)) for _ in range(20)]
    answered = 0
    for hidden in ([], ["/photos/hidden"]):
        for query in queries:
            notes = in_store_notes(catalog, [("q", query)], hidden, stored)
            expected = reference(catalog, query, hidden)
            assert [n.split(": ")[1].split(" (")[0] for n in notes] == ([expected] if expected else [])
            answered += bool(notes)
    assert answered > len(queries)  # most queries are near a stored picture; random ones are not
    assert in_store_notes(catalog, [("q", blob(flip(base, 1)))], [], stored)[0].startswith(
        "q is in the store: /photos/hidden/0042.jpg")  # equal distances: the lowest id
    assert in_store_notes(catalog, [("q", blob(flip(base, 1)))], ["/photos/hidden"], stored)[0].startswith(
        "q is in the store: /photos/0043.jpg")  # a vanished root's picture is not named
    assert catalog.hash_rows_read == 300
