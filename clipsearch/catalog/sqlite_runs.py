"""The record of an index run in an SQLite catalog over the standard library's sqlite3 — no SQLAlchemy.

An unchanged re-run (`indexing/unchanged.py`) writes nothing but its run: the `runs` row (begun as "running", so
a killed run is found "interrupted" by the next, as `Catalog.begin_run` does) and its roots' `last_indexed_at`.
These are the rows `Catalog.begin_run` / `finish_run` write on SQLite, in the form SQLAlchemy stores them (its
DATETIME text, the `codec` path code); tests read them back through `Catalog`. Used only for a SQLite catalog at
this release's schema (`QuickCatalog.open` checks it) and only for a run without vanished roots.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from clipsearch.catalog.codec import path_to_db
from clipsearch.catalog.sqlite_uri import file_uri

COUNTS = ("scanned", "added", "updated", "moved", "removed", "unchanged", "failed", "seconds")


def _now() -> str:
    """UTC now as SQLAlchemy's SQLite DATETIME stores it (`schema.utcnow`, always with microseconds)."""
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f")


class QuickRuns:
    """`begin_run` / `finish_run` of one SQLite catalog (one connection, closed by `close`)."""

    def __init__(self, db_path: Path) -> None:
        self._conn = sqlite3.connect(file_uri(db_path, "mode=rw"), uri=True, isolation_level=None)
        for pragma in ("synchronous=NORMAL", "foreign_keys=ON", "busy_timeout=10000"):  # as `database.sqlite_engine`
            self._conn.execute(f"PRAGMA {pragma}")

    def begin_run(self) -> int:
        """A new run; runs left "running" by a killed process become "interrupted"."""
        with self._transaction() as conn:
            conn.execute("UPDATE runs SET status = 'interrupted' WHERE status = 'running'")
            cursor = conn.execute("INSERT INTO runs (started_at, status, " + ", ".join(COUNTS) + ") "
                                  "VALUES (?, 'running', 0, 0, 0, 0, 0, 0, 0, 0.0)", (_now(),))
            return int(cursor.lastrowid or 0)

    def finish_run(self, run_id: int, status: str, counts: dict[str, Any], roots: Sequence[str]) -> None:
        """Close the run and mark its roots indexed now."""
        now = _now()
        with self._transaction() as conn:
            for root in roots:
                stored = path_to_db(root)
                if conn.execute("UPDATE roots SET last_indexed_at = ?, missing_since = NULL WHERE path = ?",
                                (now, stored)).rowcount == 0:
                    conn.execute("INSERT INTO roots (path, last_indexed_at) VALUES (?, ?)", (stored, now))
            conn.execute("UPDATE runs SET status = ?, finished_at = ?, " + ", ".join(f"{k} = ?" for k in COUNTS)
                         + " WHERE id = ?", (status, now, *(counts[k] for k in COUNTS), run_id))

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield self._conn
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    def close(self) -> None:
        self._conn.close()
