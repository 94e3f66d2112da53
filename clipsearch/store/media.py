"""Images by catalog id: what a server or a contact sheet hands out, never by a path from a request.

An image comes back only as the exact bytes that were indexed (`read_verified` checks the content digest), so
a file changed since, or a symlink or FIFO swapped in at its path, is refused rather than served. Thumbnails
are made on first use and cached in the store by content digest (`thumbnails/`), so they survive moves and a
re-embed, and a contact sheet is a grid of them.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clipsearch.errors import NotFoundError
from clipsearch.store.manifest import THUMB_DIR

if TYPE_CHECKING:  # pragma: no cover
    from clipsearch.catalog.records import ImageRecord
    from clipsearch.media.thumbnails import SheetLayout, ThumbnailCache
    from clipsearch.progress import Progress
    from clipsearch.query.engine import Hit
    from clipsearch.store.catalog_place import CatalogPlace
    from clipsearch.store.folder import StoreFolder


class StoreMedia:
    """The indexed images of the store in `folder`, found through the catalog `place`."""

    def __init__(self, folder: StoreFolder, place: CatalogPlace) -> None:
        self._folder = folder
        self._place = place

    def record(self, image_id: int) -> ImageRecord:
        """The catalog's record of an indexed image (path, size, mtime, dimensions, format, content digest)."""
        rec = self._place.catalog.image(image_id) if self._folder.manifest else None
        if rec is None:
            raise NotFoundError(f"no image with id {image_id} in the store", "search again: it may have been "
                                "removed since")
        return rec

    def _indexed(self, image_id: int) -> tuple[ImageRecord, str]:
        """The record of an indexed image and its content digest (what its bytes must hash to)."""
        rec = self.record(image_id)
        if rec.digest is None:
            raise NotFoundError(f"image {image_id} has no content digest", "index its folder again")
        return rec, rec.digest

    def image(self, image_id: int) -> dict[str, Any]:
        """An indexed image's facts by id (the keys of a search hit, less rank and score)."""
        from clipsearch.query.engine import modified_iso, photo_facts

        rec = self.record(image_id)
        return {"path": rec.path, "size": rec.size, "width": rec.width, "height": rec.height, "format": rec.format,
                "modified": modified_iso(rec.mtime_ns), "id": rec.id, **photo_facts(rec.meta)}

    def image_bytes(self, image_id: int) -> tuple[bytes, str, str | None]:
        """(content, digest, format) of an indexed image: only the exact bytes that were indexed."""
        from clipsearch.media.images import read_verified

        rec, digest = self._indexed(image_id)
        data = read_verified(rec.path, digest)
        if data is None:
            raise NotFoundError(f"image {image_id} is gone or has changed since it was indexed",
                                "index its folder again")
        return data, digest, rec.format

    @property
    def thumbnail_cache(self) -> ThumbnailCache:
        from clipsearch.media.thumbnails import ThumbnailCache

        return ThumbnailCache(self._folder.path / THUMB_DIR)

    def thumbnail(self, image_id: int) -> tuple[bytes, str]:
        """(WebP thumbnail, content digest) of an indexed image, made on first use and cached in the store."""
        from clipsearch.media.images import DecodeError, read_verified

        rec, digest = self._indexed(image_id)
        try:
            thumb = self.thumbnail_cache.get_or_make(digest, lambda: read_verified(rec.path, digest))
        except DecodeError as exc:
            raise NotFoundError(f"no thumbnail for image {image_id}: {exc}", "index its folder again") from exc
        if thumb is None:
            raise NotFoundError(f"image {image_id} is gone or has changed since it was indexed",
                                "index its folder again")
        return thumb, digest

    def thumbnail_png(self, image_id: int, size: int = 160) -> bytes | None:
        """A small PNG of an indexed image (for terminal image protocols), or None when its file is gone."""
        from clipsearch.media.thumbnails import to_png

        try:
            return to_png(self.thumbnail(image_id)[0], size)
        except NotFoundError:
            return None

    def contact_sheet(self, hits: Iterable[Hit], out: str | Path, columns: int | None = None) -> SheetLayout:
        """The hits' thumbnails as one labelled grid image (.jpg/.png/.webp); a missing file gets a grey tile."""
        from clipsearch.media.thumbnails import contact_sheet

        tiles = []
        for h in hits:
            try:
                thumb: bytes | None = self.thumbnail(h.id)[0]
            except NotFoundError:
                thumb = None
            tiles.append((thumb, f"#{h.rank}  {h.score:.3f}", os.path.basename(h.path)))
        return contact_sheet(tiles, out, columns)

    def make_thumbnails(self, workers: int | None = None,
                        progress: Progress | None = None) -> tuple[int, list[tuple[str, str]]]:
        """Make every missing thumbnail: (how many were made, [(path, why)] for images that could not be read)."""
        from clipsearch.media.images import read_verified

        if self._folder.manifest is None:
            return 0, []
        made, failed = self.thumbnail_cache.fill(self._place.catalog.digests(), read_verified, workers, progress)
        return made, failed
