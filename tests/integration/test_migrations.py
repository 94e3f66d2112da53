"""A store written by the previous release (catalog schema 1) upgrades in place, keeping every embedding.

The store is built once with the current code (the shipped tiny model, random init: only counts and ids are
compared, never relevance), then its catalog is turned back into the previous release's format with plain SQL:
schema 1 has no `roots.missing_since` column, no `images.frame_ms` or `images.phash` (schema 4: perceptual hashes)
and no `schema_version` key in `meta`. Every test runs on an SQLite
catalog and on a PostgreSQL one (each test's copy of the store gets its own copy of the database).
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from contextlib import contextmanager
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import make_url

import clipsearch
from clipsearch import ClipsearchError
from clipsearch.catalog import schema
from clipsearch.catalog.database import public_url
from clipsearch.store.manifest import CATALOG, MANIFEST
from tests.conftest import new_database

COLOURS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255), (255, 0, 255)]
N = len(COLOURS)
QUERY = "a red square"


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def built(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest):
    """(photos, pristine store at the latest schema, ids a query returned from it)."""
    db = new_database(request.getfixturevalue("pg_server")) if request.param == "postgresql" else None
    base = tmp_path_factory.mktemp("migrations")
    photos = base / "photos"
    photos.mkdir()
    for i, rgb in enumerate(COLOURS):
        Image.new("RGB", (40 + 3 * i, 32), rgb).save(photos / f"{i}.png")
    store = base / "index"
    with clipsearch.open(store, model="clipsearch-tiny", db=db) as s:
        summary = s.add([photos])
        assert (summary.added, summary.failed) == (N, 0)
        ids = [h.id for h in s.search(QUERY, k=N)]
    assert sorted(ids) == sorted(state(store)["embeddings"])
    return photos, store, ids


@pytest.fixture()
def store(built, tmp_path: Path, request: pytest.FixtureRequest) -> Path:
    """A fresh copy of the built store for a test to change (on PostgreSQL with a copy of its database)."""
    dest = tmp_path / "index"
    shutil.copytree(built[1], dest)
    manifest = json.loads((dest / MANIFEST).read_text())
    if "catalog" in manifest:
        source = manifest["catalog"]["url"]
        copy = new_database(request.getfixturevalue("pg_server"), template=make_url(source).database)
        manifest["catalog"]["url"] = public_url(copy)
        (dest / MANIFEST).write_text(json.dumps(manifest))
    return dest


def _url(store: Path) -> str:
    manifest = json.loads((store / MANIFEST).read_text())
    return manifest["catalog"]["url"] if "catalog" in manifest else f"sqlite:///{store / CATALOG}"


@contextmanager
def connect(store: Path):
    """A connection to the store's catalog (SQLite file or PostgreSQL database) in one committed transaction."""
    engine = create_engine(_url(store))
    try:
        with engine.begin() as conn:
            yield conn
    finally:
        engine.dispose()


def state(store: Path) -> dict:
    """What the catalog holds, read with plain SQL: roots columns, meta, roots, embeddings."""
    with connect(store) as con:
        schema_of = inspect(con)
        return {
            "tables": sorted(schema_of.get_table_names()),
            "root_columns": [c["name"] for c in schema_of.get_columns("roots")],
            "image_columns": [c["name"] for c in schema_of.get_columns("images")],
            "unique_indexes": sorted(i["name"] for i in schema_of.get_indexes("images") if i["unique"]),
            "meta": dict(con.execute(text("SELECT key, value FROM meta")).all()),
            "roots": [r[0] for r in con.execute(text("SELECT path FROM roots ORDER BY path"))],
            "embeddings": {i: bytes(v) for i, v in con.execute(text("SELECT image_id, vector FROM embeddings"))},
            "hashed": (con.execute(text("SELECT count(*) FROM images WHERE phash IS NOT NULL")).scalar()
                       if "phash" in [c["name"] for c in schema_of.get_columns("images")] else None),
        }


