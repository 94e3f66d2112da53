"""How a read-only store opens its SQLite catalog, without SQLAlchemy (a cold query's reader uses it too)."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from urllib.parse import quote


def file_uri(db_path: Path | str, mode: str = "mode=ro") -> str:
    return f"file:{quote(os.fsencode(os.path.abspath(db_path)))}?{mode}"


def _can_read(uri: str) -> bool:
    try:
        conn = sqlite3.connect(uri, uri=True)
    except sqlite3.Error:
        return False
    try:
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        return True
    except sqlite3.Error:
        return False
    finally:
        conn.close()


def readonly_uri(db_path: Path | str) -> str:
    """How a read-only store's catalog is opened so that it shows every commit, its WAL's included (a store killed
    mid-run, or a live one on a read-only mount).

    No WAL file: immutable (nothing to miss, and nothing is created beside the catalog). A WAL: `mode=ro`, which
    reads it, where SQLite can open its -shm file; where the folder forbids that, a private copy of the catalog and
    its WAL in a temporary folder."""
    path = os.path.abspath(db_path)
    wal = path + "-wal"
    if not os.path.exists(wal):
        return file_uri(path, "immutable=1")
    ro = file_uri(path)
    if _can_read(ro):
        return ro
    if os.path.getsize(wal) == 0:
        return file_uri(path, "immutable=1")
    return _private_copy(path)


def _private_copy(path: str) -> str:
    """A copy of the catalog and its WAL in a temporary folder (removed at exit), opened read-only there."""
    import atexit
    import shutil
    import tempfile

    folder = tempfile.mkdtemp(prefix="clipsearch-catalog-")
    atexit.register(shutil.rmtree, folder, True)
    copy = os.path.join(folder, "catalog.sqlite")
    shutil.copyfile(path, copy)
    shutil.copyfile(path + "-wal", copy + "-wal")
    return file_uri(copy)
