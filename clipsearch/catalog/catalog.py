"""The catalog: images, their embeddings, roots, runs, failures, over SQLAlchemy (SQLite or PostgreSQL).

Embeddings live in the catalog itself (float16 blobs keyed by the image id), so one transaction commits
rows and vectors together: the two can never disagree, whatever moment a run is killed at. Callers use the
verbs of `Catalog` and plain records; no ORM row leaves this module. The reads of a query and of the vector
store are `reads.SqlReads` (one SQL text each, which `QuickCatalog` also runs over sqlite3); the steps of a
chunk's commit are in `writes`; the advisory locks of a shared catalog in `locks`.

The catalog lives in an SQLite file (the embedded default) or in a server database such as PostgreSQL
(`database.py` makes the engine). A server catalog is *shared*: several writers, each on its own folders,
and readers on other machines. Safety there comes from the database, not from a file lock: every change is one
transaction, rows are unique per (path, frame), the vectors version is bumped by one atomic UPDATE (its row
lock orders the commits, so versions are strictly increasing in commit order), and writers hold advisory
locks (`writer`, see `locks`). A shared catalog records its owner (`store_id` in `meta`): a database holds one
store's catalog.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, delete, func, insert, select, text, update
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session

from clipsearch.catalog import database, fulltext, schema, text_rows
from clipsearch.catalog.codec import HAS_VIDEO, HASHES_VERSION, SCHEMA_READABLE, STILL, TEXT_INDEX, escape_like
from clipsearch.catalog.locks import WriterLocks, lock_schema
from clipsearch.catalog.reads import CHUNK, STREAM_BATCH, Row, SqlReads, record_of
from clipsearch.catalog.records import (
    ChunkResult,
    Encoded,
    EncodedVideo,
    Failed,
    ImageRecord,
    PhotoMeta,
    ReadText,
    TextTask,
)
from clipsearch.catalog.schema import EmbeddingRow, ImageRow, MetaRow, RootRow, RunRow, utcnow
from clipsearch.catalog.writes import ChunkCommit, bump_version, delete_rows, ext_of, get_meta, record_photo_meta
from clipsearch.errors import ClipsearchError, disk_full, is_disk_full, server_short_of

STORE_ID = "store_id"  # the store a shared catalog belongs to (its manifest holds the same id)
STORE_FOLDER = "store_folder"  # where that store's folder was when it claimed the catalog (for messages)


def under_clause(paths: Iterable[str]) -> Any:
    """Rows whose path is one of `paths` or lies below one of them."""
    clause = None
    for path in paths:
        base = path.rstrip("/") or "/"
        pattern = escape_like(base.rstrip("/")) + "/%"
        one = (ImageRow.path == base) | ImageRow.path.like(pattern, escape="\\")
        clause = one if clause is None else clause | one
    return clause


class Catalog(SqlReads):
    """Images, embeddings, roots and runs of one store."""

    def __init__(self, location: Path | str, readonly: bool = False, owner: str | None = None,
                 folder: str = "", new: bool = False) -> None:
        """`location`: the SQLite file, or a server database URL (a shared catalog, which belongs to the store
        `owner`, whose folder is `folder`; `new`: a store without a manifest yet may claim an empty one)."""
        self.readonly = readonly
        self.shared = database.is_url(location)
        self.owner = owner or ""
        if self.shared:
            url = database.parse_url(str(location))
            self.where = database.public_url(url)
            self.engine = database.url_engine(url)
        else:
            self.where = str(location)
            self.engine = database.sqlite_engine(Path(location), readonly)
        self.dialect = self.engine.dialect.name
        self._locks = WriterLocks(self.engine, self.owner, self.where)
        try:
            with self.engine.connect() as conn:
                self._open(conn, folder, new)
        except (OperationalError, DBAPIError) as exc:
            self.engine.dispose()
            short = server_short_of(exc, self.where, "opening the catalog") if self.shared else None
            if short is not None:  # e.g. no room for a new store's tables, or no free connection
                raise short from exc
            if self.shared and isinstance(exc, OperationalError):
                raise database.unreachable(url, exc) from exc
            if not self.shared and is_disk_full(exc, Path(location).parent):
                raise disk_full(Path(location).parent, "opening the catalog") from exc
            raise ClipsearchError(f"cannot open the catalog {self.where}: {exc.orig}",
                                  "check that the store folder is readable (and writable for indexing)"
                                  if not self.shared else "check the database user's rights") from exc
        except ClipsearchError:
            self.engine.dispose()
            raise

    def _open(self, conn: Connection, folder: str, new: bool) -> None:
        """Check (read-only) or upgrade (writable) the schema, and the owner of a shared catalog."""
        if self.readonly:
            if schema.needs_upgrade(conn, oldest=SCHEMA_READABLE):
                raise ClipsearchError(f"the catalog {self.where} is from an older clipsearch and the store "
                                      "is read-only", "open it once where it is writable to upgrade it")
            if self.shared:
                self._check_owner(conn, folder, new, claim=False)
            return
        with conn.begin():
            if self.shared:  # one upgrader (or new store claiming it) at a time
                lock_schema(conn)
            schema.upgrade(conn)
            if self.shared:
                self._check_owner(conn, folder, new, claim=True)
                fulltext.retry_trigram(conn)  # pg_trgm installed since the catalog was made: index the text now

    def _check_owner(self, conn: Connection, folder: str, new: bool, claim: bool) -> None:
        """A shared catalog belongs to one store: refuse another store's (unless ours is new, in the same folder,
        and the catalog is empty: left by a first run that died before its store had a manifest)."""
        meta = dict(conn.execute(select(MetaRow.key, MetaRow.value)
                                 .where(MetaRow.key.in_([STORE_ID, STORE_FOLDER]))).all())
        holder = meta.get(STORE_ID)
        if holder == self.owner:
            return
        empty = not conn.execute(select(ImageRow.id).limit(1)).first() and \
            not conn.execute(select(RootRow.id).limit(1)).first()
        if not (empty and (holder is None or (new and meta.get(STORE_FOLDER) == folder))):
            raise ClipsearchError(f"the database {self.where} already holds the catalog of another store "
                                  f"({meta.get(STORE_FOLDER) or 'a store made elsewhere'})",
                                  "give each store its own database (createdb NAME), or open that store's folder")
        if claim:
            for key, value in ((STORE_ID, self.owner), (STORE_FOLDER, folder)):
                conn.execute(delete(MetaRow).where(MetaRow.key == key))
                conn.execute(insert(MetaRow).values(key=key, value=value))

    def close(self) -> None:
        self._locks.close()
        self.engine.dispose()

    # --- writers on a shared catalog (the locks are `locks.WriterLocks`) -------------------------------
    @contextlib.contextmanager
    def writer(self, folders: Sequence[str] | None, wait: float = 0.0) -> Iterator[None]:
        """Hold a writer's advisory locks for the block (shared catalogs; SQLite's writer lock is the store's
        lock file): for `folders`, the store shared and each folder exclusively; for None (the whole store:
        forget, rebuild), the store exclusively. Waits up to `wait` seconds, then raises StoreLockedError."""
        if not self.shared:
            yield
            return
        with self._locks.writer(folders, wait):
            yield

    def run_active(self, run_id: int) -> bool:
        """Whether the run is still going (shared catalogs: its writer holds the run's advisory lock)."""
        return self.shared and self._locks.run_active(run_id)

    # --- how the shared reads run (`reads.SqlReads`) ----------------------------------------------------
    def _rows(self, sql: str, params: Mapping[str, Any]) -> list[Row]:
        with self.engine.connect() as conn:  # every query reads: plain statements, no ORM session
            return [tuple(row) for row in conn.execute(text(sql), params)]

    def _stream(self, sql: str, params: Mapping[str, Any]) -> Iterator[Row]:
        with self.engine.connect() as conn:
            for row in conn.execution_options(yield_per=STREAM_BATCH).execute(text(sql), params):
                yield tuple(row)

    def _session(self) -> Session:
        return Session(self.engine, expire_on_commit=False)

    # --- reading ------------------------------------------------------------------------------------------
    def image(self, image_id: int) -> ImageRecord | None:
        """One indexed (readable, embedded) image by id; None for an unknown, deleted or failed one."""
        if not 0 < int(image_id) < 2**63:
            return None
        rows = self._rows(f"SELECT {self._columns()} FROM images WHERE id = :id AND ok = :ok AND digest IS NOT NULL",
                          {"id": int(image_id), "ok": True})
        return record_of(rows[0]) if rows else None

    def extensions(self) -> dict[str, int]:
        """Extension → number of indexed files (a video once, however many moments it has), most common first."""
        files = func.count(ImageRow.path.distinct())
        with self._session() as s:
            rows = s.execute(select(ImageRow.ext, files).where(ImageRow.ok.is_(True))
                             .group_by(ImageRow.ext).order_by(files.desc(), ImageRow.ext)).all()
        return {ext: n for ext, n in rows if ext}

    def digests(self) -> list[tuple[int, str, str]]:
        """(id, path, digest) of every indexed image, by id: e.g. to make the thumbnails that are missing."""
        with self._session() as s:
            rows = s.execute(select(ImageRow.id, ImageRow.path, ImageRow.digest)
                             .where(ImageRow.ok.is_(True)).order_by(ImageRow.id))
            return [(i, p, d) for i, p, d in rows if d]

    def indexed_paths(self) -> list[str]:
        with self._session() as s:
            return list(s.scalars(select(ImageRow.path).order_by(ImageRow.path)))

    def counts(self) -> dict[str, int]:
        """images: still images (photos); videos: video files; frames: their sampled moments; failed; vectors."""
        with self._session() as s:
            ok = s.scalar(select(func.count()).select_from(ImageRow)
                          .where(ImageRow.ok.is_(True), ImageRow.frame_ms == STILL)) or 0
            failed = s.scalar(select(func.count()).select_from(ImageRow).where(ImageRow.ok.is_(False))) or 0
            vectors = s.scalar(select(func.count()).select_from(EmbeddingRow)) or 0
            counts = {"images": ok, "failed": failed, "vectors": vectors, "videos": 0, "frames": 0}
            if get_meta(s, HAS_VIDEO):
                counts["videos"] = s.scalar(select(func.count(ImageRow.path.distinct()))
                                            .where(ImageRow.frame_ms != STILL)) or 0
                counts["frames"] = s.scalar(select(func.count()).select_from(ImageRow)
                                            .where(ImageRow.frame_ms != STILL)) or 0
        return counts

    def failures(self) -> list[dict[str, Any]]:
        with self._session() as s:
            rows = s.execute(select(ImageRow.path, ImageRow.error, ImageRow.size)
                             .where(ImageRow.ok.is_(False)).order_by(ImageRow.path)).all()
        return [{"path": p, "error": e, "size": n} for p, e, n in rows]

    def last_run(self) -> dict[str, Any] | None:
        with self._session() as s:
            r = s.scalars(select(RunRow).order_by(RunRow.id.desc()).limit(1)).first()
        if r is None:
            return None
        return {"id": r.id, "started_at": r.started_at, "finished_at": r.finished_at, "status": r.status,
                "added": r.added,
                "updated": r.updated, "moved": r.moved, "removed": r.removed, "unchanged": r.unchanged,
                "failed": r.failed, "seconds": r.seconds}

    # --- writing ------------------------------------------------------------------------------------------
    def begin_run(self) -> int:
        """Record a new run; runs left 'running' by a killed process become 'interrupted'. On a shared catalog
        other writers' runs may be going on: only those whose writer is gone (its run lock is free) are, and
        this run's lock is held by the writer's connection until it ends."""
        holding = self.shared and self._locks.holding
        with self._session() as s, s.begin():
            if not self.shared:
                s.execute(update(RunRow).where(RunRow.status == "running").values(status="interrupted"))
            elif holding:
                for run_id in s.scalars(select(RunRow.id).where(RunRow.status == "running")):
                    if self._locks.run_abandoned(run_id):
                        s.execute(update(RunRow).where(RunRow.id == run_id).values(status="interrupted"))
            run = RunRow(status="running")
            s.add(run)
            s.flush()
            run_id = run.id
        if holding:
            self._locks.hold_run(run_id)
        return run_id

    def finish_run(self, run_id: int, status: str, counts: dict[str, Any], roots: Sequence[str],
                   missing_roots: Sequence[str] = ()) -> None:
        """Close the run and record its roots: present ones as indexed now, vanished ones as missing."""
        now = utcnow()
        with self._session() as s, s.begin():
            for root in roots:
                row = s.scalars(select(RootRow).where(RootRow.path == root)).first()
                if row:
                    row.last_indexed_at, row.missing_since = now, None
                else:
                    s.add(RootRow(path=root, last_indexed_at=now))
            for root in missing_roots:
                s.execute(update(RootRow).where(RootRow.path == root, RootRow.missing_since.is_(None))
                          .values(missing_since=now))
            s.execute(update(RunRow).where(RunRow.id == run_id).values(status=status, finished_at=now, **counts))

    def add_roots(self, roots: Iterable[str]) -> None:
        with self._session() as s, s.begin():
            s.add_all(RootRow(path=r) for r in roots)

    def commit_chunk(self, encoded: Sequence[Encoded], failed: Sequence[Failed],
                     touched: Sequence[tuple[int, int, int]], videos: Sequence[EncodedVideo] = (),
                     hashed: Sequence[tuple[int, bytes]] = (),
                     metas: Sequence[tuple[int, PhotoMeta]] = ()) -> ChunkResult:
        """One transaction: new/changed rows with their embeddings, failures, (id, size, mtime) re-stats,
        videos (a changed video's frame rows are replaced whole), (id, perceptual hashes) of rows hashed and
        (id, metadata) of rows whose metadata was read without re-encoding. `vector_ids` follow `encoded`, then
        the frames of `videos` in order."""
        with self._session() as s, s.begin():
            chunk = ChunkCommit(s)
            chunk.stills(encoded)
            chunk.failures(failed)
            chunk.videos(videos)
            chunk.restat(touched)
            chunk.hashes(hashed)
            chunk.photo_meta(metas)
            chunk.result.version = bump_version(s)
        return chunk.result

    # --- the text read inside images (`text_rows`) -------------------------------------------------------
    def lacking_text(self, roots: Sequence[str], files: Sequence[str]) -> list[TextTask]:
        """Indexed images (and frames) under `roots` or among `files` whose text has not been read."""
        tasks: list[TextTask] = []
        with self._session() as s:
            if roots:
                tasks += text_rows.lacking_text(s, under_clause(roots))
            for i in range(0, len(files), CHUNK):
                tasks += text_rows.lacking_text(s, ImageRow.path.in_(files[i:i + CHUNK]))
        return tasks

    def save_texts(self, texts: Sequence[ReadText]) -> list[ReadText]:
        """One transaction: the text read in these images, kept only where the content is still the one read
        (returned: those kept)."""
        with self._session() as s, s.begin():
            return text_rows.save_texts(s, texts)

    def mark_reads_text(self) -> None:
        """From now on every index run of this store reads the text inside its images."""
        with self._session() as s, s.begin():
            text_rows.mark_reads_text(s)

    def text_info(self) -> dict[str, Any] | None:
        """What the store knows of the text inside its images (None when it does not read it): images read, those
        with some text, and which full-text index serves the matches."""
        if not self.reads_text():
            return None
        with self._session() as s:
            read, found = text_rows.text_counts(s)
            if self.dialect == "sqlite":
                index = "FTS5 trigram"
            else:
                index = "pg_trgm" if get_meta(s, TEXT_INDEX) == "trigram" else "none (pg_trgm missing: ILIKE scans)"
        return {"read": read, "with_text": found, "index": index}

    def record_photo_meta(self, metas: Sequence[tuple[int, PhotoMeta]]) -> None:
        """(id, metadata) read from files' headers (the metadata-only pass): rows and embeddings otherwise kept,
        the vectors version untouched."""
        with self._session() as s, s.begin():
            for start in range(0, len(metas), CHUNK):
                record_photo_meta(s, metas[start:start + CHUNK])

    def set_hashes(self, hashed: Sequence[tuple[int, bytes]]) -> None:
        """(id, perceptual hashes) of images indexed before hashes were kept; embeddings are untouched, so the
        vectors version stays and the hashes version rises (what a process keeping the hashes checks)."""
        if not hashed:
            return
        with self._session() as s, s.begin():
            ChunkCommit(s).hashes(hashed)
            bump_version(s, HASHES_VERSION)

    def record_moves(self, moves: Sequence[tuple[str, int, int, int]]) -> None:
        """(new path, id, size, mtime): a file moved inside the collection keeps its row and embedding."""
        if not moves:
            return
        with self._session() as s, s.begin():
            # Two passes so that swapping two names never collides on the unique path constraint. The parking
            # name starts with a noncharacter (no absolute path does) and holds no NUL (PostgreSQL text cannot).
            for _path, image_id, _size, _mtime in moves:
                s.execute(update(ImageRow).where(ImageRow.id == image_id).values(path=f"\ufdd1moving\ufdd1{image_id}"))
            for path, image_id, size, mtime in moves:
                s.execute(update(ImageRow).where(ImageRow.id == image_id).values(
                    path=path, ext=ext_of(path), size=size, mtime_ns=mtime, indexed_at=utcnow()))

    def delete_images(self, ids: Sequence[int]) -> int:
        """Remove rows and embeddings; returns the new vectors version."""
        with self._session() as s, s.begin():
            delete_rows(s, ids)
            return bump_version(s)

    # --- re-embedding: the same rows, new embeddings ------------------------------------------------------
    def copy_to(self, target: Path) -> None:
        """A consistent copy of this SQLite catalog, its WAL included, as the file `target` (SQLite's online
        backup: readers and the caller's writer lock make it a snapshot)."""
        import sqlite3

        if self.shared:
            raise ClipsearchError("a catalog in a database server is not copied to a file",
                                  "re-embed into a new store instead")
        source = sqlite3.connect(self.where)
        try:
            copy = sqlite3.connect(target)
            try:
                source.backup(copy)
            finally:
                copy.close()
        finally:
            source.close()

    def frame_interval(self) -> float | None:
        """The seconds between the sampled frames of the store's videos (the smallest gap between two moments of
        one video), or None when it holds no video with two frames: a re-embed samples them the same way."""
        gaps: list[int] = []
        with self._session() as s:
            prev: tuple[str, int] | None = None
            for path, ms in s.execute(select(ImageRow.path, ImageRow.frame_ms).where(ImageRow.frame_ms != STILL)
                                      .order_by(ImageRow.path, ImageRow.frame_ms)):
                if prev is not None and prev[0] == path and ms > prev[1]:
                    gaps.append(ms - prev[1])
                prev = (path, ms)
        return min(gaps) / 1000 if gaps else None

    def drop_embeddings(self) -> int:
        """Remove every embedding, keeping every row and its id (a re-embed writes new ones by id; rows left
        without one are re-encoded by the next run that finds their file); returns the new vectors version."""
        with self._session() as s, s.begin():
            s.execute(delete(EmbeddingRow))
            return bump_version(s)

    def meta(self, key: str) -> str | None:
        with self._session() as s:
            return get_meta(s, key)

    def set_meta(self, key: str, value: str) -> None:
        with self._session() as s, s.begin():
            s.execute(delete(MetaRow).where(MetaRow.key == key))
            s.execute(insert(MetaRow).values(key=key, value=value))

    def forget(self, path: str) -> tuple[list[int], int, int]:
        """Drop every row under `path` and the roots at or below it: (image ids, roots dropped, new version)."""
        with self._session() as s, s.begin():
            ids = list(s.scalars(select(ImageRow.id).where(under_clause([path]))))
            below = path.rstrip("/") + "/"
            root_rows = [r for r in s.scalars(select(RootRow)) if r.path == path or r.path.startswith(below)]
            for r in root_rows:
                s.delete(r)
            delete_rows(s, ids)
            return ids, len(root_rows), bump_version(s)


def parse_datetime(value: dt.datetime | None) -> str | None:
    return None if value is None else value.isoformat(timespec="seconds")