def downgrade_to_schema_6(store: Path) -> None:
    """Schema 6 had no text read inside images: no `image_text` table, no full-text index over it."""
    with connect(store) as con:
        if con.dialect.name == "sqlite":
            for trigger in ("image_text_ai", "image_text_ad", "image_text_au"):
                con.exec_driver_sql(f"DROP TRIGGER {trigger}")
            con.exec_driver_sql("DROP TABLE image_text_fts")
        con.exec_driver_sql("DROP TABLE image_text")
        con.exec_driver_sql("DELETE FROM meta WHERE key = 'text_index'")
        con.execute(text("UPDATE meta SET value = '6' WHERE key = 'schema_version'"))


def downgrade_to_schema_1(store: Path) -> None:
    """Make the catalog look exactly like one the previous release wrote."""
    downgrade_to_schema_6(store)
    with connect(store) as con:
        con.exec_driver_sql("DROP INDEX ix_images_taken_local")  # schema 5: photo metadata
        con.exec_driver_sql("DROP INDEX ix_images_gps_lat")
        for column in schema.PHOTO_META_COLUMNS:
            con.exec_driver_sql(f"ALTER TABLE images DROP COLUMN {column}")
        con.exec_driver_sql("ALTER TABLE roots DROP COLUMN missing_since")
        con.exec_driver_sql("DROP INDEX uq_images_path_frame")  # schema 3: videos' frames share a path
        con.exec_driver_sql("DROP INDEX ix_images_path")
        con.exec_driver_sql("ALTER TABLE images DROP COLUMN frame_ms")
        con.exec_driver_sql("ALTER TABLE images DROP COLUMN phash")
        con.exec_driver_sql("CREATE UNIQUE INDEX ix_images_path ON images (path)")  # as the first release made it
        con.exec_driver_sql("DELETE FROM meta WHERE key = 'schema_version'")


def rows_of(store: Path) -> dict:
    """Every row of every table (images, embeddings, roots, runs, meta), read with plain SQL."""
    with connect(store) as con:
        rows = {table: sorted(tuple(map(str, row)) for row in con.exec_driver_sql(f"SELECT * FROM {table}"))
                for table in ("images", "embeddings", "roots", "runs")}
        return rows | {"meta": dict(con.execute(text("SELECT key, value FROM meta")).all())}


def downgrade_to_schema_5(store: Path) -> None:
    """Make the catalog one that schema 5 wrote: on SQLite `images` without AUTOINCREMENT (rebuilt with foreign
    keys off, as the previous release created it); PostgreSQL's table is the same in both."""
    if "catalog" not in json.loads((store / MANIFEST).read_text()):
        con = sqlite3.connect(store / CATALOG)
        try:
            sql = con.execute("SELECT sql FROM sqlite_master WHERE name = 'images'").fetchone()[0]
            indexes = [r[0] for r in con.execute("SELECT sql FROM sqlite_master WHERE type = 'index' "
                                                 "AND tbl_name = 'images' AND sql IS NOT NULL")]
            assert "AUTOINCREMENT" in sql
            con.execute("PRAGMA foreign_keys=OFF")
            with con:
                con.execute(sql.replace("AUTOINCREMENT", "").replace("CREATE TABLE images", "CREATE TABLE old"))
                con.execute("INSERT INTO old SELECT * FROM images")
                con.execute("DROP TABLE images")
                con.execute("ALTER TABLE old RENAME TO images")
                for index in indexes:
                    con.execute(index)
                con.execute("DELETE FROM sqlite_sequence")
        finally:
            con.close()
    set_schema_version(store, 5)


def set_schema_version(store: Path, version: int) -> None:
    with connect(store) as con:
        con.execute(text("UPDATE meta SET value = :v WHERE key = 'schema_version'"), {"v": str(version)})


def assert_latest(store: Path) -> dict:
    now = state(store)
    assert "missing_since" in now["root_columns"] and "frame_ms" in now["image_columns"]
    assert set(schema.PHOTO_META_COLUMNS) <= set(now["image_columns"])
    assert "phash" in now["image_columns"]
    assert now["unique_indexes"] == ["uq_images_path_frame"]  # unique on (path, frame_ms), no longer on path
    assert now["meta"]["schema_version"] == str(schema.LATEST)
    assert "image_text" in now["tables"]
    return now


