"""The single writer of an index run and what a run reports: results are taken one file at a time, in any
order, from wherever they were encoded (here or on Ray actors), and committed in chunks — rows and embeddings in
one catalog transaction, then mirrored into the vector store — so a run killed at any moment loses seconds of
work and leaves a consistent store.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import numpy as np

from clipsearch.catalog.catalog import Catalog
from clipsearch.catalog.codec import STILL
from clipsearch.catalog.records import NO_META, Encoded, EncodedVideo, Failed, Known, PhotoMeta, TextLine, TextTask
from clipsearch.encoders.base import ImageEncoder
from clipsearch.errors import ClipsearchError
from clipsearch.indexing.scan import FileFacts
from clipsearch.indexing.summary import RunSummary  # noqa: F401 - its old home
from clipsearch.media.video import DEFAULT_INTERVAL
from clipsearch.progress import Progress

if TYPE_CHECKING:  # pragma: no cover
    from clipsearch.vectors.store import VectorStore


COMMIT_SECONDS = 5.0  # also commit at least this often, so a kill loses seconds of work, not minutes


@dataclass
class _Pending:
    """Results waiting for the next chunk commit."""
    encoded: list[Encoded] = field(default_factory=list)
    failed: list[Failed] = field(default_factory=list)
    touched: list[tuple[int, int, int]] = field(default_factory=list)  # (id, size, mtime): new stat, same content
    videos: list[EncodedVideo] = field(default_factory=list)
    hashed: list[tuple[int, bytes]] = field(default_factory=list)  # (id, hashes) of unchanged rows that lacked them
    metas: list[tuple[int, PhotoMeta]] = field(default_factory=list)  # rows kept whose metadata was unread

    def __len__(self) -> int:
        return len(self.encoded) + len(self.failed) + len(self.touched) + sum(len(v.frames) for v in self.videos) \
            + len(self.metas)

    def vectors(self) -> list[np.ndarray]:
        """The embeddings in the order `Catalog.commit_chunk` assigns their ids."""
        return [e.vector for e in self.encoded] + [vec for v in self.videos for _ms, vec in v.frames]

    def clear(self) -> None:
        self.encoded.clear()
        self.failed.clear()
        self.touched.clear()
        self.videos.clear()
        self.hashed.clear()
        self.metas.clear()


@dataclass
class IndexOptions:
    verify: bool = False
    frame_interval: float = DEFAULT_INTERVAL  # seconds between sampled video frames
    batch_size: int | None = None
    workers: int | None = None
    commit_every: int = 256
    ocr: bool = False  # read the text inside images (and remember to, for later runs)


class ChunkWriter:
    """The single writer of a run: takes results one file at a time, in any order, from wherever they were
    encoded, and commits them in chunks (`commit_every` results, or every COMMIT_SECONDS), each chunk one
    catalog transaction mirrored into the vector store. What was committed survives any interruption."""

    def __init__(self, catalog: Catalog, vectors: VectorStore, summary: RunSummary, options: IndexOptions,
                 progress: Progress | None, committed: Callable[[list[TextTask]], None] | None = None) -> None:
        """`committed`, when given, is handed the rows each chunk wrote (e.g. the text stage's queue)."""
        self.catalog, self.vectors, self.summary, self.options, self.progress = \
            catalog, vectors, summary, options, progress
        self.committed = committed
        self.pending = _Pending()
        self.last_commit = time.perf_counter()

    def encoded(self, facts: FileFacts, known: Known | None, digest: str, width: int, height: int, fmt: str,
                vector: np.ndarray, hashes: bytes | None = None, meta: PhotoMeta = NO_META,
                text: tuple[TextLine, ...] | None = None) -> None:
        """`text`: the lines read in the file where it was encoded (a Ray actor), None where it was not read."""
        if vector.shape[-1] != self.vectors.dim:
            raise ClipsearchError(f"the model makes {vector.shape[-1]}-d embeddings but the store holds "
                                  f"{self.vectors.dim}-d ones", "index into a new store, or re-embed this one")
        self.summary.encoded += 1
        self.pending.encoded.append(Encoded(facts.path, facts.size, facts.mtime_ns, digest, width, height, fmt,
                                            vector, known, hashes, meta, text))
        self._done()

    def failed(self, facts: FileFacts, known: Known | None, error: str) -> None:
        self.pending.failed.append(Failed(facts.path, facts.size, facts.mtime_ns, error, known))
        self._done()

    def unchanged(self, facts: FileFacts, known: Known, hashes: bytes | None = None,
                  meta: PhotoMeta | None = None) -> None:
        """Same content under a new stat (see `same_content`); `hashes` fill a row that lacks them, and `meta`,
        read while decoding it, one whose metadata was never read."""
        self.pending.touched.extend((i, facts.size, facts.mtime_ns) for i in known.all_ids)
        if hashes is not None and known.needs_hash:
            self.pending.hashed.append((known.id, hashes))
            self.summary.hashed += 1
        if meta is not None and not known.has_meta:
            self.pending.metas.extend((i, meta) for i in known.all_ids)
            self.summary.metadata_read += 1
        self._done()

    def video(self, video: EncodedVideo) -> None:
        self.summary.encoded += len(video.frames)
        self.pending.videos.append(video)
        self._done()

    def _done(self) -> None:
        if self.progress:
            self.progress.advance(1)
        if len(self.pending) >= self.options.commit_every or \
                time.perf_counter() - self.last_commit > COMMIT_SECONDS:
            self.commit()

    def commit(self) -> None:
        pending, summary = self.pending, self.summary
        if len(pending):
            result = self.catalog.commit_chunk(pending.encoded, pending.failed, pending.touched, pending.videos,
                                               pending.hashed, pending.metas)
            self.vectors.apply(result.removed_ids, result.vector_ids, pending.vectors(), result.version)
            if self.committed is not None:
                self.committed(_written(pending, result.vector_ids))
            summary.added += result.added
            summary.updated += result.updated
            summary.unchanged += len(pending.touched)
            summary.failed += len(pending.failed)
            summary.failures.extend((f.path, f.error) for f in pending.failed)
            pending.clear()
        self.last_commit = time.perf_counter()


def _written(pending: _Pending, ids: list[int]) -> list[TextTask]:
    """The rows a chunk wrote whose text is to be read, or was read with the embedding (`vector_ids` follow stills,
    then videos' frames); a still re-encoded over the same content (a re-embed) keeps the text it has."""
    files = [(e.path, STILL, e.digest, e.known is not None and e.known.digest == e.digest, e.text)
             for e in pending.encoded]
    files += [(v.path, ms, v.digest, False, None) for v in pending.videos for ms, _vec in v.frames]
    return [TextTask(i, path, ms, digest, lines)
            for i, (path, ms, digest, kept, lines) in zip(ids, files, strict=True) if not kept]


class EncodePool(Protocol):
    """Encodes still images somewhere else (e.g. `ray_pool.RayPool`: actors on a cluster) with the same model
    as `encoder` — same backend, precision and batches, so the same embeddings — and hands every file's result
    to `writer` as it arrives (`encoded`, `failed` or `unchanged`). With `read_text` (a store that reads text) it
    may also read the text of the files it encodes and hand it over with the embedding (`encoded(text=...)`);
    a file handed over without it is read by the run's text stage. A pool that also has
    `read_texts(tasks, deliver)` (`RayPool`) is given the still images earlier runs left unread, once encoding is
    done; it hands each back as the task with its `lines`."""

    def encode(self, items: list[tuple[FileFacts, Known | None]], encoder: ImageEncoder, batch_size: int,
               writer: ChunkWriter, read_text: bool = False) -> None: ...
