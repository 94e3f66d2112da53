"""Thumbnails and contact sheets.

A thumbnail is a 256 px WebP rendition of an indexed image, made with the same safe decoder as indexing
(bomb limit, JPEG draft decoding, EXIF orientation) and cached in the store under the image's content
digest (`thumbnails/ab/abcdef….webp`): a moved or renamed file keeps its thumbnail, a changed one gets a new
one, and the cache is written atomically (a reader never sees half a file). A contact sheet is a grid of
thumbnails labelled rank, score and name, written as one JPEG/PNG/WebP.
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image, ImageDraw, ImageFont

from clipsearch.errors import ClipsearchError
from clipsearch.fsutil import atomic_write
from clipsearch.media.images import DecodeError, open_image
from clipsearch.terminal import visible

if TYPE_CHECKING:  # pragma: no cover
    from clipsearch.progress import Progress

THUMB_SIZE = 256
_KEY = re.compile(r"[0-9a-f]{8,64}|v[0-9a-f]{8,64}-[0-9]{1,12}")  # a content digest; a video's fingerprint-ms


def thumbnail_key(digest: str, frame_ms: int | None = None) -> str:
    """The cache key of a still image's thumbnail (its digest) or of a video moment's (fingerprint-ms)."""
    return digest if frame_ms is None or frame_ms < 0 else f"{digest}-{frame_ms}"


@dataclass(frozen=True)
class ThumbnailJob:
    """One thumbnail to make: the file it comes from (for failures), its cache key, and how to make it."""
    path: str
    key: str
    make: Callable[[], bytes | None]  # the WebP thumbnail, or None when the source is gone or changed
SHEET_FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".webp": "WEBP"}


def make_thumbnail(data: bytes, size: int = THUMB_SIZE) -> bytes:
    """Image bytes → WebP bytes fitting in size×size (aspect kept); raises DecodeError for what is no image."""
    im, _w, _h, _fmt = open_image(data, draft_to=size)
    try:
        im.thumbnail((size, size), Image.Resampling.LANCZOS, reducing_gap=2.0)
        buf = io.BytesIO()
        im.save(buf, "WEBP", quality=80, method=4)
    except (OSError, ValueError, MemoryError) as exc:
        raise DecodeError(f"cannot make a thumbnail: {exc}") from exc
    return buf.getvalue()


def _is_webp(data: bytes) -> bool:
    return len(data) > 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP"


class ThumbnailCache:
    """Thumbnails by content digest in one folder; a folder that cannot be written (read-only media) just
    means thumbnails are made on every request instead of once."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    def path(self, digest: str) -> Path:
        if not _KEY.fullmatch(digest):  # digests come from the catalog; never let one be a path
            raise ValueError(f"not a thumbnail key: {digest!r}")
        return self.folder / digest[:2] / f"{digest}.webp"

    def get(self, digest: str) -> bytes | None:
        try:
            data = self.path(digest).read_bytes()
        except OSError:
            return None
        return data if _is_webp(data) else None  # a file cut short by a power cut is remade

    def has(self, digest: str) -> bool:
        try:
            return self.path(digest).stat().st_size > 12
        except OSError:
            return False

    def put(self, digest: str, data: bytes) -> bool:
        path = self.path(digest)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(path, lambda tmp: tmp.write_bytes(data), durable=False)
        except OSError:
            return False
        return True

    def get_or_make(self, digest: str, read: Callable[[], bytes | None]) -> bytes | None:
        """The cached thumbnail, or one made from `read()` (None when the source is gone) and cached."""
        def make() -> bytes | None:
            data = read()
            return None if data is None else make_thumbnail(data)

        return self.get_or_render(digest, make)

    def get_or_render(self, key: str, make: Callable[[], bytes | None]) -> bytes | None:
        """The cached thumbnail under `key`, or `make()`'s (None when the source is gone), cached."""
        cached = self.get(key)
        if cached is not None:
            return cached
        thumb = make()
        if thumb is not None:
            self.put(key, thumb)
        return thumb

    def fill(self, jobs: Sequence[ThumbnailJob], workers: int | None = None,
             progress: Progress | None = None) -> tuple[int, list[tuple[str, str]]]:
        """Make the thumbnails of `jobs` not cached yet: (how many were made, [(path, why)] failures)."""
        todo = list({job.key: job for job in jobs if not self.has(job.key)}.values())  # one per key
        if progress and todo:
            progress.start(len(todo), "thumbnails")
        failed: list[tuple[str, str]] = []

        def one(job: ThumbnailJob) -> bool:
            try:
                return self.get_or_render(job.key, job.make) is not None
            except DecodeError as exc:
                failed.append((job.path, str(exc)))
                return False

        made = 0
        with ThreadPoolExecutor(max_workers=workers or max(2, os.cpu_count() or 2)) as pool:
            for ok in pool.map(one, todo):
                made += ok
                if progress:
                    progress.advance(1)
        return made, failed