def test_previous_release_store_upgrades_in_place(built, store: Path) -> None:
    photos, _pristine, ids_before = built
    original = state(store)
    downgrade_to_schema_1(store)
    old = state(store)
    assert "missing_since" not in old["root_columns"] and "schema_version" not in old["meta"]
    assert "frame_ms" not in old["image_columns"] and old["unique_indexes"] == ["ix_images_path"]
    assert old["embeddings"] == original["embeddings"]

    with clipsearch.open(store, create=False) as s:  # a query is the first thing the new release does
        assert [h.id for h in s.search(QUERY, k=N)] == ids_before
        assert s.info()["vanished_roots"] == []
    upgraded = assert_latest(store)
    assert upgraded["embeddings"] == original["embeddings"]  # every embedding kept, byte for byte
    assert upgraded["roots"] == original["roots"]
    assert original["hashed"] == N and upgraded["hashed"] == 0  # the upgrade adds the column; the next run fills it

    with clipsearch.open(store, create=False) as s:
        summary = s.add([photos])
        assert (summary.unchanged, summary.added, summary.updated, summary.removed, summary.encoded) == (N, 0, 0, 0, 0)
        assert summary.metadata_read == N  # the metadata-only pass: headers read, nothing encoded
        assert summary.hashed == N  # the perceptual hashes, from a decode without the model
        assert s.catalog.last_run()["status"] == "done"
        assert [h.id for h in s.search(QUERY, k=N)] == ids_before
        assert s.add([photos]).hashed == 0  # once
    final = state(store)
    assert final["embeddings"] == original["embeddings"] and final["hashed"] == N


def test_upgrade_cut_short_before_its_version_was_recorded_completes(built, store: Path) -> None:
    """SQLite commits DDL as it runs: a process killed after adding the column, before recording the new
    version, leaves the column in a schema-1 catalog. The next open must finish the upgrade, not fail forever."""
    photos, _pristine, ids_before = built
    downgrade_to_schema_1(store)
    with connect(store) as con:
        con.exec_driver_sql("ALTER TABLE roots ADD COLUMN missing_since TIMESTAMP")
    assert "schema_version" not in state(store)["meta"]

    with clipsearch.open(store, create=False) as s:
        assert [h.id for h in s.search(QUERY, k=N)] == ids_before
        assert s.add([photos]).unchanged == N
    assert_latest(store)


@pytest.mark.parametrize("readonly", [False, True], ids=["writable", "read-only"])
def test_newer_schema_is_refused(built, store: Path, readonly: bool) -> None:
    photos = built[0]
    set_schema_version(store, schema.LATEST + 1)
    before = state(store)
    with clipsearch.open(store, create=False, readonly=readonly) as s:
        with pytest.raises(ClipsearchError, match="upgrade clipsearch") as caught:
            s.search(QUERY)
        assert f"schema {schema.LATEST + 1}" in caught.value.message
        with pytest.raises(ClipsearchError, match="upgrade clipsearch|read-only"):
            s.add([photos])
    assert state(store) == before  # nothing was touched


def test_read_only_open_of_a_previous_release_store_is_a_clear_error(built, store: Path) -> None:
    _photos, _pristine, ids_before = built
    downgrade_to_schema_1(store)
    before = state(store)
    catalog_bytes = (store / CATALOG).read_bytes() if (store / CATALOG).exists() else None
    with clipsearch.open(store, create=False, readonly=True) as s:
        with pytest.raises(ClipsearchError, match="older clipsearch") as caught:
            s.search(QUERY)
        assert "writable" in (caught.value.hint or "")
        with pytest.raises(ClipsearchError, match="older clipsearch"):
            s.info()
    assert state(store) == before  # a read-only open never writes
    if catalog_bytes is not None:
        assert (store / CATALOG).read_bytes() == catalog_bytes

    with clipsearch.open(store, create=False) as s:  # once opened where it is writable ...
        s.search(QUERY)
    with clipsearch.open(store, create=False, readonly=True) as s:  # ... it reads anywhere
        assert [h.id for h in s.search(QUERY, k=N)] == ids_before


