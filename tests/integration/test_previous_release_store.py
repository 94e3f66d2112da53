"""A store written by the release before the package restructure (0.1.0 at 5a9490d, fixture in
tests/fixtures/store-0.1.0: 12 generated photos indexed with clipsearch-tiny, int8) opens, answers and indexes
with this release without re-encoding anything.

The fixture's catalog records absolute paths under PHOTOS; the test regenerates those photos there (seeded, so
the same bytes and digests as when the fixture was made)."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

import clipsearch
from clipsearch.media import synthetic

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "store-0.1.0"
PHOTOS = Path("/tmp/clipsearch-fixture-0.1.0/photos")
# what a row says of its file's content (its stat changes when the photos are regenerated here)
IMAGE_FACTS = "SELECT id, path, frame_ms, ext, size, digest, width, height, format, ok FROM images ORDER BY id"


def _hashes(store: Path) -> list[bytes | None]:
    conn = sqlite3.connect(store / "catalog.sqlite")
    try:
        return [r[0] for r in conn.execute("SELECT phash FROM images ORDER BY id")]
    finally:
        conn.close()


def _embeddings(store: Path) -> list[tuple[int, bytes]]:
    conn = sqlite3.connect(store / "catalog.sqlite")
    try:
        return conn.execute("SELECT image_id, vector FROM embeddings ORDER BY image_id").fetchall()
    finally:
        conn.close()


def _sql(store: Path, query: str) -> list[tuple]:
    conn = sqlite3.connect(store / "catalog.sqlite")
    try:
        return conn.execute(query).fetchall()
    finally:
        conn.close()


@pytest.fixture()
def old_store(tmp_path: Path) -> Path:
    if not PHOTOS.is_dir():
        synthetic.make_dataset(PHOTOS, per_class=1, seed=3)
    store = tmp_path / "index"
    shutil.copytree(FIXTURE, store)
    return store


def test_a_previous_release_store_opens_answers_and_reindexes_without_reencoding(old_store: Path) -> None:
    before = _embeddings(old_store)
    images = _sql(old_store, IMAGE_FACTS)
    assert len(before) == 12 and len(images) == 12
    with clipsearch.open(old_store, create=False) as store:
        info = store.info()
        assert (info["images"], info["vectors"], info["index_type"]) == (12, 12, "flat")
        assert info["model"]["key"] == "clipsearch-tiny:random" and info["model"]["precision"] == "int8"
        assert info["roots"] == [str(PHOTOS)] and info["vanished_roots"] == []
        hits = store.search("a red circle", k=20)
        assert len(hits) == 12 and {h.id for h in hits} == {i for i, _v in before}
        like = store.search(like=[hits[0].id], k=3)
        assert len(like) == 3 and hits[0].id not in {h.id for h in like}
        assert info["photo_metadata"]["metadata_unread"] == 12
        summary = store.add([PHOTOS])
        assert summary.encoded == 0 and summary.added == 0 and summary.unchanged == 12
        assert summary.hashed == 12  # perceptual hashes, computed without the model
        assert summary.metadata_read == 12  # the metadata-only pass (these photos carry no EXIF)
        assert store.info()["photo_metadata"]["metadata_unread"] == 0
        assert store.add([PHOTOS]).metadata_read == 0
    assert _embeddings(old_store) == before  # the stored embeddings are the old release's, byte for byte
    hashes = _hashes(old_store)
    assert len(hashes) == 12 and all(h is not None and len(h) == 24 for h in hashes)
    # its images table was rebuilt so that ids are never reused (schema 6), every row as it was
    assert _sql(old_store, IMAGE_FACTS) == images
    assert "AUTOINCREMENT" in _sql(old_store, "SELECT sql FROM sqlite_master WHERE name = 'images'")[0][0]
    assert _sql(old_store, "PRAGMA foreign_key_check") == []
    assert _sql(old_store, "PRAGMA integrity_check") == [("ok",)]


def test_a_previous_release_store_rebuilds_its_index_from_stored_embeddings(old_store: Path) -> None:
    (old_store / "vectors.faiss").unlink()
    with clipsearch.open(old_store, create=False, readonly=True) as store:
        assert len(store.search("a blue square", k=12)) == 12
