"""The catalog's tables, the column type that stores any file name, and numbered schema migrations.

Migrations: the `meta` table keeps `schema_version`. A store from an older release is upgraded in place on
open, one numbered step at a time, embeddings kept (a store written before versioning counts as version 1).
Each step is plain DDL that SQLite and PostgreSQL both accept, and is safe to run again: pysqlite commits DDL
as it runs (no BEGIN before it), so a process killed mid-upgrade can leave a step done but its version not
recorded, and the next open redoes the step. On PostgreSQL DDL is transactional: an upgrade is all or nothing,
and the catalog runs it under an advisory lock, so two processes opening an old catalog upgrade it once. We
chose this small runner over Alembic: the schema is one file, steps are a few lines each, and it adds no
dependency or migration folder to ship (the approach of simonw/llm and rclip).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Connection,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    insert,
    inspect,
    select,
    update,
)
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.schema import DefaultClause
from sqlalchemy.types import TypeDecorator

from clipsearch.catalog import fulltext
from clipsearch.catalog.codec import SCHEMA_LATEST, SCHEMA_VERSION, STILL, VECTORS_VERSION, path_from_db, path_to_db
from clipsearch.errors import ClipsearchError


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


class FsPath(TypeDecorator):
    """A file name as Python sees it (str, undecodable bytes as surrogates), round-tripped exactly."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: object) -> str | None:
        return None if value is None else path_to_db(value)

    def process_result_value(self, value: str | None, dialect: object) -> str | None:
        return None if value is None else path_from_db(value)


# --- tables ---------------------------------------------------------------------------------------------
class Base(DeclarativeBase):
    pass


class ImageRow(Base):
    """A searchable item: a still image, or one sampled frame of a video (same path, its own frame_ms)."""
    __tablename__ = "images"
    # schema 3: unique per (path, frame); schema 6: ids never reused (SQLite AUTOINCREMENT; PostgreSQL's
    # sequence never hands a number out twice)
    __table_args__ = (Index("uq_images_path_frame", "path", "frame_ms", unique=True),
                      Index("ix_images_taken_local", "taken_local"), Index("ix_images_gps_lat", "gps_lat"),
                      {"sqlite_autoincrement": True})
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    path: Mapped[str] = mapped_column(FsPath, index=True)
    frame_ms: Mapped[int] = mapped_column(BigInteger, default=STILL, server_default=str(STILL))  # schema 3
    ext: Mapped[str] = mapped_column(String(16), index=True, default="")
    size: Mapped[int] = mapped_column(BigInteger)
    mtime_ns: Mapped[int] = mapped_column(BigInteger)
    digest: Mapped[str | None] = mapped_column(String(32), index=True, nullable=True)
    width: Mapped[int | None] = mapped_column(Integer, nullable=True)
    height: Mapped[int | None] = mapped_column(Integer, nullable=True)
    format: Mapped[str | None] = mapped_column(String(16), nullable=True)
    ok: Mapped[bool] = mapped_column(Boolean, default=True, index=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    indexed_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    # schema 4: perceptual hashes of a still image (media/phash.picture_hashes: 3 x 64 bits), None until computed
    phash: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    # schema 5: photo metadata (`records.PhotoMeta`); meta_read is NULL on rows indexed before it was read
    meta_read: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    taken_local: Mapped[int | None] = mapped_column(BigInteger, nullable=True)  # local wall clock, µs
    taken_offset: Mapped[int | None] = mapped_column(Integer, nullable=True)  # minutes east of UTC
    camera_make: Mapped[str | None] = mapped_column(Text, nullable=True)
    camera_model: Mapped[str | None] = mapped_column(Text, nullable=True)
    lens: Mapped[str | None] = mapped_column(Text, nullable=True)
    gps_lat: Mapped[float | None] = mapped_column(Float, nullable=True)
    gps_lon: Mapped[float | None] = mapped_column(Float, nullable=True)


class EmbeddingRow(Base):
    __tablename__ = "embeddings"
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), primary_key=True)
    vector: Mapped[bytes] = mapped_column(LargeBinary)


class RootRow(Base):
    __tablename__ = "roots"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    path: Mapped[str] = mapped_column(FsPath, unique=True)
    last_indexed_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    missing_since: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)  # schema 2