# --- contact sheets -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SheetLayout:
    columns: int
    rows: int
    tile: int = THUMB_SIZE
    pad: int = 8
    label: int = 40  # two lines under each tile

    @property
    def cell(self) -> tuple[int, int]:
        return self.tile + self.pad, self.tile + self.label + self.pad

    @property
    def size(self) -> tuple[int, int]:
        cw, ch = self.cell
        return self.columns * cw + self.pad, self.rows * ch + self.pad

    def origin(self, i: int) -> tuple[int, int]:
        """Top-left corner of tile i (row-major)."""
        cw, ch = self.cell
        return self.pad + (i % self.columns) * cw, self.pad + (i // self.columns) * ch

    @classmethod
    def for_count(cls, n: int, columns: int | None = None, tile: int = THUMB_SIZE) -> SheetLayout:
        cols = max(1, min(columns or min(5, n), n))
        return cls(cols, max(1, -(-n // cols)), tile)


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _fit_text(draw: ImageDraw.ImageDraw, text: str, font: ImageFont.ImageFont | ImageFont.FreeTypeFont,
              width: int) -> str:
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength("…" + text, font=font) > width:
        text = text[1:]
    return "…" + text  # keep the end of a long name: the extension and the distinguishing part


def contact_sheet(tiles: Iterable[tuple[bytes | None, str, str]], out: str | Path, columns: int | None = None,
                  tile: int = THUMB_SIZE) -> SheetLayout:
    """Write a grid of (thumbnail bytes or None, first label line, second label line) to `out` (.jpg/.png/.webp).

    Tiles are drawn in order, row by row; a missing thumbnail is drawn as a grey box saying so.
    """
    items = list(tiles)
    out = Path(out)
    fmt = SHEET_FORMATS.get(out.suffix.lower())
    if fmt is None:
        raise ClipsearchError(f"cannot write a contact sheet as {out.suffix or 'a file without extension'}",
                              "name it .jpg, .png or .webp", param="grid")
    if not items:
        raise ClipsearchError("no results to draw", "change the query or its filters", param="grid")
    layout = SheetLayout.for_count(len(items), columns, tile)
    sheet = Image.new("RGB", layout.size, (24, 24, 24))
    draw = ImageDraw.Draw(sheet)
    font = _font(14)
    for i, (thumb, line1, line2) in enumerate(items):
        x, y = layout.origin(i)
        im = None
        if thumb is not None:
            try:
                im = Image.open(io.BytesIO(thumb)).convert("RGB")
                im.thumbnail((tile, tile))
            except (OSError, ValueError):
                im = None
        if im is None:
            draw.rectangle((x, y, x + tile - 1, y + tile - 1), fill=(70, 70, 70))
            draw.text((x + 8, y + tile // 2 - 8), "unavailable", fill=(200, 200, 200), font=font)
        else:
            sheet.paste(im, (x + (tile - im.width) // 2, y + (tile - im.height) // 2))
        draw.text((x, y + tile + 4), _fit_text(draw, visible(line1), font, tile), fill=(255, 255, 255), font=font)
        draw.text((x, y + tile + 22), _fit_text(draw, visible(line2), font, tile), fill=(190, 190, 190), font=font)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(out, lambda tmp: sheet.save(tmp, fmt, **({"quality": 90} if fmt != "PNG" else {})))
    except OSError as exc:
        raise ClipsearchError(f"cannot write {out}: {exc.strerror or exc}", "choose a writable place",
                              param="grid") from exc
    return layout


def to_png(thumb: bytes, size: int = 160) -> bytes:
    """A cached thumbnail (WebP) as a smaller PNG: what terminal image protocols take everywhere."""
    im = Image.open(io.BytesIO(thumb)).convert("RGB")
    im.thumbnail((size, size))
    buf = io.BytesIO()
    im.save(buf, "PNG", optimize=True)
    return buf.getvalue()
