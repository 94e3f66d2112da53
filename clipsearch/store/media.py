"""Images by catalog id: what a server or a contact sheet hands out, never by a path from a request.

An image comes back only as the exact bytes that were indexed (`read_verified` checks the content digest), a
video only while its fingerprint holds (`open_verified`), so a file changed since, or a symlink or FIFO swapped
in at its path, is refused rather than served. Thumbnails
are made on first use and cached in the store by content digest (`thumbnails/`), so they survive moves and a
re-embed, and a contact sheet is a grid of them.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from clipsearch.errors import NotFoundError
from clipsearch.store.manifest import THUMB_DIR

if TYPE_CHECKING:  # pragma: no cover
    from clipsearch.catalog.records import ImageRecord
    from clipsearch.media.thumbnails import SheetLayout, ThumbnailCache, ThumbnailJob
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
        """An indexed image's facts by id (the keys of a search hit, less rank and score; on a store that reads
        text, `text` and `text_lines`, each line with its box)."""
        facts = self.facts(self.record(image_id))
        reads = self._place.reads
        if reads.reads_text():  # the text read inside it (index --ocr), with where each line is
            lines = reads.texts([image_id]).get(image_id, ())
            facts.update(text="\n".join(line.text for line in lines), text_lines=[line.to_dict() for line in lines])
        return facts

    @staticmethod
    def facts(rec: ImageRecord) -> dict[str, Any]:
        """The keys of a search hit, less rank and score, of one catalog record."""
        from clipsearch.query.engine import modified_iso, photo_facts

        facts = {"path": rec.path, "size": rec.size, "width": rec.width, "height": rec.height, "format": rec.format,
                 "modified": modified_iso(rec.mtime_ns), "id": rec.id, "digest": rec.digest or "",
                 **photo_facts(rec.meta)}
        if is_video(rec):
            facts["timestamp"] = rec.frame_ms / 1000  # a video's moment, as in a search hit
        return facts

    def newest(self, k: int, offset: int = 0, **filters: Any) -> list[dict[str, Any]]:
        """The facts of up to k indexed files, newest first (by capture time, else modification time; a video
        once, at its first moment), from `offset`; filters as a query's (under, exts, after, before, and the
        photo ones); files under vanished roots are left out."""
        from clipsearch.catalog.photo_filter import when_us, zone_minutes
        from clipsearch.query.engine import parse_filters
        from clipsearch.query.photo_filters import photo_filter

        if self._folder.manifest is None:
            return []
        photo = photo_filter(*(filters.pop(key, None) for key in ("taken_after", "taken_before", "camera", "near")))
        catalog = self._place.catalog
        hidden = [r["path"] for r in catalog.roots() if not os.path.isdir(r["path"])]
        parsed = parse_filters(**filters)
        if not photo:
            rows = catalog.newest(k, offset, hidden_under=hidden, **parsed)
            return [self.facts(rec) for rec in rows]
        # photo metadata filters (their distance is exact only after SQL): the allowed ids, then newest first here
        ids = catalog.filter_ids(parsed["under"], parsed["exts"], parsed["after_ns"], parsed["before_ns"],
                                 hidden_under=hidden, photo=photo)
        firsts: dict[str, ImageRecord] = {}
        for rec in sorted(catalog.images(ids.tolist()).values(), key=lambda r: r.id):
            firsts.setdefault(rec.path, rec)  # a video once, at its first moment
        zone = zone_minutes()  # the order of `catalog.newest`, the same ties
        ordered = sorted(firsts.values(), key=lambda r: (when_us(r.mtime_ns, r.meta, zone), r.id), reverse=True)
        return [self.facts(rec) for rec in ordered[offset:offset + k]]

    def image_bytes(self, image_id: int) -> tuple[bytes, str, str | None]:
        """(content, digest, format) of an indexed image or video: only the exact file that was indexed."""
        original = self.original(image_id)
        with original.file as f:
            return f.read(), original.digest, original.format

    def original(self, image_id: int) -> Original:
        """The indexed file of an image or a video moment, open and verified: a still image's bytes must hash to
        its content digest, a video must keep its fingerprint (size, first and last MiB), so a file changed or
        swapped since is refused. The caller reads it (a video: as much as it needs, e.g. one range) and closes."""
        from clipsearch.media.images import read_verified
        from clipsearch.media.video import open_verified

        rec, digest = self._indexed(image_id)
        if is_video(rec):
            f = open_verified(rec.path, digest)
            size = os.fstat(f.fileno()).st_size if f is not None else 0
        else:
            data = read_verified(rec.path, digest)
            f, size = (io.BytesIO(data), len(data)) if data is not None else (None, 0)
        if f is None:
            raise NotFoundError(f"image {image_id} is gone or has changed since it was indexed",
                                "index its folder again")
        return Original(f, size, digest, rec.format, rec.path, is_video(rec))

    @property
    def thumbnail_cache(self) -> ThumbnailCache:
        from clipsearch.media.thumbnails import ThumbnailCache

        return ThumbnailCache(self._folder.path / THUMB_DIR)

    def thumbnail_key(self, image_id: int) -> str:
        """What identifies the thumbnail of an image (its content digest) or a video moment (fingerprint-ms):
        an ETag that changes when the picture does."""
        from clipsearch.media.thumbnails import thumbnail_key

        rec, digest = self._indexed(image_id)
        return thumbnail_key(digest, rec.frame_ms)

    def thumbnail(self, image_id: int) -> tuple[bytes, str]:
        """(WebP thumbnail, its key) of an indexed image or video moment, made on first use and cached in the store."""
        from clipsearch.media.images import DecodeError

        job = self._thumbnail_job(self.record(image_id))
        try:
            thumb = self.thumbnail_cache.get_or_render(job.key, job.make)
        except DecodeError as exc:
            raise NotFoundError(f"no thumbnail for image {image_id}: {exc}", "index its folder again") from exc
        if thumb is None:
            raise NotFoundError(f"image {image_id} is gone or has changed since it was indexed",
                                "index its folder again")
        return thumb, job.key

    def _thumbnail_job(self, rec: ImageRecord) -> ThumbnailJob:
        """How to make the thumbnail of a record: a still from its verified bytes, a video moment from the frame
        at its time in the verified video."""
        from clipsearch.media.images import read_verified
        from clipsearch.media.thumbnails import THUMB_SIZE, ThumbnailJob, make_thumbnail, thumbnail_key

        if rec.digest is None:
            raise NotFoundError(f"image {rec.id} has no content digest", "index its folder again")
        digest, path = rec.digest, rec.path
        if not is_video(rec):
            def still() -> bytes | None:
                data = read_verified(path, digest)
                return None if data is None else make_thumbnail(data)

            return ThumbnailJob(path, digest, still)
        ms = rec.frame_ms

        def moment() -> bytes | None:
            from clipsearch.media.video import frame_thumbnail, open_verified

            f = open_verified(path, digest)
            if f is None:
                return None
            with f:
                return frame_thumbnail(f, ms, THUMB_SIZE)

        return ThumbnailJob(path, thumbnail_key(digest, ms), moment)

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
            moment = f"  @ {clock(h.timestamp)}" if h.timestamp is not None else ""
            tiles.append((thumb, f"#{h.rank}  {h.score:.3f}{moment}", os.path.basename(h.path)))
        return contact_sheet(tiles, out, columns)

    def make_thumbnails(self, workers: int | None = None,
                        progress: Progress | None = None) -> tuple[int, list[tuple[str, str]]]:
        """Make every missing thumbnail (a still's, each sampled moment's of a video): (how many were made,
        [(path, why)] for files that could not be read)."""
        from clipsearch.catalog.records import ImageRecord

        if self._folder.manifest is None:
            return 0, []
        catalog = self._place.catalog
        rows = catalog.digests()
        frames = catalog.images([i for i, _path, digest in rows if digest.startswith("v")])
        jobs = [self._thumbnail_job(frames.get(i) or ImageRecord(i, path, 0, 0, None, None, None, digest))
                for i, path, digest in rows]
        return self.thumbnail_cache.fill(jobs, workers, progress)


@dataclass
class Original:
    """An indexed file, open and verified: read it (from any offset) and close it."""
    file: BinaryIO
    size: int
    digest: str
    format: str | None
    path: str
    video: bool


def is_video(rec: ImageRecord) -> bool:
    """A video's sampled moment (its row carries the frame's time) rather than a still image."""
    return rec.frame_ms >= 0  # a still's is STILL (-1)


def clock(seconds: float) -> str:
    """A time into a video: 83.4 → '00:01:23'."""
    whole = int(seconds)
    return f"{whole // 3600:02d}:{whole % 3600 // 60:02d}:{whole % 60:02d}"
