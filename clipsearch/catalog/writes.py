"""The row writes inside the catalog's transactions: one chunk's commit in small steps, and the writes that
several verbs share (deleting rows with their embeddings, bumping the vectors version, meta flags).

`Catalog.commit_chunk` is the hot path of a run (every chunk of a first index goes through it), so its steps
live here, each on the open session of the chunk's one transaction: new stills in one multi-row INSERT …
RETURNING, changed stills updated in place, failures, videos (a changed video's frames replaced whole),
re-stats, then the version bump.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Integer, Text, cast, delete, insert, select, update
from sqlalchemy.orm import Session

from clipsearch.catalog.codec import HAS_VIDEO, VECTORS_VERSION, vector_to_blob
from clipsearch.catalog.reads import CHUNK
from clipsearch.catalog.records import ChunkResult, Encoded, EncodedVideo, Failed, PhotoMeta
from clipsearch.catalog.schema import PHOTO_META_COLUMNS, EmbeddingRow, ImageRow, ImageTextRow, MetaRow, utcnow


def ext_of(path: str) -> str:
    return os.path.splitext(path)[1].lower().lstrip(".")[:16]


class ChunkCommit:
    """The steps of one chunk's transaction on `session`; counts and ids collect in `result`."""

    def __init__(self, session: Session) -> None:
        self.s = session
        self.now = utcnow()
        self.result = ChunkResult(0, 0, 0, [], [])

    def _row(self, f: Encoded | EncodedVideo, **more: Any) -> dict[str, Any]:
        return dict(path=f.path, ext=ext_of(f.path), size=f.size, mtime_ns=f.mtime_ns, digest=f.digest,
                    width=f.width, height=f.height, format=f.format, ok=True, error=None, indexed_at=self.now,
                    **f.meta.columns(), **more)

    def _still_row(self, e: Encoded) -> dict[str, Any]:
        return self._row(e, phash=e.hashes)

    def stills(self, encoded: Sequence[Encoded]) -> None:
        """New and changed still images with their embeddings; `vector_ids` follow `encoded`."""
        new_ids = iter(self._insert_new([e for e in encoded if e.known is None]))
        new_vectors: list[dict[str, Any]] = []
        for e in encoded:
            if e.known is None:
                image_id = next(new_ids)
                new_vectors.append({"image_id": image_id, "vector": vector_to_blob(e.vector)})
                self.result.added += 1
            else:
                image_id = self._replace(e, e.known.id)
            self.result.vector_ids.append(image_id)
        if new_vectors:
            self.s.execute(insert(EmbeddingRow), new_vectors)

    def _insert_new(self, fresh: Sequence[Encoded]) -> list[int]:
        """One multi-row INSERT … RETURNING (ids in input order): a row-by-row flush costs ~1-3 ms per image,
        which dominated large first runs."""
        if not fresh:
            return []
        stmt = insert(ImageRow).returning(ImageRow.id, sort_by_parameter_order=True)
        return list(self.s.scalars(stmt, [self._still_row(e) for e in fresh]).all())

    def _replace(self, e: Encoded, image_id: int) -> int:
        self.s.execute(update(ImageRow).where(ImageRow.id == image_id).values(**self._still_row(e)))
        self.s.merge(EmbeddingRow(image_id=image_id, vector=vector_to_blob(e.vector)))
        if e.known is None or e.known.digest != e.digest:  # new content: its text is read again; the same content
            forget_text(self.s, [image_id])  # re-encoded (a re-embed with another model) keeps the text read
        self.result.removed_ids.append(image_id)
        self.result.updated += 1
        return image_id

    def failures(self, failed: Sequence[Failed]) -> None:
        """Files that no longer (or never did) decode: a row without an embedding."""
        for f in failed:
            values = dict(path=f.path, ext=ext_of(f.path), size=f.size, mtime_ns=f.mtime_ns, digest=None,
                          width=None, height=None, format=None, ok=False, error=f.error, indexed_at=self.now,
                          phash=None, **NO_PHOTO_META)
            if f.known is not None and f.known.frame_ids:  # a video that no longer decodes: one failure row
                delete_rows(self.s, f.known.all_ids)
                self.result.removed_ids.extend(f.known.all_ids)
                self.s.add(ImageRow(**values))
            elif f.known is None:
                self.s.add(ImageRow(**values))
            else:
                self.s.execute(update(ImageRow).where(ImageRow.id == f.known.id).values(**values))
                self.s.execute(delete(EmbeddingRow).where(EmbeddingRow.image_id == f.known.id))
                forget_text(self.s, [f.known.id])
                self.result.removed_ids.append(f.known.id)

    def videos(self, videos: Sequence[EncodedVideo]) -> None:
        """Each video's frames as rows with embeddings. A changed (or re-embedded) video keeps the id of every
        frame at a moment it had before (ids are forever); its other old frames go, new moments get new rows."""
        for v in videos:
            kept: dict[int, int] = {}
            if v.known is not None:
                kept = {ms: i for i, ms in self.s.execute(select(ImageRow.id, ImageRow.frame_ms)
                                                          .where(ImageRow.id.in_(v.known.all_ids)))}
                self.result.removed_ids.extend(v.known.all_ids)
                self.result.updated += 1
            else:
                self.result.added += 1
            stale = [i for ms, i in kept.items() if ms not in {m for m, _v in v.frames}]
            delete_rows(self.s, stale)
            for frame_ms, vec in v.frames:
                image_id = kept.get(frame_ms)
                if image_id is None:
                    row = ImageRow(**self._row(v, frame_ms=frame_ms))
                    self.s.add(row)
                    self.s.flush()
                    image_id = row.id
                    self.s.add(EmbeddingRow(image_id=image_id, vector=vector_to_blob(vec)))
                else:
                    self.s.execute(update(ImageRow).where(ImageRow.id == image_id)
                                   .values(**self._row(v, frame_ms=frame_ms)))
                    self.s.merge(EmbeddingRow(image_id=image_id, vector=vector_to_blob(vec)))
                self.result.vector_ids.append(image_id)
        if videos and not get_meta(self.s, HAS_VIDEO):
            set_flag(self.s, HAS_VIDEO)

    def photo_meta(self, metas: Sequence[tuple[int, PhotoMeta]]) -> None:
        """(id, metadata): rows whose metadata was read without re-encoding (unchanged content)."""
        record_photo_meta(self.s, metas)

    def hashes(self, hashed: Sequence[tuple[int, bytes]]) -> None:
        """(id, perceptual hashes) of rows whose image was hashed without being re-encoded."""
        for image_id, blob in hashed:
            self.s.execute(update(ImageRow).where(ImageRow.id == image_id).values(phash=blob))

    def restat(self, touched: Sequence[tuple[int, int, int]]) -> None:
        """(id, size, mtime): files whose bytes are unchanged but whose stat changed."""
        for image_id, size, mtime_ns in touched:
            self.s.execute(update(ImageRow).where(ImageRow.id == image_id)
                           .values(size=size, mtime_ns=mtime_ns, indexed_at=self.now))


