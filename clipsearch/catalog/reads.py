"""The catalog reads that a query, a duplicate search and the vector store make: one protocol, one SQL text each.

`CatalogReads` lists them; callers (query engine, duplicate finder, vector store) type against it and never
against a class. `SqlReads` implements each read once, as plain SQL that SQLite and PostgreSQL both accept, and
leaves only *how a statement runs* to its two subclasses: `Catalog` runs it through SQLAlchemy (any database)
and `QuickCatalog` through the standard library's sqlite3 (a cold query then never imports SQLAlchemy, ~0.4 s).
So the two cannot answer differently, and neither hands reads over to the other.

Statements bind named parameters (`:p0`), a style that sqlite3 and SQLAlchemy's `text()` both accept. Values
travel in their stored form and are decoded here (`codec`: the path code, float16 blobs; SQLite hands
timestamps back as ISO text). This module imports no SQLAlchemy.
"""

from __future__ import annotations

import datetime as dt
from abc import abstractmethod
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Protocol

import numpy as np

from clipsearch.catalog import fulltext, photo_filter
from clipsearch.catalog.codec import (
    HAS_VIDEO,
    HASHES_VERSION,
    READS_TEXT,
    SCHEMA_HASHES,
    SCHEMA_PHOTO_META,
    SCHEMA_VERSION,
    STILL,
    VECTOR_DTYPE,
    VECTORS_VERSION,
    blobs_to_matrix,
    hash_blobs_to_matrix,
    lines_from_json,
    path_from_db,
    path_to_db,
    under_patterns,
)
from clipsearch.catalog.photo_filter import PhotoFilter
from clipsearch.catalog.records import ImageRecord, Known, PhotoMeta, TextLine
from clipsearch.errors import ClipsearchError

CHUNK = 900  # values per IN (...) list: under SQLite's limit of bound variables
STREAM_BATCH = 50_000  # rows a streamed read fetches at a time

Row = tuple[Any, ...]


class CatalogReads(Protocol):
    """What a query, a duplicate search and the vector store read from a catalog (nothing else)."""

    def version(self) -> int:
        """The vectors version: bumped by every transaction that changes embeddings."""
        ...

    def hashes_version(self) -> int:
        """Bumped when perceptual hashes are added to stored rows without a new vectors version."""
        ...

    def all_embeddings(self, dim: int) -> tuple[int, np.ndarray, np.ndarray]:
        """(version, ids, float32 matrix) of every stored embedding: the input for rebuilding a FAISS index."""
        ...

    def roots(self) -> list[dict[str, Any]]:
        """The indexed folders by path: path, last_indexed_at, missing_since."""
        ...

    def has_videos(self) -> bool:
        """Whether video frames were ever stored (queries then collapse frames to the best moment)."""
        ...

    def count_under(self, path: str) -> int:
        """Rows (readable or not) at or below `path`."""
        ...

    def ids_of(self, paths: Sequence[str], digests: Sequence[str]) -> set[int]:
        """Ids of the rows with one of these paths or content digests."""
        ...

    def filter_ids(self, under: Sequence[str] | None = None, exts: Sequence[str] | None = None,
                   after_ns: int | None = None, before_ns: int | None = None,
                   hidden_under: Sequence[str] = (), stills_only: bool = False,
                   photo: PhotoFilter | None = None) -> np.ndarray:
        """Ids of the indexed images the filters allow (none under `hidden_under`; no video frames with
        `stills_only`; `photo`: capture time, camera, place), for FAISS's id selector."""
        ...

    def photo_counts(self) -> dict[str, int]:
        """How many indexed images have a capture time, a camera, a place; and how many were never read."""
        ...

    def newest(self, limit: int, offset: int = 0, under: Sequence[str] | None = None,
               exts: Sequence[str] | None = None, after_ns: int | None = None, before_ns: int | None = None,
               hidden_under: Sequence[str] = ()) -> list[ImageRecord]:
        """Indexed files newest first (by capture time, else modification time: `photo_filter.when_sql`; ties by
        id, so pages neither skip nor repeat; a video once, as its first moment), filtered like `filter_ids`: a
        page of a listing without a query."""
        ...

    def images(self, ids: Sequence[int]) -> dict[int, ImageRecord]:
        """The rows of these ids (unknown ids are absent)."""
        ...

    def embeddings(self, ids: Sequence[int], dim: int) -> tuple[np.ndarray, np.ndarray]:
        """(ids, float32 matrix) of the stored embeddings of `ids` (those that have one), in no set order."""
        ...

    def embeddings_by_id(self, ids: Sequence[int], dim: int) -> dict[int, np.ndarray]:
        """Stored embeddings (float32) of the given images; ids without one are absent."""
        ...

    def duplicate_digests(self, under: Sequence[str] | None = None,
                          hidden_under: Sequence[str] = ()) -> list[list[ImageRecord]]:
        """Still images whose content digest another shares (byte-identical files), one list per digest, by id;
        both those counted and those listed lie in `under` and outside `hidden_under`."""
        ...

    def reads_text(self) -> bool:
        """Whether the store reads the text inside its images (`index --ocr` was used once)."""
        ...

    def text_ids(self, words: Sequence[str]) -> np.ndarray:
        """Ids of the indexed images whose text holds every word (substring, case-insensitive)."""
        ...

    def text_candidates(self, words: Sequence[str], limit: int) -> dict[int, tuple[TextLine, ...]]:
        """Up to `limit` indexed images whose text holds at least one of the words, with their lines."""
        ...

    def texts(self, ids: Sequence[int]) -> dict[int, tuple[TextLine, ...]]:
        """The lines read in these images (those read; an image read without text has none)."""
    def hashes_kept(self) -> bool:
        """Whether the catalog has the perceptual hashes column (schema 4; a read-only older store may not)."""
        ...

    def picture_hashes(self, under: Sequence[str] | None = None,
                       hidden_under: Sequence[str] = ()) -> tuple[np.ndarray, np.ndarray]:
        """(ids, (n, 3) uint64 perceptual hashes) of the readable still images that have them, by id."""
        ...

    def count_unhashed(self, under: Sequence[str] | None = None, hidden_under: Sequence[str] = ()) -> int:
        """Readable still images without perceptual hashes yet (indexed before they were kept)."""
        ...


