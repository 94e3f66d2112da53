"""The reads of `CatalogReads` answer the same through SQLAlchemy on SQLite and PostgreSQL and through sqlite3
(`QuickCatalog`): one SQL text each, values decoded alike (non-UTF-8 names, LIKE's wildcards in folder names,
timestamps, float16 blobs). No model: rows and vectors are made up."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import numpy as np
import pytest

from clipsearch.catalog.catalog import Catalog
from clipsearch.catalog.reads import CatalogReads
from clipsearch.catalog.records import Encoded, EncodedVideo, Failed
from clipsearch.catalog.sqlite_reader import QuickCatalog

DIM = 8
WEIRD = os.fsdecode(b"/photos/caf\xe9/x.png")  # not UTF-8: stored in the catalog's path code
STILLS = ["/photos/a.png", "/photos/b.jpg", "/photos/sub/c.png", "/photos/100%_x/d.png", "/photos/100ab/e.png",
          WEIRD]


def _vector(i: int) -> np.ndarray:
    v = np.arange(DIM, dtype=np.float32) + i
    return (v / np.linalg.norm(v)).astype(np.float16).astype(np.float32)


REHASHED = bytes(range(24))


def _hashes(i: int) -> bytes:
    """Three 64-bit words, the first with its top bit set (unsigned values above a signed BIGINT's range)."""
    return b"".join(((1 << 63) + 1000 * i + k).to_bytes(8, "big") for k in range(3))


def _fill(catalog: Catalog) -> None:
    encoded = [Encoded(p, 100 + i, 1_000 * i, "same" if i < 2 else f"d{i}", 4, 3, "PNG", _vector(i), None,
                       _hashes(i) if i != 3 else None)  # one row from before hashes were kept
               for i, p in enumerate(STILLS)]
    video = EncodedVideo("/photos/v.mp4", 5, 7, "vid", 4, 3, "mp4", [(0, _vector(10)), (500, _vector(11))], None)
    failed = [Failed("/photos/broken.png", 3, 9, "cannot decode", None)]
    catalog.commit_chunk(encoded, failed, [], [video])
    run = catalog.begin_run()
    catalog.finish_run(run, "done", {}, ["/photos"], missing_roots=[])
    catalog.finish_run(run, "done", {}, ["/gone"], missing_roots=["/gone"])
    catalog.set_hashes([(2, REHASHED)])  # as the hash pass does: the row's hashes only


def _answers(reads: CatalogReads) -> dict:
    ids = sorted(int(i) for i in reads.filter_ids())
    version, all_ids, all_vecs = reads.all_embeddings(DIM)
    order = np.argsort(all_ids)
    found, matrix = reads.embeddings(ids + [10**9], DIM)
    return {
        "version": reads.version(),
        "all": (version, all_ids[order].tolist(), all_vecs[order].tolist()),
        "roots": reads.roots(),
        "videos": reads.has_videos(),
        "counts": [reads.count_under(p) for p in ("/photos", "/photos/sub", "/photos/100%_x", "/photos/caf\udce9")],
        "ids_of": reads.ids_of([STILLS[2], WEIRD], ["same"]),
        "filters": [sorted(int(i) for i in reads.filter_ids(**f)) for f in (
            {"under": ["/photos/100%_x"]}, {"exts": ["jpg"]}, {"after_ns": 2_000}, {"before_ns": 2_000},
            {"hidden_under": ["/photos/sub", "/photos/caf\udce9"]}, {"stills_only": True})],
        "images": reads.images(ids + [10**9]),
        "embeddings": sorted((int(i), row.tolist()) for i, row in zip(found, matrix, strict=True)),
        "by_id": {i: v.tolist() for i, v in reads.embeddings_by_id(ids[:2], DIM).items()},
        "newest": [[(r.path, r.frame_ms) for r in reads.newest(**a)] for a in (
            {"limit": 3}, {"limit": 3, "offset": 6}, {"limit": 9, "exts": ["mp4"]},
            {"limit": 9, "before_ns": 2_000, "hidden_under": ["/photos/b.jpg"]})],
        "dupes": reads.duplicate_digests(),
        "dupes_under": reads.duplicate_digests(["/photos"], hidden_under=["/photos/b.jpg"]),
        "hashes_kept": reads.hashes_kept(),
        "hashes": [x.tolist() for x in reads.picture_hashes()],
        "hashes_under": reads.picture_hashes(["/photos/sub"])[0].tolist(),
        "unhashed": [reads.count_unhashed(), reads.count_unhashed(hidden_under=["/photos/100%_x"])],
    }


def test_reads_agree_on_every_backend(catalog_db: str | None, tmp_path: Path) -> None:
    location = catalog_db or tmp_path / "catalog.sqlite"
    catalog = Catalog(location, owner="reads-test", folder=str(tmp_path), new=True)
    try:
        _fill(catalog)
        answers = _answers(catalog)
    finally:
        catalog.close()
    by_path = {r.path: r.id for r in answers["images"].values()}
    assert set(by_path) == {*STILLS, "/photos/v.mp4"} and answers["version"] == answers["all"][0] == 1
    assert answers["videos"] is True
    assert answers["counts"] == [9, 1, 1, 1]  # the failure row counts; "100%_x" is not a wildcard
    assert answers["ids_of"] == {by_path[STILLS[0]], by_path[STILLS[1]], by_path[STILLS[2]], by_path[WEIRD]}
    assert answers["filters"][0] == [by_path["/photos/100%_x/d.png"]]
    assert answers["filters"][1] == [by_path["/photos/b.jpg"]]
    assert len(answers["filters"][4]) == 6 and by_path[WEIRD] not in answers["filters"][4]
    assert len(answers["filters"][5]) == len(STILLS)
    assert [[r.path for r in group] for group in answers["dupes"]] == [STILLS[:2]]
    assert answers["dupes_under"] == []
    assert answers["newest"][0] == [(STILLS[5], -1), (STILLS[4], -1), (STILLS[3], -1)]  # newest modified first
    assert answers["newest"][1] == [(STILLS[0], -1)]  # the 7th and last file: the video counts once, not twice
    assert answers["newest"][2] == [("/photos/v.mp4", 0)]  # a video as its first moment
    assert answers["newest"][3] == [("/photos/v.mp4", 0), (STILLS[0], -1)]
    assert len(answers["all"][1]) == 8 and answers["all"][2][0] == _vector(0).tolist()
    assert answers["by_id"] == {by_path[STILLS[0]]: _vector(0).tolist(), by_path[STILLS[1]]: _vector(1).tolist()}
    assert answers["hashes_kept"] and answers["unhashed"] == [1, 0]  # d.png has none; no video frame counts
    hashed_ids, words = answers["hashes"]
    assert hashed_ids == sorted(by_path[p] for i, p in enumerate(STILLS) if i != 3)
    expected = [[int.from_bytes((REHASHED if by_path[p] == 2 else _hashes(i))[8 * k:8 * k + 8], "big")
                 for k in range(3)] for i, p in enumerate(STILLS) if i != 3]
    assert words == expected and words[0][0] >= 1 << 63
    assert answers["hashes_under"] == [by_path["/photos/sub/c.png"]]
    roots = {r["path"]: r for r in answers["roots"]}
    assert list(roots) == ["/gone", "/photos"] and roots["/photos"]["missing_since"] is None
    assert isinstance(roots["/gone"]["missing_since"], dt.datetime)
    if catalog_db is None:  # the same reads through sqlite3, without SQLAlchemy
        quick = QuickCatalog.open(tmp_path / "catalog.sqlite", readonly=True)
        assert quick is not None
        try:
            assert _answers(quick) == answers
        finally:
            quick.close()


@pytest.mark.parametrize("readonly", [False, True])
def test_quick_catalog_refuses_a_missing_or_foreign_file(tmp_path: Path, readonly: bool) -> None:
    assert QuickCatalog.open(tmp_path / "none.sqlite", readonly) is None
    (tmp_path / "junk.sqlite").write_bytes(b"not a database at all" * 100)
    assert QuickCatalog.open(tmp_path / "junk.sqlite", readonly) is None
