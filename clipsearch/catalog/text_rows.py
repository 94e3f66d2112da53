"""The catalog's writes and work lists for the text read inside images (`index --ocr`).

Text is keyed by image id and tagged with the content digest it was read from. A row is written only while the
image's row still holds that digest (its file may have changed, been re-encoded or removed meanwhile: the text
would then describe other content). An image read without any text gets an empty row, so it is not read again.
Every batch is its own short transaction, apart from the chunks of the encoder's writer: reading text (a second
an image) never holds the writer, and a kill loses at most one batch.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import ColumnElement, exists, func, select
from sqlalchemy.orm import Session

from clipsearch.catalog.codec import READS_TEXT, lines_to_json
from clipsearch.catalog.records import ReadText, TextTask
from clipsearch.catalog.schema import ImageRow, ImageTextRow
from clipsearch.catalog.writes import forget_text, set_flag


def lacking_text(session: Session, where: ColumnElement[bool]) -> list[TextTask]:
    """Indexed images and video frames (matching `where`, a clause over `ImageRow`) with no text row yet."""
    has_text = exists().where(ImageTextRow.image_id == ImageRow.id)
    stmt = (select(ImageRow.id, ImageRow.path, ImageRow.frame_ms, ImageRow.digest)
            .where(ImageRow.ok.is_(True), ImageRow.digest.is_not(None), ~has_text, where)
            .order_by(ImageRow.path, ImageRow.frame_ms))
    return [TextTask(i, p, ms, d) for i, p, ms, d in session.execute(stmt) if d]


def save_texts(session: Session, texts: Sequence[ReadText]) -> list[ReadText]:
    """Write what was read; returns what was written (the others' content changed meanwhile)."""
    if not texts:
        return []
    current = dict(session.execute(select(ImageRow.id, ImageRow.digest)
                                   .where(ImageRow.id.in_([t.image_id for t in texts]), ImageRow.ok.is_(True))).all())
    fresh = [t for t in texts if current.get(t.image_id) == t.digest]
    forget_text(session, [t.image_id for t in fresh])  # a second reader of the same row: the last one wins
    session.add_all(ImageTextRow(image_id=t.image_id, digest=t.digest, text=t.text,
                                 lines=lines_to_json((line.text, line.box) for line in t.lines)) for t in fresh)
    return fresh


def mark_reads_text(session: Session) -> None:
    set_flag(session, READS_TEXT)


def text_counts(session: Session) -> tuple[int, int]:
    """(images read, images in which some text was found)."""

    read = session.scalar(select(func.count()).select_from(ImageTextRow)) or 0
    found = session.scalar(select(func.count()).select_from(ImageTextRow).where(ImageTextRow.text != "")) or 0
    return read, found




