"""The SQLite catalog (SQLAlchemy 2 ORM): images, their embeddings, indexed roots, runs, failures.

Embeddings live in the catalog itself (float16 blobs keyed by the image id), so one SQLite transaction
commits rows and vectors together: the two can never disagree, whatever moment a run is killed at.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
from sqlalchemy import (
    BigInteger, Boolean, DateTime, Float, ForeignKey, Integer, LargeBinary, String, Text, create_engine, event,
    func, select, update, delete,
)
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

VECTOR_DTYPE = np.float16


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


class Base(DeclarativeBase):
    pass


class ImageRow(Base):
    __tablename__ = "images"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    path: Mapped[str] = mapped_column(Text, unique=True, index=True)
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


class EmbeddingRow(Base):
    __tablename__ = "embeddings"
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), primary_key=True)
    vector: Mapped[bytes] = mapped_column(LargeBinary)


class RootRow(Base):
    __tablename__ = "roots"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    path: Mapped[str] = mapped_column(Text, unique=True)
    last_indexed_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


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


class MetaRow(Base):
    __tablename__ = "meta"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


VECTORS_VERSION = "vectors_version"


def open_engine(db_path: Path) -> Engine:
    engine = create_engine(f"sqlite:///{db_path}", future=True)

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn, _record) -> None:  # WAL: readers keep answering while a run writes
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=10000")
        cur.close()

    Base.metadata.create_all(engine)
    return engine


def vector_to_blob(vec: np.ndarray) -> bytes:
    return np.asarray(vec, dtype=VECTOR_DTYPE).tobytes()


def blobs_to_matrix(blobs: list[bytes], dim: int) -> np.ndarray:
    if not blobs:
        return np.zeros((0, dim), dtype=np.float32)
    return np.frombuffer(b"".join(blobs), dtype=VECTOR_DTYPE).reshape(len(blobs), dim).astype(np.float32)


def get_version(session: Session) -> int:
    row = session.get(MetaRow, VECTORS_VERSION)
    return int(row.value) if row else 0


def bump_version(session: Session) -> int:
    """Called inside every transaction that changes vectors, so a stale FAISS file is detectable."""
    new = get_version(session) + 1
    session.merge(MetaRow(key=VECTORS_VERSION, value=str(new)))
    return new


def all_embeddings(session: Session, dim: int, batch: int = 50_000) -> tuple[np.ndarray, np.ndarray]:
    """(ids, float32 matrix) of every stored embedding: the input for rebuilding any FAISS index."""
    ids: list[int] = []
    blobs: list[bytes] = []
    for image_id, blob in session.execute(select(EmbeddingRow.image_id, EmbeddingRow.vector)).yield_per(batch):
        ids.append(image_id)
        blobs.append(blob)
    return np.asarray(ids, dtype=np.int64), blobs_to_matrix(blobs, dim)


def escape_like(prefix: str) -> str:
    return prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def under_clause(paths: list[str]):
    """Rows whose path is one of `paths` or lies below one of them."""
    clause = None
    for path in paths:
        base = path.rstrip("/")
        one = (ImageRow.path == base) | ImageRow.path.like(escape_like(base) + "/%", escape="\\")
        clause = one if clause is None else clause | one
    return clause


def image_ids_matching(session: Session, under: list[str] | None = None, exts: list[str] | None = None,
                       after_ns: int | None = None, before_ns: int | None = None) -> np.ndarray:
    """Ids allowed by the query filters, for FAISS's id selector."""
    query = select(ImageRow.id).where(ImageRow.ok.is_(True))
    if under:
        query = query.where(under_clause(under))
    if exts:
        query = query.where(ImageRow.ext.in_(exts))
    if after_ns is not None:
        query = query.where(ImageRow.mtime_ns >= after_ns)
    if before_ns is not None:
        query = query.where(ImageRow.mtime_ns < before_ns)
    return np.fromiter(session.scalars(query), dtype=np.int64)


def counts(session: Session) -> dict[str, int]:
    ok = session.scalar(select(func.count()).select_from(ImageRow).where(ImageRow.ok.is_(True))) or 0
    failed = session.scalar(select(func.count()).select_from(ImageRow).where(ImageRow.ok.is_(False))) or 0
    vectors = session.scalar(select(func.count()).select_from(EmbeddingRow)) or 0
    return {"images": ok, "failed": failed, "vectors": vectors}


def mark_stale_runs(session: Session) -> None:
    """A run left 'running' by a killed process is reported as interrupted."""
    session.execute(update(RunRow).where(RunRow.status == "running").values(status="interrupted"))


def delete_images(session: Session, ids: list[int]) -> None:
    for start in range(0, len(ids), 900):
        chunk = ids[start:start + 900]
        session.execute(delete(EmbeddingRow).where(EmbeddingRow.image_id.in_(chunk)))
        session.execute(delete(ImageRow).where(ImageRow.id.in_(chunk)))
