"""The catalog reads of `reads.CatalogReads` over the standard library's sqlite3 — no SQLAlchemy.

Importing SQLAlchemy and mapping the tables costs ~0.4 s, nearly half of a cold CLI query, and a query only
reads. `QuickCatalog` runs the statements of `reads.SqlReads` (the same SQL text `Catalog` runs) through
sqlite3, one connection per thread; it has no other verbs. The store uses it only for a SQLite catalog already
at this release's schema (or, read-only, one it reads as it is: `codec.SCHEMA_READABLE`);
otherwise, and for anything but these reads, it opens `Catalog`.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from clipsearch.catalog.codec import SCHEMA_LATEST, SCHEMA_READABLE, SCHEMA_VERSION
from clipsearch.catalog.reads import STREAM_BATCH, Row, SqlReads
from clipsearch.catalog.sqlite_uri import file_uri, readonly_uri


class QuickCatalog(SqlReads):
    """A query's reads of an SQLite catalog through sqlite3 (one connection per thread)."""

    def __init__(self, db_path: Path, readonly: bool, full: Callable[[], object] | None = None) -> None:
        """`full` is accepted for the store's call and not used: every read a query makes is answered here."""
        self._uri = readonly_uri(db_path) if readonly else file_uri(db_path)
        self._local = threading.local()
        self._opened: list[sqlite3.Connection] = []  # every thread's connection, closed together
        self._opened_lock = threading.Lock()

    @classmethod
    def open(cls, db_path: Path, readonly: bool, full: Callable[[], object] | None = None) -> QuickCatalog | None:
        """The reader, or None when the catalog is missing, unreadable or not at this release's schema (read-only:
        not at a schema it reads as it is)."""
        if not os.path.isfile(db_path):
            return None
        reader = cls(db_path, readonly)
        try:
            version = reader._value("SELECT value FROM meta WHERE key = :key", {"key": SCHEMA_VERSION})
        except sqlite3.Error:
            return None
        if version is None or not SCHEMA_READABLE <= int(version) <= SCHEMA_LATEST:
            return None
        if int(version) < SCHEMA_LATEST and not readonly:
            return None  # a writable open upgrades it first (through Catalog)
        return reader

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self._uri, uri=True, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA busy_timeout=10000")
            self._local.conn = conn
            with self._opened_lock:
                self._opened.append(conn)
        return conn

    def _rows(self, sql: str, params: Mapping[str, Any]) -> list[Row]:
        return self._conn().execute(sql, params).fetchall()

    def _stream(self, sql: str, params: Mapping[str, Any]) -> Iterator[Row]:
        cursor = self._conn().execute(sql, params)
        while rows := cursor.fetchmany(STREAM_BATCH):
            yield from rows

    def close(self) -> None:
        """Close the connection of every thread that read (a server's worker threads each opened one)."""
        with self._opened_lock:
            opened, self._opened = self._opened, []
        for conn in opened:
            conn.close()
        self._local = threading.local()
