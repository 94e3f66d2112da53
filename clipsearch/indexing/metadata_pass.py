"""The metadata-only pass: rows indexed before the catalog kept photo metadata get it from their files' headers.

An index run over a store upgraded to schema 5 finds its unchanged (and moved) files without metadata; their
EXIF (stills) or container tags (videos) are read here, in threads, without decoding a pixel or encoding
anything, and written onto the rows in chunks (one transaction each, embeddings and the vectors version
untouched), so a run killed half-way keeps what it read and the next run reads only the rest.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from clipsearch.catalog.catalog import Catalog
from clipsearch.catalog.records import Known, PhotoMeta
from clipsearch.indexing.writer import RunSummary
from clipsearch.media.exif import read_header, read_video_header
from clipsearch.progress import Progress

CHUNK_FILES = 500  # files whose metadata one transaction records


def _read(item: tuple[str, Known]) -> PhotoMeta:
    path, known = item
    return read_video_header(path) if known.frame_ids else read_header(path)


def read_missing_metadata(catalog: Catalog, items: Sequence[tuple[str, Known]], summary: RunSummary,
                          workers: int | None = None, progress: Progress | None = None) -> None:
    """Read the metadata of `items` (path, row: every frame row of a video) and record it on their rows."""
    if progress:
        progress.start(len(items), "reading photo metadata")
    with ThreadPoolExecutor(max_workers=workers or max(2, os.cpu_count() or 2),
                            thread_name_prefix="clipsearch-meta") as pool:
        for start in range(0, len(items), CHUNK_FILES):
            chunk = items[start:start + CHUNK_FILES]
            metas = list(pool.map(_read, chunk))
            catalog.record_photo_meta([(i, meta) for (_p, known), meta in zip(chunk, metas, strict=True)
                                       for i in known.all_ids])
            summary.metadata_read += len(chunk)
            if progress:
                progress.advance(len(chunk))
