"""Where a catalog lives: an SQLite file in the store folder (the embedded default) or any SQLAlchemy URL.

This module makes engines and turns connection failures into one clear error; the SQL itself stays in
`catalog.py`. A URL is recorded without its password (`public_url`): the password comes from the
environment (`PGPASSWORD`, `~/.pgpass`, libpq's usual places) or from `CLIPSEARCH_DB` when that names the
same database (`same_database`).
"""

from __future__ import annotations

import hashlib
import os
import socket
import sqlite3
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

from clipsearch.errors import ClipsearchError

# dialect → the package whose absence the error names
_DRIVER_HINTS = {"postgresql": 'pip install "clipsearch[postgres]" (psycopg)'}
SUPPORTED = ("sqlite", "postgresql")


def is_url(location: str | Path) -> bool:
    return isinstance(location, str) and "://" in location


def parse_url(text: str) -> URL:
    """A catalog URL, checked: a known dialect with a database name (the error names the library parameter `db`)."""
    try:
        url = make_url(text)
    except ArgumentError as exc:
        raise ClipsearchError(f"{public_text(text)} is not a database URL",
                              "write it as postgresql+psycopg://USER@HOST/DATABASE", param="db") from exc
    if url.get_backend_name() not in SUPPORTED:
        raise ClipsearchError(f"clipsearch keeps catalogs in SQLite or PostgreSQL, not {url.get_backend_name()}",
                              "use a postgresql+psycopg://USER@HOST/DATABASE URL", param="db")
    if url.get_backend_name() == "sqlite":
        raise ClipsearchError("an SQLite catalog lives in the store folder; no URL is needed for it",
                              "leave the database option out for SQLite", param="db")
    if not url.database:
        raise ClipsearchError(f"the database URL {public_url(url)} names no database",
                              "end it with /DATABASE", param="db")
    if url.drivername == "postgresql":
        url = url.set(drivername="postgresql+psycopg")  # psycopg 3: the driver the postgres extra installs
    return url


def public_url(url: URL | str) -> str:
    """The URL as it may be written down: everything but the password."""
    url = make_url(url) if isinstance(url, str) else url
    bare = URL.create(url.drivername, url.username, None, url.host, url.port, url.database, url.query)
    return bare.render_as_string(hide_password=False)  # (URL.set(password=None) keeps the password)


def public_text(text: str) -> str:
    """A URL-ish string with any password hidden, for error messages about strings that do not parse."""
    try:
        return public_url(make_url(text))
    except ArgumentError:
        return "the database URL"


def same_database(a: URL | str, b: URL | str) -> bool:
    """Whether two URLs name the same database (the password aside)."""
    return public_url(a) == public_url(b)


def lock_key(*parts: str) -> int:
    """A signed 64-bit key for PostgreSQL advisory locks, stable across machines and processes."""
    digest = hashlib.blake2b("\0".join(parts).encode("utf-8", "surrogateescape"), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def sqlite_engine(db_path: Path, readonly: bool) -> Engine:
    """SQLite in WAL mode (readers answer while a run writes); a read-only store reads its WAL too."""
    if readonly:
        from clipsearch.catalog.sqlite_uri import readonly_uri

        uri = readonly_uri(db_path)
        return create_engine("sqlite://", creator=lambda: sqlite3.connect(uri, uri=True, check_same_thread=False))
    engine = create_engine(f"sqlite:///{db_path}")

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=10000")
        cur.close()

    return engine


def url_engine(url: URL) -> Engine:
    """An engine for a server database; connections name this process (seen in pg_stat_activity and in
    "locked" errors) and give up after 10 s on an unreachable host."""
    try:
        return create_engine(url, pool_pre_ping=True, connect_args={
            "application_name": f"clipsearch pid {os.getpid()} on {socket.gethostname()}"[:63],
            "connect_timeout": 10})
    except (NoSuchModuleError, ModuleNotFoundError, ImportError) as exc:
        hint = _DRIVER_HINTS.get(url.get_backend_name(), f"install the driver {url.drivername}")
        raise ClipsearchError(f"no database driver for {url.drivername} is installed", hint, param="db") from exc


def unreachable(url: URL, exc: BaseException) -> ClipsearchError:
    """One line for a database that does not answer, refuses the login or does not exist."""
    reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if "password" in reason.lower() or "authentication" in reason.lower():
        hint = "set PGPASSWORD, add the login to ~/.pgpass, or give the password in CLIPSEARCH_DB"
    elif "does not exist" in reason.lower():
        hint = "create the database first (createdb), or point the URL at an existing one"
    else:
        hint = "check that the server runs and that the URL's host, port and user are right"
    return ClipsearchError(f"cannot reach the catalog database {public_url(url)}: {reason}", hint)
