"""Plain records that cross the catalog's boundary: what it knows of a path, what the pipeline commits."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np

from clipsearch.catalog.codec import STILL


@dataclass(frozen=True)
class PhotoMeta:
    """What a photo's metadata says of it (EXIF, or a video container's tags); every field may be absent.

    The capture time is kept as the camera's wall clock (`taken_local`, microseconds since 1970-01-01T00:00 of
    that naive local time) plus its UTC offset in minutes when the file records one: the local time is what the
    photographer saw, the offset makes it an instant (`taken_utc`).
    """
    taken_local: int | None = None
    taken_offset: int | None = None  # minutes east of UTC
    make: str | None = None
    model: str | None = None
    lens: str | None = None
    lat: float | None = None
    lon: float | None = None

    @property
    def taken_utc(self) -> int | None:
        """The capture instant (microseconds since the epoch, UTC), when the offset is known."""
        if self.taken_local is None or self.taken_offset is None:
            return None
        return self.taken_local - self.taken_offset * 60_000_000

    def taken_text(self) -> str | None:
        """The capture time as ISO 8601 local time, with its offset when known: '2023-06-01T14:03:22+09:00'."""
        return taken_text(self.taken_local, self.taken_offset)

    def columns(self) -> dict[str, object]:
        """The catalog's columns for this metadata (`meta_read` marks the file as read, EXIF or none)."""
        return {"taken_local": self.taken_local, "taken_offset": self.taken_offset, "camera_make": self.make,
                "camera_model": self.model, "lens": self.lens, "gps_lat": self.lat, "gps_lon": self.lon,
                "meta_read": True}


NO_META = PhotoMeta()


def taken_text(local: int | None, offset: int | None) -> str | None:
    """Stored capture time (local microseconds, offset minutes) → ISO 8601; None when there is none."""
    if local is None:
        return None
    try:
        when = dt.datetime(1970, 1, 1) + dt.timedelta(microseconds=local)
    except OverflowError:
        return None
    text = when.isoformat(timespec="seconds")
    if offset is None:
        return text
    sign, minutes = ("+" if offset >= 0 else "-"), abs(offset)
    return f"{text}{sign}{minutes // 60:02d}:{minutes % 60:02d}"


@dataclass(frozen=True)
class Known:
    """What the catalog knows of one path: enough to decide unchanged / changed / moved."""
    id: int
    size: int
    mtime_ns: int
    ok: bool
    digest: str | None
    has_vector: bool
    frame_ids: tuple[int, ...] = ()  # a video: the rows of its sampled frames (`id` is the first)
    has_hash: bool = True  # a still image's perceptual hashes are stored (schema 4; older rows lack them)
    has_meta: bool = True  # its photo metadata was read (rows from before schema 5 were not)

    @property
    def needs_hash(self) -> bool:
        """A readable, embedded still image without perceptual hashes (indexed before they were kept)."""
        return self.ok and self.has_vector and not self.frame_ids and not self.has_hash

    @property
    def all_ids(self) -> list[int]:
        return list(self.frame_ids) or [self.id]


@dataclass(frozen=True)
class ImageRecord:
    id: int
    path: str
    size: int
    mtime_ns: int
    width: int | None
    height: int | None
    format: str | None
    digest: str | None
    frame_ms: int = STILL
    meta: PhotoMeta | None = None  # None: not read yet (a row from before schema 5)


@dataclass(frozen=True)
class EncodedFile:
    """What an encoded file's row records, whatever it holds: a still image or a video's frames."""
    path: str
    size: int
    mtime_ns: int
    digest: str
    width: int
    height: int
    format: str


@dataclass(frozen=True)
class Encoded(EncodedFile):
    """One decoded and encoded file, ready to commit; `known` is its previous row, if any."""
    vector: np.ndarray
    known: Known | None
    hashes: bytes | None = None  # perceptual hashes (media/phash.picture_hashes)
    meta: PhotoMeta = NO_META
    text: tuple[TextLine, ...] | None = None  # its text, read where it was encoded (a Ray actor); None: not read


@dataclass(frozen=True)
class EncodedVideo(EncodedFile):
    """A video file's sampled frames, each with its embedding: committed (or replaced) as one unit."""
    frames: list[tuple[int, np.ndarray]]  # (timestamp ms, embedding)
    known: Known | None
    meta: PhotoMeta = NO_META


@dataclass(frozen=True)
class Failed:
    path: str
    size: int
    mtime_ns: int
    error: str
    known: Known | None


@dataclass
class ChunkResult:
    version: int
    added: int
    updated: int
    removed_ids: list[int]
    vector_ids: list[int]


# --- the text read inside images (`index --ocr`) -------------------------------------------------------
@dataclass(frozen=True)
class TextLine:
    """One line of text read in an image and where: its box as fractions of the image's width and height."""
    text: str
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 in 0..1

    def to_dict(self) -> dict[str, object]:
        return {"text": self.text, "box": list(self.box)}


@dataclass(frozen=True)
class TextTask:
    """A catalogued image (or video frame) whose text is still to be read: its content must match `digest`."""
    id: int
    path: str
    frame_ms: int
    digest: str
    lines: tuple[TextLine, ...] | None = None  # already read with its embedding (on a Ray actor): saved as is


@dataclass(frozen=True)
class ReadText:
    """The text read from one image's content (`digest`): committed only while the row still holds that content."""
    image_id: int
    digest: str
    lines: tuple[TextLine, ...]

    @property
    def text(self) -> str:
        return "\n".join(line.text for line in self.lines)