class RunRow(Base):
    __tablename__ = "runs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    started_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    status: Mapped[str] = mapped_column(String(16), default="running")  # running/done/interrupted/failed
    scanned: Mapped[int] = mapped_column(Integer, default=0)
    added: Mapped[int] = mapped_column(Integer, default=0)
    updated: Mapped[int] = mapped_column(Integer, default=0)
    moved: Mapped[int] = mapped_column(Integer, default=0)
    removed: Mapped[int] = mapped_column(Integer, default=0)
    unchanged: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    seconds: Mapped[float] = mapped_column(Float, default=0.0)


class ImageTextRow(Base):
    """The text read in an image (schema 4): one row per image read, '' when it holds none (so it is not read
    again). `digest` is the content it was read from; `lines` the lines with their boxes (JSON, see
    `records.TextLine`). The full-text index over `text` is `fulltext.py`'s."""
    __tablename__ = "image_text"
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), primary_key=True)
    digest: Mapped[str] = mapped_column(String(32))
    text: Mapped[str] = mapped_column(Text, default="")
    lines: Mapped[str] = mapped_column(Text, default="[]")


class MetaRow(Base):
    __tablename__ = "meta"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


# --- migrations -----------------------------------------------------------------------------------------
def _server_default(column: Column[Any]) -> str:
    """The SQL default a NOT NULL column is added with (existing rows take it)."""
    default = column.server_default
    if not isinstance(default, DefaultClause):
        raise TypeError(f"{column} is NOT NULL: it needs a server default to be added to existing tables")
    return str(default.arg)


def _add_column(table: str, column_name: str) -> Callable[[Connection], None]:
    def step(conn: Connection) -> None:
        if column_name in {c["name"] for c in inspect(conn).get_columns(table)}:
            return  # added by an upgrade that stopped before it recorded the new version
        column = Base.metadata.tables[table].c[column_name]
        ddl_type = column.type.compile(dialect=conn.dialect)
        not_null = "" if column.nullable else f" NOT NULL DEFAULT {_server_default(column)}"
        conn.exec_driver_sql(f"ALTER TABLE {table} ADD COLUMN {column_name} {ddl_type}{not_null}")
    return step


def _video_frames(conn: Connection) -> None:
    """Schema 3: a path may hold several rows (a video's frames): unique on (path, frame_ms), not on path."""
    _add_column("images", "frame_ms")(conn)
    conn.exec_driver_sql("DROP INDEX IF EXISTS ix_images_path")
    conn.exec_driver_sql("CREATE INDEX IF NOT EXISTS ix_images_path ON images (path)")
    conn.exec_driver_sql("CREATE UNIQUE INDEX IF NOT EXISTS uq_images_path_frame ON images (path, frame_ms)")


PHOTO_META_COLUMNS = ("meta_read", "taken_local", "taken_offset", "camera_make", "camera_model", "lens", "gps_lat",
                      "gps_lon")


def _photo_meta(conn: Connection) -> None:
    """Schema 5: photo metadata columns, NULL on existing rows (an index run then reads their headers), and
    indexes for the capture-time range and the position's bounding box."""
    for name in PHOTO_META_COLUMNS:
        _add_column("images", name)(conn)
    conn.exec_driver_sql("CREATE INDEX IF NOT EXISTS ix_images_taken_local ON images (taken_local)")
    conn.exec_driver_sql("CREATE INDEX IF NOT EXISTS ix_images_gps_lat ON images (gps_lat)")


