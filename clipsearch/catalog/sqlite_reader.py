"""The catalog's reads that a query needs, over the standard library's sqlite3 — no SQLAlchemy.

Importing SQLAlchemy and mapping the tables costs ~0.4 s, nearly half of a cold CLI query. A query only
reads: the vectors version, the roots, filter ids, the hits' rows. `QuickCatalog` answers those here and
hands every other verb (writes, migrations, rebuilding vectors, info) to the full `Catalog`, built on first
use. Used only for a SQLite catalog already at this release's schema; otherwise the store opens `Catalog`.
"""

from __future__ import annotations

import datetime as dt
import os
import sqlite3
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from clipsearch.catalog.codec import (
    HAS_VIDEO,
    SCHEMA_LATEST,
    SCHEMA_VERSION,
    STILL,
    VECTORS_VERSION,
    blobs_to_matrix,
    path_from_db,
    path_to_db,
    under_patterns,
)
from clipsearch.catalog.records import ImageRecord
from clipsearch.catalog.sqlite_uri import file_uri, readonly_uri

if TYPE_CHECKING:  # pragma: no cover
    from clipsearch.catalog.catalog import Catalog

_CHUNK = 900  # ids per IN (...): under SQLite's variable limit


def _under_sql(paths: Sequence[str], negate: bool = False) -> tuple[str, list[str]]:
    parts, args = [], []
    for exact, pattern in under_patterns(paths):
        parts.append("(path = ? OR path LIKE ? ESCAPE '\\')")
        args += [exact, pattern]
    clause = "(" + " OR ".join(parts) + ")"
    return ("NOT " + clause if negate else clause), args


def _datetime(value: str | None) -> dt.datetime | None:
    return None if value is None else dt.datetime.fromisoformat(value)


class QuickCatalog:
    """A query's reads through sqlite3 (one connection per thread); anything else goes to the full catalog."""

    def __init__(self, db_path: Path, readonly: bool, full: Callable[[], Catalog]) -> None:
        self._uri = readonly_uri(db_path) if readonly else file_uri(db_path)
        self._full = full
        self._local = threading.local()

    @classmethod
    def open(cls, db_path: Path, readonly: bool, full: Callable[[], Catalog]) -> QuickCatalog | None:
        """The reader, or None when the catalog is missing, unreadable or not at this release's schema."""
        if not os.path.isfile(db_path):
            return None
        reader = cls(db_path, readonly, full)
        try:
            version = reader._one("SELECT value FROM meta WHERE key = ?", SCHEMA_VERSION)
        except sqlite3.Error:
            return None
        return reader if version is not None and int(version) == SCHEMA_LATEST else None

    def __getattr__(self, name: str) -> Any:  # every verb not answered here
        return getattr(self._full(), name)

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self._uri, uri=True, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA busy_timeout=10000")
            self._local.conn = conn
        return conn

    def _rows(self, sql: str, *args: Any) -> list[tuple]:
        return self._conn().execute(sql, args).fetchall()

    def _one(self, sql: str, *args: Any) -> Any:
        row = self._conn().execute(sql, args).fetchone()
        return None if row is None else row[0]

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    # --- the reads of a query ----------------------------------------------------------------------------
    def version(self) -> int:
        value = self._one("SELECT value FROM meta WHERE key = ?", VECTORS_VERSION)
        return int(value) if value is not None else 0

    def has_videos(self) -> bool:
        return bool(self._one("SELECT value FROM meta WHERE key = ?", HAS_VIDEO))

    def roots(self) -> list[dict[str, Any]]:
        rows = self._rows("SELECT path, last_indexed_at, missing_since FROM roots ORDER BY path")
        return [{"path": path_from_db(p), "last_indexed_at": _datetime(at), "missing_since": _datetime(gone)}
                for p, at, gone in rows]

    def count_under(self, path: str) -> int:
        clause, args = _under_sql([path])
        return int(self._one(f"SELECT count(*) FROM images WHERE {clause}", *args) or 0)

    def ids_of(self, paths: Sequence[str], digests: Sequence[str]) -> set[int]:
        found: set[int] = set()
        for column, values in (("path", [path_to_db(p) for p in paths]), ("digest", list(digests))):
            for i in range(0, len(values), _CHUNK):
                chunk = values[i:i + _CHUNK]
                marks = ",".join("?" * len(chunk))
                found.update(r[0] for r in self._rows(f"SELECT id FROM images WHERE {column} IN ({marks})", *chunk))
        return found

    def filter_ids(self, under: Sequence[str] | None = None, exts: Sequence[str] | None = None,
                   after_ns: int | None = None, before_ns: int | None = None,
                   hidden_under: Sequence[str] = (), stills_only: bool = False) -> np.ndarray:
        where, args = ["ok = 1"], []
        if stills_only:
            where.append("frame_ms = ?")
            args.append(STILL)
        if under:
            clause, more = _under_sql(under)
            where.append(clause)
            args += more
        if exts:
            where.append(f"ext IN ({','.join('?' * len(exts))})")
            args += list(exts)
        if after_ns is not None:
            where.append("mtime_ns >= ?")
            args.append(after_ns)
        if before_ns is not None:
            where.append("mtime_ns < ?")
            args.append(before_ns)
        if hidden_under:
            clause, more = _under_sql(hidden_under, negate=True)
            where.append(clause)
            args += more
        cur = self._conn().execute(f"SELECT id FROM images WHERE {' AND '.join(where)}", args)
        return np.fromiter((r[0] for r in cur), dtype=np.int64)

    def images(self, ids: Sequence[int]) -> dict[int, ImageRecord]:
        out: dict[int, ImageRecord] = {}
        for i in range(0, len(ids), _CHUNK):
            chunk = [int(x) for x in ids[i:i + _CHUNK]]
            for row in self._rows("SELECT id, path, size, mtime_ns, width, height, format, digest, frame_ms "
                                  f"FROM images WHERE id IN ({','.join('?' * len(chunk))})", *chunk):
                out[row[0]] = ImageRecord(row[0], path_from_db(row[1]), *row[2:])
        return out

    def embeddings(self, ids: Sequence[int], dim: int) -> tuple[np.ndarray, np.ndarray]:
        found: list[int] = []
        blobs: list[bytes] = []
        for i in range(0, len(ids), _CHUNK):
            chunk = [int(x) for x in ids[i:i + _CHUNK]]
            for image_id, blob in self._rows("SELECT image_id, vector FROM embeddings "
                                             f"WHERE image_id IN ({','.join('?' * len(chunk))})", *chunk):
                found.append(image_id)
                blobs.append(blob)
        return np.asarray(found, dtype=np.int64), blobs_to_matrix(blobs, dim)

    def embeddings_by_id(self, ids: Sequence[int], dim: int) -> dict[int, np.ndarray]:
        found, matrix = self.embeddings(ids, dim)
        return {int(i): row for i, row in zip(found, matrix, strict=False)}