# --- shared by the verbs ----------------------------------------------------------------------------------
NO_PHOTO_META = {name: None for name in PHOTO_META_COLUMNS}  # a row that is no (readable) image


def record_photo_meta(session: Session, metas: Sequence[tuple[int, PhotoMeta]]) -> None:
    """Write photo metadata onto existing rows by id (one executemany UPDATE)."""
    if metas:
        session.execute(update(ImageRow), [{"id": image_id, **meta.columns()} for image_id, meta in metas])


def delete_rows(session: Session, ids: Sequence[int]) -> None:
    """Rows and their embeddings."""
    for start in range(0, len(ids), CHUNK):
        chunk = list(ids[start:start + CHUNK])
        forget_text(session, chunk)
        session.execute(delete(EmbeddingRow).where(EmbeddingRow.image_id.in_(chunk)))
        session.execute(delete(ImageRow).where(ImageRow.id.in_(chunk)))


def forget_text(session: Session, ids: Sequence[int]) -> None:
    """The text read in these images (their content changed or they are gone); explicit, not left to the foreign
    key's cascade, so SQLite's full-text triggers see every delete."""
    session.execute(delete(ImageTextRow).where(ImageTextRow.image_id.in_(list(ids))))


def get_meta(session: Session, key: str) -> str | None:
    row = session.get(MetaRow, key)
    return row.value if row else None


def set_flag(session: Session, key: str) -> None:
    """meta[key] = "1", also when another writer sets it in the same moment (no unique-key error)."""
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        session.execute(pg_insert(MetaRow).values(key=key, value="1").on_conflict_do_nothing())
    else:
        session.execute(insert(MetaRow).values(key=key, value="1").prefix_with("OR IGNORE"))


def bump_version(session: Session, key: str = VECTORS_VERSION) -> int:
    """One atomic increment of the meta counter `key` (the vectors version, or HASHES_VERSION): its row lock,
    held to commit, orders concurrent writers' commits, so versions rise strictly in commit order (a
    read-then-write would let two transactions take the same number)."""
    new = session.execute(update(MetaRow).where(MetaRow.key == key)
                          .values(value=cast(cast(MetaRow.value, Integer) + 1, Text)).returning(MetaRow.value)
                          .execution_options(synchronize_session=False)).scalar()
    if new is None:  # a catalog that never held a vector
        session.execute(insert(MetaRow).values(key=key, value="1"))
        return 1
    return int(new)
