"""The catalog: the code that speaks SQL (a query's few plain reads are also in `catalog_reader`, over
sqlite3, so a cold query skips SQLAlchemy). Images, their embeddings, roots, runs, failures.

Embeddings live in the catalog itself (float16 blobs keyed by the image id), so one transaction commits
rows and vectors together: the two can never disagree, whatever moment a run is killed at. Callers use the
verbs of `Catalog` and plain records; no ORM row leaves this module.

The catalog lives in an SQLite file (the embedded default) or in a server database such as PostgreSQL
(`database.py` makes the engine). A server catalog is *shared*: several writers, each on its own folders,
and readers on other machines. Safety there comes from the database, not from a file lock: every change is one
transaction, rows are unique per (path, frame), the vectors version is bumped by one atomic UPDATE (its row
lock orders the commits, so versions are strictly increasing in commit order), and writers hold PostgreSQL
advisory locks (`writer`): shared on the store and on each folder above theirs, exclusive on their own, so two
runs on the same or nested folders exclude each other while runs on separate folders proceed together.
A shared catalog records its owner (`store_id` in `meta`): a database holds one store's catalog.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import Connection, Integer, Text, cast, delete, func, insert, select, text, update
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session

from clipsearch.catalog import database, schema
from clipsearch.catalog.codec import (  # noqa: F401 (re-exported)
    HAS_VIDEO,
    VECTOR_DTYPE,
    VECTORS_VERSION,
    blobs_to_matrix,
    escape_like,
    vector_to_blob,
)
from clipsearch.catalog.records import ChunkResult, Encoded, EncodedVideo, Failed, ImageRecord, Known  # noqa: F401
from clipsearch.catalog.schema import STILL, EmbeddingRow, ImageRow, MetaRow, RootRow, RunRow, utcnow
from clipsearch.errors import ClipsearchError, StoreLockedError

STORE_ID = "store_id"  # the store a shared catalog belongs to (its manifest holds the same id)
STORE_FOLDER = "store_folder"  # where that store's folder was when it claimed the catalog (for messages)
_CHUNK = 900  # ids per IN (...) clause: under SQLite's variable limit


def _ext(path: str) -> str:
    return os.path.splitext(path)[1].lower().lstrip(".")[:16]


def under_clause(paths: Iterable[str]) -> Any:
    """Rows whose path is one of `paths` or lies below one of them."""
    clause = None
    for path in paths:
        base = path.rstrip("/") or "/"
        pattern = escape_like(base.rstrip("/")) + "/%"
        one = (ImageRow.path == base) | ImageRow.path.like(pattern, escape="\\")
        clause = one if clause is None else clause | one
    return clause


class Catalog:
    """Images, embeddings, roots and runs of one store."""

    def __init__(self, location: Path | str, readonly: bool = False, owner: str | None = None,
                 folder: str = "", new: bool = False) -> None:
        """`location`: the SQLite file, or a server database URL (a shared catalog, which belongs to the store
        `owner`, whose folder is `folder`; `new`: a store without a manifest yet may claim an empty one)."""
        self.readonly = readonly
        self.shared = database.is_url(location)
        self.owner = owner or ""
        self._lease: Connection | None = None  # a writer's connection: holds its advisory locks
        if self.shared:
            url = database.parse_url(str(location))
            self.where = database.public_url(url)
            self.engine = database.url_engine(url)
        else:
            self.where = str(location)
            self.engine = database.sqlite_engine(Path(location), readonly)
        try:
            with self.engine.connect() as conn:
                if readonly:
                    if schema.needs_upgrade(conn):
                        raise ClipsearchError(f"the catalog {self.where} is from an older clipsearch and the store "
                                              "is read-only", "open it once where it is writable to upgrade it")
                    if self.shared:
                        self._check_owner(conn, folder, new, claim=False)
                else:
                    with conn.begin():
                        if self.shared:  # one upgrader (or new store claiming it) at a time
                            conn.execute(select(func.pg_advisory_xact_lock(database.lock_key("clipsearch", "schema"))))
                        schema.upgrade(conn)
                        if self.shared:
                            self._check_owner(conn, folder, new, claim=True)
        except (OperationalError, DBAPIError) as exc:
            self.engine.dispose()
            if self.shared and isinstance(exc, OperationalError):
                raise database.unreachable(url, exc) from exc
            raise ClipsearchError(f"cannot open the catalog {self.where}: {exc.orig}",
                                  "check that the store folder is readable (and writable for indexing)"
                                  if not self.shared else "check the database user's rights") from exc
        except ClipsearchError:
            self.engine.dispose()
            raise

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
        if self._lease is not None:
            self._lease.close()
            self._lease = None
        self.engine.dispose()

    # --- writers on a shared catalog ------------------------------------------------------------------
    @contextlib.contextmanager
    def writer(self, folders: Sequence[str] | None, wait: float = 0.0) -> Iterator[None]:
        """Hold a writer's advisory locks for the block (shared catalogs): for `folders`, shared locks on the
        store and on every folder above each, exclusive on each (runs on the same or nested folders exclude
        each other; runs on separate folders do not); for None (the whole store: forget, rebuild), an
        exclusive lock on the store. Waits up to `wait` seconds, then raises StoreLockedError. The locks go
        with the connection, so a killed writer releases them at once."""
        if not self.shared:
            yield
            return
        store_key = database.lock_key(self.owner)
        wanted: dict[int, bool] = {}  # key → exclusive
        if folders is None:
            wanted[store_key] = True
        else:
            wanted[store_key] = False
            for folder in folders:
                parts = folder.rstrip("/").split("/")
                for i in range(1, len(parts)):
                    wanted.setdefault(database.lock_key(self.owner, "/".join(parts[:i]) or "/"), False)
                wanted[database.lock_key(self.owner, folder.rstrip("/") or "/")] = True
        conn = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        deadline = time.monotonic() + wait
        try:
            while True:
                taken = [conn.execute(select(func.pg_try_advisory_lock(key) if exclusive else
                                             func.pg_try_advisory_lock_shared(key))).scalar()
                         for key, exclusive in wanted.items()]
                if all(taken):
                    break
                conn.execute(select(func.pg_advisory_unlock_all()))
                if time.monotonic() >= deadline:
                    what = "the store" if folders is None else ", ".join(folders)
                    raise StoreLockedError(f"{what} is being written by {self._lock_holders(conn)} "
                                           f"(catalog {self.where})",
                                           "wait for that run to finish (queries still work meanwhile)")
                time.sleep(0.2)
        except BaseException:
            _release(conn)
            raise
        self._lease = conn
        try:
            yield
        finally:
            self._lease = None
            _release(conn)

    def _lock_holders(self, conn: Connection) -> str:
        names = conn.execute(text(
            "SELECT DISTINCT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.locktype = 'advisory' AND l.granted AND l.pid <> pg_backend_pid() "
            "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())")).scalars().all()
        return ", ".join(sorted(n for n in names if n)) or "another process"

    def run_active(self, run_id: int) -> bool:
        """Whether the run is still going (shared catalogs: its writer holds the run's advisory lock)."""
        if not self.shared:
            return False
        key = database.lock_key(self.owner, "run", str(run_id))
        with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            free = conn.execute(select(func.pg_try_advisory_lock_shared(key))).scalar()
            if free:
                conn.execute(select(func.pg_advisory_unlock_shared(key)))
        return not free

    def _session(self) -> Session:
        return Session(self.engine, expire_on_commit=False)

    # --- versions -------------------------------------------------------------------------------------
    def version(self) -> int:
        """Bumped by every transaction that changes vectors, so a stale FAISS file is detectable."""
        with self.engine.connect() as conn:  # every query asks: a plain SELECT, no ORM session
            value = conn.execute(select(MetaRow.value).where(MetaRow.key == VECTORS_VERSION)).scalar()
        return int(value) if value is not None else 0

    # --- reading --------------------------------------------------------------------------------------
    def known_rows(self, roots: Sequence[str], files: Sequence[str]) -> dict[str, Known]:
        q = (select(ImageRow.path, ImageRow.id, ImageRow.size, ImageRow.mtime_ns, ImageRow.ok, ImageRow.digest,
                    EmbeddingRow.image_id, ImageRow.frame_ms)
             .outerjoin(EmbeddingRow, EmbeddingRow.image_id == ImageRow.id).order_by(ImageRow.id))
        stmts = [q.where(under_clause(roots))] if roots else []
        stmts += [q.where(ImageRow.path.in_(files[i:i + _CHUNK])) for i in range(0, len(files), _CHUNK)]
        known: dict[str, Known] = {}
        with self._session() as s:
            for stmt in stmts:
                for path, id_, size, mtime, ok, digest, emb, frame_ms in s.execute(stmt):
                    prev = known.get(path)
                    if frame_ms == STILL or prev is None:
                        known[path] = Known(id_, size, mtime, ok, digest, emb is not None,
                                            (id_,) if frame_ms != STILL else ())
                    elif id_ not in prev.frame_ids:  # another frame of the same video
                        known[path] = Known(prev.id, prev.size, prev.mtime_ns, prev.ok, prev.digest,
                                            prev.has_vector and emb is not None, (*prev.frame_ids, id_))
        return known

    def all_embeddings(self, dim: int, batch: int = 50_000) -> tuple[int, np.ndarray, np.ndarray]:
        """(version, ids, float32 matrix) of every stored embedding: the input for rebuilding any FAISS index."""
        ids: list[int] = []
        blobs: list[bytes] = []
        with self._session() as s:
            version = _get_version(s)
            for image_id, blob in s.execute(select(EmbeddingRow.image_id, EmbeddingRow.vector)).yield_per(batch):
                if len(blob) != dim * np.dtype(VECTOR_DTYPE).itemsize:
                    raise ClipsearchError(f"the catalog holds an embedding of {len(blob) // 2} dimensions where "
                                          f"the store's model has {dim}", "re-index into a new store")
                ids.append(image_id)
                blobs.append(blob)
        return version, np.asarray(ids, dtype=np.int64), blobs_to_matrix(blobs, dim)

    def embeddings(self, ids: Sequence[int], dim: int) -> tuple[np.ndarray, np.ndarray]:
        """(ids, float32 matrix) of the stored embeddings of `ids` (those that have one), in no set order."""
        found: list[int] = []
        blobs: list[bytes] = []
        with self._session() as s:
            for i in range(0, len(ids), _CHUNK):
                chunk = [int(x) for x in ids[i:i + _CHUNK]]
                for image_id, blob in s.execute(select(EmbeddingRow.image_id, EmbeddingRow.vector)
                                                .where(EmbeddingRow.image_id.in_(chunk))):
                    found.append(image_id)
                    blobs.append(blob)
        return np.asarray(found, dtype=np.int64), blobs_to_matrix(blobs, dim)

    def duplicate_digests(self, under: Sequence[str] | None = None,
                          hidden_under: Sequence[str] = ()) -> list[list[ImageRecord]]:
        """Images whose content digest another image shares (byte-identical files), one list per digest.

        Both the images counted and those listed are restricted to `under` and kept out of `hidden_under`.
        """
        def restrict(query: Any) -> Any:
            query = query.where(ImageRow.ok.is_(True), ImageRow.digest.is_not(None), ImageRow.frame_ms == STILL)
            if under:
                query = query.where(under_clause(under))
            if hidden_under:
                query = query.where(~under_clause(hidden_under))
            return query

        shared = restrict(select(ImageRow.digest)).group_by(ImageRow.digest).having(func.count() > 1)
        groups: dict[str, list[ImageRecord]] = {}
        with self._session() as s:
            for r in s.scalars(restrict(select(ImageRow)).where(ImageRow.digest.in_(shared))
                               .order_by(ImageRow.digest, ImageRow.id)):
                groups.setdefault(r.digest, []).append(_record(r))
        return list(groups.values())

    def filter_ids(self, under: Sequence[str] | None = None, exts: Sequence[str] | None = None,
                   after_ns: int | None = None, before_ns: int | None = None,
                   hidden_under: Sequence[str] = (), stills_only: bool = False) -> np.ndarray:
        """Ids allowed by the query filters (and not under a hidden folder), for FAISS's id selector;
        `stills_only` leaves video frames out."""
        query = select(ImageRow.id).where(ImageRow.ok.is_(True))
        if stills_only:
            query = query.where(ImageRow.frame_ms == STILL)
        if under:
            query = query.where(under_clause(under))
        if exts:
            query = query.where(ImageRow.ext.in_(list(exts)))
        if after_ns is not None:
            query = query.where(ImageRow.mtime_ns >= after_ns)
        if before_ns is not None:
            query = query.where(ImageRow.mtime_ns < before_ns)
        if hidden_under:
            query = query.where(~under_clause(hidden_under))
        with self._session() as s:
            return np.fromiter(s.scalars(query), dtype=np.int64)

    def count_under(self, path: str) -> int:
        with self._session() as s:
            return s.scalar(select(func.count()).select_from(ImageRow).where(under_clause([path]))) or 0

    def ids_of(self, paths: Sequence[str], digests: Sequence[str]) -> set[int]:
        if not paths and not digests:
            return set()
        with self._session() as s:
            return set(s.scalars(select(ImageRow.id).where(ImageRow.path.in_(list(paths))
                                                           | ImageRow.digest.in_(list(digests)))))

    def images(self, ids: Sequence[int]) -> dict[int, ImageRecord]:
        out: dict[int, ImageRecord] = {}
        columns = (ImageRow.id, ImageRow.path, ImageRow.size, ImageRow.mtime_ns, ImageRow.width, ImageRow.height,
                   ImageRow.format, ImageRow.digest, ImageRow.frame_ms)
        with self.engine.connect() as conn:  # the rows of every query's hits: columns, no ORM objects
            for i in range(0, len(ids), _CHUNK):
                chunk = [int(x) for x in ids[i:i + _CHUNK]]
                for row in conn.execute(select(*columns).where(ImageRow.id.in_(chunk))):
                    out[row[0]] = ImageRecord(*row)
        return out

    def image(self, image_id: int) -> ImageRecord | None:
        """One indexed (readable, embedded) image by id; None for an unknown, deleted or failed one."""
        if not 0 < int(image_id) < 2**63:
            return None
        with self._session() as s:
            r = s.get(ImageRow, int(image_id))
            if r is None or not r.ok or not r.digest:
                return None
            return _record(r)

    def embeddings_by_id(self, ids: Sequence[int], dim: int) -> dict[int, np.ndarray]:
        """Stored embeddings (float32) of the given images; ids without one are absent."""
        found, matrix = self.embeddings(ids, dim)
        return {int(i): row for i, row in zip(found, matrix, strict=False)}

    def extensions(self) -> dict[str, int]:
        """Extension → number of indexed images, most common first."""
        with self._session() as s:
            rows = s.execute(select(ImageRow.ext, func.count()).where(ImageRow.ok.is_(True))
                             .group_by(ImageRow.ext).order_by(func.count().desc(), ImageRow.ext)).all()
        return {ext: n for ext, n in rows if ext}

    def digests(self) -> list[tuple[int, str, str]]:
        """(id, path, digest) of every indexed image, by id: e.g. to make the thumbnails that are missing."""
        with self._session() as s:
            return [(i, p, d) for i, p, d in s.execute(select(ImageRow.id, ImageRow.path, ImageRow.digest)
                                                       .where(ImageRow.ok.is_(True)).order_by(ImageRow.id)) if d]

    def indexed_paths(self) -> list[str]:
        with self._session() as s:
            return list(s.scalars(select(ImageRow.path).order_by(ImageRow.path)))

    def counts(self) -> dict[str, int]:
        with self._session() as s:
            ok = s.scalar(select(func.count()).select_from(ImageRow)
                          .where(ImageRow.ok.is_(True), ImageRow.frame_ms == STILL)) or 0
            failed = s.scalar(select(func.count()).select_from(ImageRow).where(ImageRow.ok.is_(False))) or 0
            vectors = s.scalar(select(func.count()).select_from(EmbeddingRow)) or 0
            counts = {"images": ok, "failed": failed, "vectors": vectors}
            if _get_meta(s, HAS_VIDEO):
                counts["videos"] = s.scalar(select(func.count(ImageRow.path.distinct()))
                                            .where(ImageRow.frame_ms != STILL)) or 0
                counts["frames"] = s.scalar(select(func.count()).select_from(ImageRow)
                                            .where(ImageRow.frame_ms != STILL)) or 0
        return counts

    def has_videos(self) -> bool:
        """Whether video frames were ever stored (queries then collapse frames to the best moment per video)."""
        with self._session() as s:
            return bool(_get_meta(s, HAS_VIDEO))

    def failures(self) -> list[dict[str, Any]]:
        with self._session() as s:
            rows = s.execute(select(ImageRow.path, ImageRow.error, ImageRow.size)
                             .where(ImageRow.ok.is_(False)).order_by(ImageRow.path)).all()
        return [{"path": p, "error": e, "size": n} for p, e, n in rows]

    def roots(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:  # read on every query (vanished roots): columns, no ORM objects
            rows = conn.execute(select(RootRow.path, RootRow.last_indexed_at, RootRow.missing_since)
                                .order_by(RootRow.path)).all()
        return [{"path": p, "last_indexed_at": at, "missing_since": gone} for p, at, gone in rows]

    def last_run(self) -> dict[str, Any] | None:
        with self._session() as s:
            r = s.scalars(select(RunRow).order_by(RunRow.id.desc()).limit(1)).first()
        if r is None:
            return None
        return {"id": r.id, "started_at": r.started_at, "finished_at": r.finished_at, "status": r.status,
                "added": r.added,
                "updated": r.updated, "moved": r.moved, "removed": r.removed, "unchanged": r.unchanged,
                "failed": r.failed, "seconds": r.seconds}

    # --- writing --------------------------------------------------------------------------------------
    def begin_run(self) -> int:
        """Record a new run; runs left 'running' by a killed process become 'interrupted'. On a shared catalog
        other writers' runs may be going on: only those whose writer is gone (its run lock is free) are, and
        this run's lock is held by the writer's connection until it ends."""
        with self._session() as s, s.begin():
            if not self.shared:
                s.execute(update(RunRow).where(RunRow.status == "running").values(status="interrupted"))
            elif self._lease is not None:
                for run_id in s.scalars(select(RunRow.id).where(RunRow.status == "running")):
                    key = database.lock_key(self.owner, "run", str(run_id))
                    if self._lease.execute(select(func.pg_try_advisory_lock(key))).scalar():
                        self._lease.execute(select(func.pg_advisory_unlock(key)))
                        s.execute(update(RunRow).where(RunRow.id == run_id).values(status="interrupted"))
            run = RunRow(status="running")
            s.add(run)
            s.flush()
            run_id = run.id
        if self.shared and self._lease is not None:
            self._lease.execute(select(func.pg_advisory_lock(database.lock_key(self.owner, "run", str(run_id)))))
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
                     touched: Sequence[tuple[int, int, int]], videos: Sequence[EncodedVideo] = ()) -> ChunkResult:
        """One transaction: new/changed rows with their embeddings, failures, (id, size, mtime) re-stats, and
        videos (a changed video's frame rows are replaced whole). `vector_ids` follow `encoded`, then the
        frames of `videos` in order."""
        result = ChunkResult(0, 0, 0, [], [])
        now = utcnow()
        with self._session() as s, s.begin():
            def values_of(e: Encoded) -> dict[str, Any]:
                return dict(path=e.path, ext=_ext(e.path), size=e.size, mtime_ns=e.mtime_ns, digest=e.digest,
                            width=e.width, height=e.height, format=e.format, ok=True, error=None, indexed_at=now)

            # New rows in one multi-row INSERT … RETURNING (ids in input order), their embeddings in one more:
            # a row-by-row flush costs ~1-3 ms per image, which dominated large first runs.
            fresh = [values_of(e) for e in encoded if e.known is None]
            new_ids = iter(s.scalars(insert(ImageRow).returning(ImageRow.id, sort_by_parameter_order=True), fresh).all()
                           if fresh else [])
            new_vectors: list[dict[str, Any]] = []
            for e in encoded:
                if e.known is None:
                    image_id = next(new_ids)
                    new_vectors.append({"image_id": image_id, "vector": vector_to_blob(e.vector)})
                    result.added += 1
                else:
                    image_id = e.known.id
                    s.execute(update(ImageRow).where(ImageRow.id == image_id).values(**values_of(e)))
                    s.merge(EmbeddingRow(image_id=image_id, vector=vector_to_blob(e.vector)))
                    result.removed_ids.append(image_id)
                    result.updated += 1
                result.vector_ids.append(image_id)
            if new_vectors:
                s.execute(insert(EmbeddingRow), new_vectors)
            for f in failed:
                values = dict(path=f.path, ext=_ext(f.path), size=f.size, mtime_ns=f.mtime_ns, digest=None,
                              width=None, height=None, format=None, ok=False, error=f.error, indexed_at=now)
                if f.known is not None and f.known.frame_ids:  # a video that no longer decodes: one failure row
                    _delete(s, f.known.all_ids)
                    result.removed_ids.extend(f.known.all_ids)
                    s.add(ImageRow(**values))
                elif f.known is None:
                    s.add(ImageRow(**values))
                else:
                    s.execute(update(ImageRow).where(ImageRow.id == f.known.id).values(**values))
                    s.execute(delete(EmbeddingRow).where(EmbeddingRow.image_id == f.known.id))
                    result.removed_ids.append(f.known.id)
            for v in videos:
                if v.known is not None:
                    _delete(s, v.known.all_ids)
                    result.removed_ids.extend(v.known.all_ids)
                    result.updated += 1
                else:
                    result.added += 1
                for frame_ms, vec in v.frames:
                    row = ImageRow(path=v.path, frame_ms=frame_ms, ext=_ext(v.path), size=v.size, mtime_ns=v.mtime_ns,
                                   digest=v.digest, width=v.width, height=v.height, format=v.format, ok=True,
                                   error=None, indexed_at=now)
                    s.add(row)
                    s.flush()
                    s.add(EmbeddingRow(image_id=row.id, vector=vector_to_blob(vec)))
                    result.vector_ids.append(row.id)
            if videos and not _get_meta(s, HAS_VIDEO):
                _set_flag(s, HAS_VIDEO)
            for image_id, size, mtime_ns in touched:
                s.execute(update(ImageRow).where(ImageRow.id == image_id)
                          .values(size=size, mtime_ns=mtime_ns, indexed_at=now))
            result.version = _bump_version(s)
        return result

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
                    path=path, ext=_ext(path), size=size, mtime_ns=mtime, indexed_at=utcnow()))

    def delete_images(self, ids: Sequence[int]) -> int:
        """Remove rows and embeddings; returns the new vectors version."""
        with self._session() as s, s.begin():
            _delete(s, ids)
            return _bump_version(s)

    def forget(self, path: str) -> tuple[list[int], int, int]:
        """Drop every row under `path` and the roots at or below it: (image ids, roots dropped, new version)."""
        with self._session() as s, s.begin():
            ids = list(s.scalars(select(ImageRow.id).where(under_clause([path]))))
            root_rows = [r for r in s.scalars(select(RootRow)) if r.path == path or r.path.startswith(path.rstrip("/") + "/")]
            for r in root_rows:
                s.delete(r)
            _delete(s, ids)
            return ids, len(root_rows), _bump_version(s)