# --- building statements ---------------------------------------------------------------------------------
class _Params:
    """The named parameters of one statement: `p(value)` binds a value and returns its placeholder."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def __call__(self, value: Any) -> str:
        name = f"p{len(self.values)}"
        self.values[name] = value
        return ":" + name

    def many(self, values: Iterable[Any]) -> str:
        return ", ".join(self(v) for v in values)


def _under(p: _Params, paths: Sequence[str], negate: bool = False) -> str:
    """Rows whose path is one of `paths` or lies below one."""
    one = [f"(path = {p(exact)} OR path LIKE {p(pattern)} ESCAPE '\\')" for exact, pattern in under_patterns(paths)]
    clause = "(" + " OR ".join(one) + ")"
    return "NOT " + clause if negate else clause


def _filters(p: _Params, under: Sequence[str] | None, exts: Sequence[str] | None, after_ns: int | None,
             before_ns: int | None, hidden_under: Sequence[str], stills_only: bool,
             photo: PhotoFilter | None = None) -> str:
    where = [f"ok = {p(True)}"]
    if stills_only:
        where.append(f"frame_ms = {p(STILL)}")
    if under:
        where.append(_under(p, under))
    if exts:
        where.append(f"ext IN ({p.many(exts)})")
    if after_ns is not None:
        where.append(f"mtime_ns >= {p(after_ns)}")
    if before_ns is not None:
        where.append(f"mtime_ns < {p(before_ns)}")
    if hidden_under:
        where.append(_under(p, hidden_under, negate=True))
    if photo:
        where.extend(photo_filter.where(p, photo))
    return " AND ".join(where)


_BASE_COLUMNS = "id, path, size, mtime_ns, width, height, format, digest, frame_ms"
_IMAGE_COLUMNS = (_BASE_COLUMNS + ", meta_read, taken_local, taken_offset, camera_make, camera_model, lens, gps_lat, "
                  "gps_lon")
_IMAGE_COLUMNS_OLD = _BASE_COLUMNS + ", NULL" * 8  # a catalog before schema 5 read as it is (read-only)
_META = "SELECT value FROM meta WHERE key = :key"


def record_of(row: Row) -> ImageRecord:
    """An ImageRecord from a row of `_IMAGE_COLUMNS`."""
    meta = PhotoMeta(*row[10:17]) if row[9] else None
    return ImageRecord(row[0], path_from_db(row[1]), row[2], row[3], row[4], row[5], row[6], row[7], row[8], meta)


def _datetime(value: str | dt.datetime | None) -> dt.datetime | None:
    """SQLite (read without SQLAlchemy's types) hands a timestamp back as ISO text; PostgreSQL as a datetime."""
    return dt.datetime.fromisoformat(value) if isinstance(value, str) else value


def _chunks(values: Sequence[Any]) -> Iterator[list[Any]]:
    for i in range(0, len(values), CHUNK):
        yield list(values[i:i + CHUNK])


# --- the reads, once ---------------------------------------------------------------------------------------
class SqlReads(CatalogReads):
    """Every read of `CatalogReads` as one SQL text; a subclass says how a statement runs."""

    dialect = "sqlite"  # the database's SQL dialect: only the full-text match is written per dialect

    @abstractmethod
    def _rows(self, sql: str, params: Mapping[str, Any]) -> list[Row]:
        """All rows of one statement."""

    @abstractmethod
    def _stream(self, sql: str, params: Mapping[str, Any]) -> Iterator[Row]:
        """The rows of one statement, fetched `STREAM_BATCH` at a time (for reads of the whole catalog)."""

    def _value(self, sql: str, params: Mapping[str, Any]) -> Any:
        rows = self._rows(sql, params)
        return rows[0][0] if rows else None

    def version(self) -> int:
        value = self._value(_META, {"key": VECTORS_VERSION})
        return int(value) if value is not None else 0

    def hashes_version(self) -> int:
        value = self._value(_META, {"key": HASHES_VERSION})
        return int(value) if value is not None else 0

    def _photo_columns(self) -> bool:
        """Whether the catalog has the photo metadata columns (a read-only store may be at schema 3)."""
        known: bool | None = getattr(self, "_has_photo_columns", None)
        if known is None:
            value = self._value(_META, {"key": SCHEMA_VERSION})
            known = value is not None and int(value) >= SCHEMA_PHOTO_META
            self._has_photo_columns = known
        return known

    def _columns(self) -> str:
        return _IMAGE_COLUMNS if self._photo_columns() else _IMAGE_COLUMNS_OLD

    def all_embeddings(self, dim: int) -> tuple[int, np.ndarray, np.ndarray]:
        version = self.version()  # first: the embeddings read after it are at least as new
        ids: list[int] = []
        blobs: list[bytes] = []
        size = dim * np.dtype(VECTOR_DTYPE).itemsize
        for image_id, blob in self._stream("SELECT image_id, vector FROM embeddings", {}):
            if len(blob) != size:
                raise ClipsearchError(f"the catalog holds an embedding of {len(blob) // 2} dimensions where "
                                      f"the store's model has {dim}", "re-index into a new store")
            ids.append(image_id)
            blobs.append(blob)
        return version, np.asarray(ids, dtype=np.int64), blobs_to_matrix(blobs, dim)

    def roots(self) -> list[dict[str, Any]]:
        rows = self._rows("SELECT path, last_indexed_at, missing_since FROM roots ORDER BY path", {})
        return [{"path": path_from_db(p), "last_indexed_at": _datetime(at), "missing_since": _datetime(gone)}
                for p, at, gone in rows]

    def has_videos(self) -> bool:
        return bool(self._value(_META, {"key": HAS_VIDEO}))

    def known_rows(self, roots: Sequence[str], files: Sequence[str]) -> dict[str, Known]:
        """An index run's read (not a query's): what the catalog knows of every path under `roots` and of the
        single `files`, a video's frames gathered under its path."""
        sql = ("SELECT path, images.id, size, mtime_ns, ok, digest, embeddings.image_id, frame_ms, "
               "phash IS NOT NULL, meta_read FROM images LEFT OUTER JOIN embeddings "
               "ON embeddings.image_id = images.id WHERE {} ORDER BY images.id")
        statements = []
        if roots:
            p = _Params()
            statements.append((sql.format(_under(p, roots)), p.values))
        for chunk in _chunks([path_to_db(f) for f in files]):
            p = _Params()
            statements.append((sql.format(f"path IN ({p.many(chunk)})"), p.values))
        known: dict[str, Known] = {}
        for statement, params in statements:
            for stored, id_, size, mtime, ok, digest, emb, frame_ms, hashed, meta_read in self._rows(statement,
                                                                                                      params):
                path = path_from_db(stored)
                prev = known.get(path)
                if frame_ms == STILL or prev is None:
                    known[path] = Known(id_, size, mtime, bool(ok), digest, emb is not None,
                                        (id_,) if frame_ms != STILL else (), bool(hashed), has_meta=bool(meta_read))
                elif id_ not in prev.frame_ids:  # another frame of the same video
                    known[path] = Known(prev.id, prev.size, prev.mtime_ns, prev.ok, prev.digest,
                                        prev.has_vector and emb is not None, (*prev.frame_ids, id_),
                                        has_meta=prev.has_meta and bool(meta_read))
        return known

    def count_under(self, path: str) -> int:
        p = _Params()
        return int(self._value(f"SELECT count(*) FROM images WHERE {_under(p, [path])}", p.values) or 0)

    def ids_of(self, paths: Sequence[str], digests: Sequence[str]) -> set[int]:
        found: set[int] = set()
        for column, values in (("path", [path_to_db(x) for x in paths]), ("digest", list(digests))):
            for chunk in _chunks(values):
                p = _Params()
                found.update(r[0] for r in self._rows(f"SELECT id FROM images WHERE {column} IN ({p.many(chunk)})",
                                                      p.values))
        return found

    def filter_ids(self, under: Sequence[str] | None = None, exts: Sequence[str] | None = None,
                   after_ns: int | None = None, before_ns: int | None = None,
                   hidden_under: Sequence[str] = (), stills_only: bool = False,
                   photo: PhotoFilter | None = None) -> np.ndarray:
        if photo and not self._photo_columns():
            raise ClipsearchError("this store was indexed before photo metadata was kept, and it is read-only",
                                  "open it once where it is writable and index its folders again (only the files' "
                                  "headers are read)")
        p = _Params()
        where = _filters(p, under, exts, after_ns, before_ns, hidden_under, stills_only, photo)
        if photo is not None and photo.near is not None:  # the SQL keeps a bounding box; the distance is exact
            rows = self._stream(f"SELECT id, gps_lat, gps_lon FROM images WHERE {where}", p.values)
            return photo_filter.within(rows, photo.near)
        return np.fromiter((r[0] for r in self._stream(f"SELECT id FROM images WHERE {where}", p.values)),
                           dtype=np.int64)

    def photo_counts(self) -> dict[str, int]:
        if not self._photo_columns():
            unread = self._value("SELECT count(*) FROM images WHERE ok = :ok AND frame_ms = :still",
                                 {"ok": True, "still": STILL})
            return {"with_capture_time": 0, "with_camera": 0, "with_place": 0, "metadata_unread": int(unread or 0)}
        row = self._rows("SELECT count(taken_local), count(COALESCE(camera_make, camera_model)), count(gps_lat), "
                         "count(*) - count(meta_read) FROM images WHERE ok = :ok AND frame_ms = :still",
                         {"ok": True, "still": STILL})
        taken, camera, place, unread = (int(v or 0) for v in row[0]) if row else (0, 0, 0, 0)
        return {"with_capture_time": taken, "with_camera": camera, "with_place": place, "metadata_unread": unread}

    def newest(self, limit: int, offset: int = 0, under: Sequence[str] | None = None,
               exts: Sequence[str] | None = None, after_ns: int | None = None, before_ns: int | None = None,
               hidden_under: Sequence[str] = ()) -> list[ImageRecord]:
        p = _Params()
        where = _filters(p, under, exts, after_ns, before_ns, hidden_under, stills_only=False)
        still = p(STILL)
        first_moments = f"SELECT min(id) FROM images WHERE frame_ms <> {still} GROUP BY path"
        # a catalog before schema 5 (read as it is) has no capture times: its files' times order it
        when = photo_filter.when_sql(p, photo_filter.zone_minutes()) if self._photo_columns() else "mtime_ns"
        return [record_of(row) for row in self._rows(
            f"SELECT {self._columns()} FROM images WHERE {where} AND (frame_ms = {still} OR id IN ({first_moments})) "
            f"ORDER BY {when} DESC, id DESC LIMIT {p(int(limit))} OFFSET {p(int(offset))}", p.values)]

    def images(self, ids: Sequence[int]) -> dict[int, ImageRecord]:
        out: dict[int, ImageRecord] = {}
        for chunk in _chunks([int(x) for x in ids]):
            p = _Params()
            for row in self._rows(f"SELECT {self._columns()} FROM images WHERE id IN ({p.many(chunk)})", p.values):
                out[row[0]] = record_of(row)
        return out

    def embeddings(self, ids: Sequence[int], dim: int) -> tuple[np.ndarray, np.ndarray]:
        found: list[int] = []
        blobs: list[bytes] = []
        for chunk in _chunks([int(x) for x in ids]):
            p = _Params()
            for image_id, blob in self._rows(f"SELECT image_id, vector FROM embeddings "
                                             f"WHERE image_id IN ({p.many(chunk)})", p.values):
                found.append(image_id)
                blobs.append(blob)
        return np.asarray(found, dtype=np.int64), blobs_to_matrix(blobs, dim)

    def embeddings_by_id(self, ids: Sequence[int], dim: int) -> dict[int, np.ndarray]:
        found, matrix = self.embeddings(ids, dim)
        return {int(i): row for i, row in zip(found, matrix, strict=False)}

    def duplicate_digests(self, under: Sequence[str] | None = None,
                          hidden_under: Sequence[str] = ()) -> list[list[ImageRecord]]:
        p = _Params()
        where = _filters(p, under, None, None, None, hidden_under, stills_only=True) + " AND digest IS NOT NULL"
        shared = f"SELECT digest FROM images WHERE {where} GROUP BY digest HAVING count(*) > 1"
        groups: dict[str, list[ImageRecord]] = {}
        for row in self._rows(f"SELECT {self._columns()} FROM images WHERE {where} AND digest IN ({shared}) "
                              "ORDER BY digest, id", p.values):
            record = record_of(row)
            groups.setdefault(row[7], []).append(record)
        return list(groups.values())


    def hashes_kept(self) -> bool:
        value = self._value(_META, {"key": SCHEMA_VERSION})
        return value is not None and int(value) >= SCHEMA_HASHES

    def picture_hashes(self, under: Sequence[str] | None = None,
                       hidden_under: Sequence[str] = ()) -> tuple[np.ndarray, np.ndarray]:
        if not self.hashes_kept():
            return np.zeros(0, dtype=np.int64), hash_blobs_to_matrix([])
        p = _Params()
        where = _filters(p, under, None, None, None, hidden_under, stills_only=True) + " AND phash IS NOT NULL"
        ids: list[int] = []
        blobs: list[bytes] = []
        for image_id, blob in self._stream(f"SELECT id, phash FROM images WHERE {where} ORDER BY id", p.values):
            ids.append(image_id)
            blobs.append(bytes(blob))
        return np.asarray(ids, dtype=np.int64), hash_blobs_to_matrix(blobs)

    def count_unhashed(self, under: Sequence[str] | None = None, hidden_under: Sequence[str] = ()) -> int:
        p = _Params()
        where = _filters(p, under, None, None, None, hidden_under, stills_only=True)
        if self.hashes_kept():
            where += " AND phash IS NULL"
        return int(self._value(f"SELECT count(*) FROM images WHERE {where}", p.values) or 0)

    # --- the text read inside images (`fulltext` writes the match per dialect) ----------------------------
    def reads_text(self) -> bool:
        return bool(self._value(_META, {"key": READS_TEXT}))

    def text_ids(self, words: Sequence[str]) -> np.ndarray:
        p = _Params()
        match = fulltext.all_words(self.dialect, p, words)
        sql = f"SELECT id FROM images WHERE ok = {p(True)} AND id IN ({match})"
        return np.fromiter((r[0] for r in self._stream(sql, p.values)), dtype=np.int64)

    def text_candidates(self, words: Sequence[str], limit: int) -> dict[int, tuple[TextLine, ...]]:
        p = _Params()
        match = fulltext.any_word(self.dialect, p, words)
        rows = self._rows(f"SELECT t.image_id, t.lines FROM image_text t JOIN images i ON i.id = t.image_id "
                          f"WHERE i.ok = {p(True)} AND t.image_id IN ({match}) ORDER BY t.image_id "
                          f"LIMIT {int(limit)}", p.values)
        return {image_id: _lines(value) for image_id, value in rows}

    def texts(self, ids: Sequence[int]) -> dict[int, tuple[TextLine, ...]]:
        out: dict[int, tuple[TextLine, ...]] = {}
        for chunk in _chunks([int(x) for x in ids]):
            p = _Params()
            for image_id, value in self._rows(f"SELECT image_id, lines FROM image_text "
                                              f"WHERE image_id IN ({p.many(chunk)})", p.values):
                out[image_id] = _lines(value)
        return out


def _lines(value: str | None) -> tuple[TextLine, ...]:
    return tuple(TextLine(text, box) for text, box in lines_from_json(value))