def test_schema_6_keeps_every_row_and_never_reuses_an_id(built, store: Path) -> None:
    """The upgrade that makes ids permanent rebuilds `images` on SQLite: every image, embedding, root, run and meta
    row survives it unchanged (a DROP with foreign keys on would cascade into `embeddings`), the foreign keys
    hold, and from then on the id of a deleted newest image is never handed out again (SQLite reused it)."""
    photos, _pristine, ids_before = built
    downgrade_to_schema_6(store)
    downgrade_to_schema_5(store)
    before = rows_of(store)
    assert before["meta"]["schema_version"] == "5" and len(before["embeddings"]) == N
    with clipsearch.open(store, create=False) as s:
        assert [h.id for h in s.search(QUERY, k=N)] == ids_before  # schema 5 reads as it is
        assert s.info()["images"] == N  # the catalog's writable open upgrades it
    after = rows_of(store)
    assert after.pop("meta")["schema_version"] == str(schema.LATEST)
    before.pop("meta")
    assert after == before  # every row of every table, byte for byte
    if "catalog" not in json.loads((store / MANIFEST).read_text()):
        con = sqlite3.connect(store / CATALOG)
        try:
            assert con.execute("PRAGMA foreign_key_check").fetchall() == []
            assert con.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
            assert "AUTOINCREMENT" in con.execute("SELECT sql FROM sqlite_master WHERE name = 'images'").fetchone()[0]
        finally:
            con.close()

    newest = max(ids_before)
    with clipsearch.open(store, create=False) as s:
        gone = s.record(newest).path
        Path(gone).rename(store.parent / "away.png")  # outside the collection: the file leaves the store
        try:
            assert s.add([photos]).removed == 1
        finally:
            (store.parent / "away.png").rename(gone)
        assert s.add([photos]).added == 1
        back = {h.id for h in s.search(QUERY, k=N)}
    assert newest not in back and max(back) > newest  # a new id, never the deleted one


def test_schema_6_store_gains_the_text_index(built, store: Path) -> None:
    """Schema 7 adds the text read inside images with its full-text index (FTS5 trigram / pg_trgm or ILIKE). The
    upgrade itself reads no image; text arrives by `index --ocr` (tests/e2e/test_ocr.py reads real text); here
    the catalog's own verbs write it, and the search finds it by a substring, also in Chinese."""
    from clipsearch.catalog.records import ReadText, TextLine

    _photos, _pristine, ids_before = built
    downgrade_to_schema_6(store)
    assert "image_text" not in state(store)["tables"]
    with clipsearch.open(store, create=False, readonly=True) as s:  # read-only: answers as it is, no text
        assert [h.id for h in s.search(QUERY, k=N)] == ids_before and s.info()["text"] is None
    assert "image_text" not in state(store)["tables"]
    with clipsearch.open(store, create=False) as s:
        assert [h.id for h in s.search(QUERY, k=N)] == ids_before  # answers at once, upgraded
        assert s.info()["text"] is None  # the store does not read text until asked to
        first = s.catalog.image(ids_before[0])
        assert first is not None and first.digest
        tasks = s.catalog.lacking_text([str(Path(first.path).parent)], [])
        assert sorted(t.id for t in tasks) == sorted(ids_before)  # every image is still to be read
        s.catalog.mark_reads_text()
        line = TextLine("发票INVOICE2024", (0.1, 0.2, 0.6, 0.3))
        assert len(s.catalog.save_texts([ReadText(first.id, first.digest, (line,)),
                                         ReadText(ids_before[1], "another content", (line,))])) == 1
    with clipsearch.open(store, create=False) as s:
        for words in ("invoice", "INVOICE2024", "发票", "票"):
            hits = s.search(text_in_image=words)
            assert [h.id for h in hits] == [first.id], words
            assert hits[0].text_matches and hits[0].text_matches[0]["box"] == [0.1, 0.2, 0.6, 0.3]
        assert s.info()["text"]["read"] == 1
    assert_latest(store)