def _release(conn: Connection) -> None:
    """Drop a session's advisory locks before its connection goes back to the pool (where it stays open)."""
    try:
        conn.execute(select(func.pg_advisory_unlock_all()))
    except DBAPIError:
        conn.invalidate()  # a broken connection: closing it for real ends the session and its locks
    finally:
        conn.close()


def _set_flag(session: Session, key: str) -> None:
    """meta[key] = "1", also when another writer sets it in the same moment (no unique-key error)."""
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        session.execute(pg_insert(MetaRow).values(key=key, value="1").on_conflict_do_nothing())
    else:
        session.execute(insert(MetaRow).values(key=key, value="1").prefix_with("OR IGNORE"))


def _get_meta(session: Session, key: str) -> str | None:
    row = session.get(MetaRow, key)
    return row.value if row else None


def _record(r: ImageRow) -> ImageRecord:
    return ImageRecord(r.id, r.path, r.size, r.mtime_ns, r.width, r.height, r.format, r.digest, r.frame_ms)


def _get_version(session: Session) -> int:
    return int(_get_meta(session, VECTORS_VERSION) or 0)


def _bump_version(session: Session) -> int:
    """One atomic increment: its row lock, held to commit, orders concurrent writers' commits, so versions
    rise strictly in commit order (a read-then-write would let two transactions take the same number)."""
    new = session.execute(update(MetaRow).where(MetaRow.key == VECTORS_VERSION)
                          .values(value=cast(cast(MetaRow.value, Integer) + 1, Text)).returning(MetaRow.value)
                          .execution_options(synchronize_session=False)).scalar()
    if new is None:  # a catalog that never held a vector
        session.execute(insert(MetaRow).values(key=VECTORS_VERSION, value="1"))
        return 1
    return int(new)


def _delete(session: Session, ids: Sequence[int]) -> None:
    for start in range(0, len(ids), _CHUNK):
        chunk = list(ids[start:start + _CHUNK])
        session.execute(delete(EmbeddingRow).where(EmbeddingRow.image_id.in_(chunk)))
        session.execute(delete(ImageRow).where(ImageRow.id.in_(chunk)))


def parse_datetime(value: dt.datetime | None) -> str | None:
    return None if value is None else value.isoformat(timespec="seconds")
