"""Where a store's catalog lives, and the one open connection to it.

SQLite in the store folder by default; a database server (PostgreSQL, any SQLAlchemy URL) when a new store is
made with `db` / CLIPSEARCH_DB, which its manifest then records (without password) so that every later open
finds it. `resolve_db` makes that choice; `CatalogPlace` opens the `Catalog` on first use and, for a cold query
on SQLite, a `QuickCatalog` over the standard library's sqlite3 (the same reads, `CatalogReads`) so a query
need not import SQLAlchemy.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clipsearch.errors import ClipsearchError
from clipsearch.store.manifest import CATALOG, catalog_url

if TYPE_CHECKING:  # pragma: no cover
    from clipsearch.catalog.catalog import Catalog
    from clipsearch.catalog.reads import CatalogReads
    from clipsearch.catalog.sqlite_reader import QuickCatalog
    from clipsearch.store.folder import StoreFolder


def resolve_db(path: Path, manifest: dict[str, Any] | None, db: str | None) -> str | None:
    """The database URL to open: an existing store's recorded one (with a password from `db` or CLIPSEARCH_DB
    when they name the same database), a new store's `db` or CLIPSEARCH_DB, else None (SQLite in the folder)."""
    from clipsearch.config import settings

    recorded = catalog_url(manifest)
    if manifest is not None and not db and recorded is None:
        return None  # the common case, a SQLite store: no SQLAlchemy import (a cold query skips it)
    if manifest is None and not (db or settings().db):
        return None
    from clipsearch.catalog.database import parse_url, public_url, same_database

    if manifest is not None:
        if db and (recorded is None or not same_database(parse_url(db), recorded)):
            given = public_url(parse_url(db)) if recorded is None else "names another database"
            raise ClipsearchError(f"db {given}: store {path} keeps its catalog in "
                                  f"{recorded or 'its folder (SQLite)'}",
                                  "leave the database option out: a store's catalog stays where it was made",
                                  param="db")
        if recorded is None:
            return None
        for candidate in (db, settings().db):
            if candidate and "://" in candidate and same_database(parse_url(candidate), recorded):
                return candidate
        return recorded
    db = db or settings().db
    if db:
        parse_url(db)  # a bad URL fails before anything is written
    return db


class CatalogPlace:
    """The store's catalog, opened on first use: the SQLite file in `folder`, or the database `db`."""

    def __init__(self, folder: StoreFolder, db: str | None) -> None:
        self._folder = folder
        self._db = db
        self._store_id = ((folder.manifest or {}).get("catalog") or {}).get("store_id") or uuid.uuid4().hex
        self._catalog: Catalog | None = None
        self._quick: QuickCatalog | None = None
        self._quick_tried = False

    @property
    def shared(self) -> bool:
        """Whether the catalog lives in a database server (several writers, readers on other machines)."""
        return self._db is not None

    @property
    def catalog(self) -> Catalog:
        if self._catalog is None:
            from clipsearch.catalog.catalog import Catalog

            folder = self._folder
            if not folder.readonly:
                folder.ensure_writable()
            self._catalog = Catalog(self._db or folder.path / CATALOG, readonly=folder.readonly,
                                    owner=self._store_id if self._db else None,
                                    folder=str(folder.path.resolve()), new=folder.manifest is None)
        return self._catalog

    @property
    def reads(self) -> CatalogReads:
        """What queries read through: the catalog when it is open, else (a SQLite catalog at this release's
        schema) a sqlite3 reader of the same reads that spares a cold query SQLAlchemy."""
        if self._catalog is not None or self.shared:
            return self.catalog
        quick = self._open_quick()
        return quick if quick is not None else self.catalog

    def _open_quick(self) -> QuickCatalog | None:
        if not self._quick_tried:
            from clipsearch.catalog.sqlite_reader import QuickCatalog

            self._quick_tried = True
            self._quick = QuickCatalog.open(self._folder.path / CATALOG, self._folder.readonly)
        return self._quick

    def quick_reads(self) -> QuickCatalog | None:
        """The sqlite3 reader of a writable SQLite catalog at this release's schema while the full catalog is not
        open (what an unchanged re-run reads and writes its run through), else None."""
        if self._catalog is not None or self.shared or self._folder.readonly:
            return None
        return self._open_quick()

    @property
    def sqlite_path(self) -> Path:
        """The SQLite catalog file of a store that keeps its catalog in its folder."""
        return self._folder.path / CATALOG

    @property
    def database(self) -> str | None:
        """The catalog's database URL without its password (None: SQLite in the folder), known without
        connecting: what an error about the server names."""
        if self._db is None:
            return None
        from clipsearch.catalog.database import public_url

        return public_url(self._db)

    def where(self) -> str:
        """Where the catalog is, as `info` shows it: the database URL without password, or "sqlite"."""
        return self.catalog.where if self._db else "sqlite"

    def manifest_record(self) -> dict[str, str] | None:
        """What a new store's manifest records about its catalog: {url without password, store id}, or None
        for SQLite in the folder."""
        if self._db is None:
            return None
        from clipsearch.catalog.database import public_url

        return {"url": public_url(self._db), "store_id": self._store_id}

    def close(self) -> None:
        if self._quick is not None:
            self._quick.close()
        if self._catalog is not None:
            self._catalog.close()

