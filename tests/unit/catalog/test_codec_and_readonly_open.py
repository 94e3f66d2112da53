"""What the catalog's bytes mean without SQLAlchemy, and how a read-only store opens its SQLite file."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import numpy as np

from clipsearch.catalog.codec import blobs_to_matrix, path_from_db, path_to_db, vector_to_blob
from clipsearch.catalog.sqlite_uri import readonly_uri


def test_any_file_name_round_trips() -> None:
    for name in ["/photos/plain.jpg", "/photos/caf\udce9.jpg", "/p/\ufdd0literal", "/p/emoji 😀.png", "/p/new\nline"]:
        stored = path_to_db(name)
        stored.encode("utf-8")  # always storable as text
        assert path_from_db(stored) == name


def test_vectors_are_stored_as_float16() -> None:
    vecs = np.random.default_rng(0).normal(size=(3, 8)).astype(np.float32)
    matrix = blobs_to_matrix([vector_to_blob(v) for v in vecs], 8)
    assert matrix.shape == (3, 8) and np.allclose(matrix, vecs, atol=2e-3)
    assert len(vector_to_blob(vecs[0])) == 16


def test_a_read_only_open_reads_the_wal_when_there_is_one(tmp_path: Path) -> None:
    db = tmp_path / "catalog.sqlite"
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()  # the last connection folds the WAL back and removes it
    assert not os.path.exists(f"{db}-wal") and readonly_uri(db).endswith("?immutable=1")
    writer = sqlite3.connect(db)
    writer.execute("PRAGMA wal_autocheckpoint=0")
    writer.execute("INSERT INTO t VALUES (1)")
    writer.commit()
    uri = readonly_uri(db)
    assert uri.endswith("?mode=ro")
    reader = sqlite3.connect(uri, uri=True)
    assert reader.execute("SELECT count(*) FROM t").fetchone() == (1,)  # the commit that lives only in the WAL
    reader.close()
    writer.close()
