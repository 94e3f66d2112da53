"""Plain records that cross the catalog's boundary: what it knows of a path, what the pipeline commits."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from clipsearch.catalog.codec import STILL


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


@dataclass(frozen=True)
class EncodedVideo(EncodedFile):
    """A video file's sampled frames, each with its embedding: committed (or replaced) as one unit."""
    frames: list[tuple[int, np.ndarray]]  # (timestamp ms, embedding)
    known: Known | None


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