def _ids_never_reused(conn: Connection) -> None:
    """Schema 6: an image id names one file for the store's whole life. SQLite hands out max(id)+1, so the id of
    the newest row, once deleted, went to the next new file (and a cached thumbnail showed the old picture):
    `images` is rebuilt with AUTOINCREMENT. PostgreSQL's sequences never reuse a number: nothing to do.

    SQLite's own recipe for changing a table (sqlite.org/lang_altertable.html): foreign keys off *outside* the
    transaction (inside one the PRAGMA is ignored, and dropping `images` would cascade into `embeddings`), then in
    one transaction create, copy, drop, rename, re-index, and `PRAGMA foreign_key_check` before the commit."""
    if conn.dialect.name != "sqlite":
        return
    raw = conn.connection.dbapi_connection
    assert raw is not None
    old_sql = raw.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'images'").fetchone()[0]
    if "AUTOINCREMENT" in old_sql.upper():
        return  # rebuilt by an upgrade that stopped before it recorded the new version
    from sqlalchemy.schema import CreateIndex, CreateTable

    table = Base.metadata.tables["images"]
    create = str(CreateTable(table).compile(dialect=conn.dialect)).strip()
    create = create.replace("CREATE TABLE images (", "CREATE TABLE images_rebuilt (", 1)
    columns = ", ".join(c for c in table.c.keys()
                        if c in {row[1] for row in raw.execute("PRAGMA table_info(images)")})
    if raw.in_transaction:
        raw.commit()  # the steps before this one (each safe to run again)
    raw.execute("PRAGMA foreign_keys=OFF")
    try:
        raw.execute("BEGIN IMMEDIATE")
        try:
            raw.execute("DROP TABLE IF EXISTS images_rebuilt")
            raw.execute(create)
            raw.execute(f"INSERT INTO images_rebuilt ({columns}) SELECT {columns} FROM images")
            raw.execute("DROP TABLE images")
            raw.execute("ALTER TABLE images_rebuilt RENAME TO images")
            for index in table.indexes:
                raw.execute(str(CreateIndex(index).compile(dialect=conn.dialect)))
            broken = raw.execute("PRAGMA foreign_key_check").fetchall()
            if broken:
                raise ClipsearchError(f"rebuilding the catalog's images table would orphan {len(broken)} rows "
                                      f"(first: {broken[0]}); nothing was changed",
                                      "report this: the store is as it was before")
            raw.commit()
        except BaseException:
            raw.rollback()
            raise
    finally:
        raw.execute("PRAGMA foreign_keys=ON")


# step n turns schema n-1 into schema n
MIGRATIONS: dict[int, Callable[[Connection], None]] = {
    2: _add_column("roots", "missing_since"),
    3: _video_frames,
    4: _add_column("images", "phash"),  # filled by the next index run, without re-encoding
    5: _photo_meta,
    6: _ids_never_reused,
    7: fulltext.install,  # the image_text table (made by create_all) and its full-text index
}
LATEST = max(MIGRATIONS)
assert LATEST == SCHEMA_LATEST, "codec.SCHEMA_LATEST must name the last migration"


def stored_version(conn: Connection) -> int | None:
    """The schema version of an existing catalog; None for an empty database."""
    tables = inspect(conn).get_table_names()
    if "images" not in tables:
        return None
    if "meta" not in tables:
        return 1
    value = conn.execute(select(MetaRow.value).where(MetaRow.key == SCHEMA_VERSION)).scalar()
    return int(value) if value else 1


def _set_version(conn: Connection, version: int) -> None:
    if conn.execute(select(MetaRow.key).where(MetaRow.key == SCHEMA_VERSION)).first():
        conn.execute(update(MetaRow).where(MetaRow.key == SCHEMA_VERSION).values(value=str(version)))
    else:
        conn.execute(insert(MetaRow).values(key=SCHEMA_VERSION, value=str(version)))


def upgrade(conn: Connection) -> None:
    """Create a new catalog at the latest schema, or run the missing steps on an old one.

    One transaction where the driver makes DDL transactional; on SQLite each step may have run already.
    """
    version = stored_version(conn)
    if version is None:
        Base.metadata.create_all(conn)
        fulltext.install(conn)
        _set_version(conn, LATEST)
        conn.execute(insert(MetaRow).values(key=VECTORS_VERSION, value="0"))
        return
    if version == LATEST:
        return
    if version > LATEST:
        raise _newer(version)
    Base.metadata.create_all(conn)  # tables added since (e.g. meta) appear; existing ones are untouched
    for step in range(version + 1, LATEST + 1):
        try:
            MIGRATIONS[step](conn)
        except DBAPIError as exc:  # another process upgraded it a moment ago
            raise ClipsearchError(f"could not upgrade the store's catalog to schema {step}: {exc.orig}",
                                  "run the command again") from exc
    _set_version(conn, LATEST)


def _newer(version: int) -> ClipsearchError:
    return ClipsearchError(f"this store's catalog has schema {version}; this clipsearch knows up to {LATEST}",
                           "upgrade clipsearch to read it")


def needs_upgrade(conn: Connection, oldest: int = LATEST) -> bool:
    """Whether the catalog is missing or older than `oldest` (a read-only open passes SCHEMA_READABLE: it reads
    the catalog as it is from there on); one from a newer release is refused."""
    version = stored_version(conn)
    if version is not None and version > LATEST:
        raise _newer(version)
    return version is None or version < oldest
