"""The indexing pipeline: scan → diff with the catalog → decode (threads) → encode (batches) → commit chunks.

It is handed its collaborators — a catalog, a vector store and an encoder, the last two loaded lazily
through `Workbench` only when there is work — and never imports the store. Decoding runs in a thread pool
ahead of the encoder (Pillow, ONNX Runtime and torch all release the GIL), so the two overlap; a pool of
processes measured no faster beside ONNX Runtime's threads on 2 cores (bench notes in README), and threads
ship decoded arrays without pickling. At most three batches of decoded (model-sized) arrays wait. Every chunk of
results is
committed in one transaction, rows and embeddings together, so a run killed at any moment leaves a
consistent store, and the next run skips what was committed.
"""

from __future__ import annotations

import collections
import os
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from clipsearch.catalog.catalog import Catalog
from clipsearch.catalog.codec import STILL
from clipsearch.catalog.records import EncodedVideo, Known, TextTask
from clipsearch.encoders.base import ImageEncoder, runs_on
from clipsearch.indexing.diff import Diff, diff  # noqa: F401 - diff: where callers have found it
from clipsearch.indexing.metadata_pass import read_missing_metadata
from clipsearch.indexing.scan import IMAGE_EXTENSIONS, FileFacts, ScanResult, is_inside, sniff_file
from clipsearch.indexing.text_stage import LineReader, TextStage
from clipsearch.indexing.writer import COMMIT_SECONDS, ChunkWriter, EncodePool, IndexOptions, RunSummary
from clipsearch.media.images import Decoded, DecodeError, file_digest, read_and_decode, read_and_hash
from clipsearch.media.video import VideoFrames, is_video_name, sample_frames
from clipsearch.progress import Progress

if TYPE_CHECKING:  # pragma: no cover
    from clipsearch.vectors.store import VectorStore

@dataclass
class Workbench:
    """What the pipeline needs beyond the catalog, each loaded on first use: `encoder()` loads the model (and
    records it in the store), `vectors()` opens the vector store. `pool`, when given, encodes the still images
    elsewhere (e.g. on a Ray cluster) with the same model; the results are committed here, by this process."""
    encoder: Callable[[], ImageEncoder]
    vectors: Callable[[], VectorStore]
    pool: EncodePool | None = None
    text_reader: Callable[[], LineReader] | None = None  # reads the text inside images (the store's OCR)


def detect_moves(new: list[FileFacts], missing: list[Known]) -> tuple[list[tuple[FileFacts, Known]], list[FileFacts]]:
    """Match new files to vanished rows by size, then content digest; only size matches get hashed."""
    by_size: dict[int, list[Known]] = collections.defaultdict(list)
    for row in missing:
        if row.ok and row.has_vector and row.digest and not row.frame_ids:
            by_size[row.size].append(row)
    if not by_size:
        return [], new
    moves: list[tuple[FileFacts, Known]] = []
    still_new: list[FileFacts] = []
    for facts in new:
        candidates = [] if is_video_name(facts.path) else by_size.get(facts.size, [])  # videos are re-sampled
        match = None
        if candidates:
            try:
                digest = file_digest(facts.path)
            except OSError:
                digest = None
            match = next((r for r in candidates if r.digest == digest), None)
        if match is None:
            still_new.append(facts)
        else:
            candidates.remove(match)
            moves.append((facts, match))
    return moves, still_new


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity: a container's or taskset's share, not the host's count)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def default_decode_workers(cpus: int | None = None) -> int:
    """Decode threads for `cpus` usable CPUs (default: `usable_cpus()`): one per CPU, at least 2.

    Why: decoding a camera-sized JPEG (12 MP, drafted to 1/8, resized to 224, digest and perceptual hashes)
    costs ~27 ms of CPU (~36 images/s per core; README "GPU") and releases the GIL (Pillow, hashlib, NumPy),
    so threads scale with cores until the cores run out. A GPU encodes thousands of images/s, far more
    than any core count decodes, so every core should decode; on a CPU the encoder shares the cores, and decode
    threads beyond what it consumes wait on the bounded queue (3 batches) instead of competing. At least 2 so a
    file read overlaps a decode on one core. os.cpu_count() is the host's count: in a container limited to
    16 of 192 CPUs it started 192 threads."""
    return max(2, cpus if cpus is not None else usable_cpus())


def decode_stream(items: Sequence[tuple[FileFacts, Known | None]], decode: Callable[[str], object],
                  workers: int, prefetch: int) -> Iterable[tuple[FileFacts, Known | None, Future]]:
    """Yield decode futures in order, keeping at most `prefetch` in flight (bounded memory)."""
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="clipsearch-decode") as pool:
        queue: collections.deque = collections.deque()
        try:
            for facts, known in items:
                queue.append((facts, known, pool.submit(decode, facts.path)))
                if len(queue) >= prefetch:
                    yield queue.popleft()
            while queue:
                yield queue.popleft()
        finally:
            for _f, _k, fut in queue:
                fut.cancel()


def run_index(catalog: Catalog, bench: Workbench, roots: list[str], scanned: ScanResult,
              options: IndexOptions, progress: Progress | None = None,
              other_roots: Iterable[str] = ()) -> RunSummary:
    """Bring the catalog and the vector store in line with a scan of `roots` (plus single files).

    The caller holds the writer lock. `other_roots` are the store's other roots: the ones that no longer
    exist are recorded as vanished (their images are hidden from results, kept until forgotten).
    """
    started = time.perf_counter()
    summary = RunSummary(scanned=len(scanned.files), problems=list(scanned.problems), aliases=scanned.aliases)
    summary.vanished_roots = [r for r in other_roots if r not in roots and not os.path.isdir(r)]
    singles = [f.path for f in scanned.files if not is_inside(f.path, roots)]
    run_id = catalog.begin_run()
    status = "failed"
    vectors: VectorStore | None = None
    stage: TextStage | None = None
    backlog: list[TextTask] = []
    try:
        d = diff(scanned, catalog.known_rows(roots, singles), summary, options.verify)
        if d.todo or d.new or d.missing:
            if d.todo or d.new:
                t_model = time.perf_counter()
                where = runs_on(bench.encoder())  # loads the model: only when there is work for it
                summary.model_seconds = time.perf_counter() - t_model
                if bench.pool is not None:  # the pool's workers encode the images (Ray: each on its own device)
                    where["device"] = "ray"
                summary.backend, summary.device, summary.precision = (where["backend"], where["device"],
                                                                      where["precision"])
            vectors = bench.vectors()
            vectors.current()  # in step with the catalog before this run's first commit
            moves, new = detect_moves(d.new, d.missing)
            catalog.record_moves([(f.path, k.id, f.size, f.mtime_ns) for f, k in moves])
            summary.moved = len(moves)
            moved_ids = {k.id for _f, k in moves}
            gone = [i for r in d.missing if r.id not in moved_ids for i in r.all_ids]
            if gone:
                vectors.apply(gone, [], [], catalog.delete_images(gone))
                summary.removed = len(gone)
            d.unread_meta.extend((f.path, k) for f, k in moves if not k.has_meta)
            stage, backlog = _start_text_stage(catalog, bench, options, roots, singles, summary)
            todo = d.todo + [(facts, None) for facts in new]
            if todo:
                _encode_all(catalog, vectors, bench.encoder(), todo, summary, options, progress, bench.pool,
                            stage.put if stage else None)
            vectors.retype_if_needed()
            vectors.save()
        else:
            bench.vectors().sync_file()  # e.g. after a killed run: persist the rebuilt index once
            stage, backlog = _start_text_stage(catalog, bench, options, roots, singles, summary)
        if stage is not None and backlog:
            _read_backlog_on_pool(bench.pool, backlog, stage, progress)
        if d.unhashed:
            hash_unhashed(catalog, d.unhashed, summary, options, progress)
        if d.unread_meta:  # rows from before metadata was read: their headers, no pixel, nothing encoded
            read_missing_metadata(catalog, d.unread_meta, summary, options.workers, progress)
        if stage is not None:
            stage.finish(progress)  # the text still being read (OCR is slower than encoding)
        status = "done"
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    finally:
        if stage is not None:
            stage.stop()
        if vectors is not None and status != "done":
            vectors.save()  # the in-memory index mirrors exactly what was committed
        summary.seconds = time.perf_counter() - started
        catalog.finish_run(run_id, status, summary.counts(), roots, summary.vanished_roots)
    return summary


def _start_text_stage(catalog: Catalog, bench: Workbench, options: IndexOptions, roots: list[str],
                      singles: list[str], summary: RunSummary) -> tuple[TextStage | None, list[TextTask]]:
    """The text stage, when the store reads text (`options.ocr` turns that on for good), fed at once with the
    rows earlier runs left unread — or, where the run has a pool that reads text (Ray), with their videos only:
    the stills are returned, for the pool to read once encoding is done. A row this run re-encodes may be among
    them: its file no longer holds the row's content, so it is skipped, and read when its new chunk commits."""
    if bench.text_reader is None or not (options.ocr or catalog.reads_text()):
        return None, []
    if options.ocr:
        catalog.mark_reads_text()
    stage = TextStage(catalog, bench.text_reader, summary)
    unread = catalog.lacking_text(roots, singles)
    remote = [t for t in unread if t.frame_ms == STILL] if getattr(bench.pool, "read_texts", None) else []
    stage.put([t for t in unread if t.frame_ms != STILL] if remote else unread)
    return stage, remote


def _read_backlog_on_pool(pool: EncodePool | None, backlog: list[TextTask], stage: TextStage,
                          progress: Progress | None) -> None:
    """The stills earlier runs left unread, read on the pool's workers (`RayPool.read_texts`) and committed by the
    stage as they come back (one the workers could not read, the stage reads itself)."""
    read_texts = getattr(pool, "read_texts", None)  # only a pool that has it is given a backlog
    if read_texts is None:
        stage.put(backlog)
        return
    if progress:
        progress.start(len(backlog), "reading text")

    def arrived(tasks: list[TextTask]) -> None:
        stage.put(tasks)
        if progress:
            progress.advance(len(tasks))

    read_texts(backlog, arrived)


def hash_unhashed(catalog: Catalog, items: list[tuple[FileFacts, Known]], summary: RunSummary,
                  options: IndexOptions, progress: Progress | None = None) -> None:
    """Give perceptual hashes to unchanged images indexed before hashes were kept: read and decode each (threads,
    at the model's usual reduced size), never encode; committed in chunks, so a killed pass resumes. A file whose
    bytes no longer match its row (a change the stat did not show) is left for a `verify` run."""
    workers = options.workers or default_decode_workers()
    if progress:
        progress.start(len(items), "hashing")
    done: list[tuple[int, bytes]] = []
    last = time.perf_counter()
    for _facts, known, fut in decode_stream(items, read_and_hash, workers, prefetch=4 * workers):
        try:
            digest, hashes = fut.result()
        except DecodeError:
            digest, hashes = None, b""
        if known is not None and digest is not None and digest == known.digest:
            done.append((known.id, hashes))
        if progress:
            progress.advance(1)
        if len(done) >= options.commit_every or (done and time.perf_counter() - last > COMMIT_SECONDS):
            catalog.set_hashes(done)
            summary.hashed += len(done)
            done, last = [], time.perf_counter()
    catalog.set_hashes(done)
    summary.hashed += len(done)


def same_content(known: Known | None, digest: str) -> bool:
    """A changed stat over unchanged content: the row keeps its embedding, only its stat is refreshed."""
    return known is not None and known.ok and known.has_vector and known.digest == digest


def is_video_file(path: str) -> bool:
    """Sampled as frames (by name, or sniffed when the extension is not an image's)."""
    return is_video_name(path) or (os.path.splitext(path)[1].lower() not in IMAGE_EXTENSIONS
                                   and sniff_file(path) == "VIDEO")


def _encode_all(catalog: Catalog, vectors: VectorStore, encoder: ImageEncoder,
                todo: list[tuple[FileFacts, Known | None]], summary: RunSummary, options: IndexOptions,
                progress: Progress | None, pool: EncodePool | None = None,
                committed: Callable[[list[TextTask]], None] | None = None) -> None:
    batch_size = options.batch_size or encoder.default_batch_size
    if progress:
        progress.start(len(todo), "encoding")
    writer = ChunkWriter(catalog, vectors, summary, options, progress, committed)
    if pool is not None:
        stills = [(f, k) for f, k in todo if not is_video_file(f.path)]
        if stills:
            t = time.perf_counter()
            pool.encode(stills, encoder, batch_size, writer, read_text=committed is not None)
            summary.encode_seconds += time.perf_counter() - t
            todo = [(f, k) for f, k in todo if is_video_file(f.path)]  # videos: frames are encoded here
    if todo:
        _encode_here(encoder, todo, summary, options, writer, batch_size)
    writer.commit()


def _encode_here(encoder: ImageEncoder, todo: list[tuple[FileFacts, Known | None]], summary: RunSummary,
                 options: IndexOptions, writer: ChunkWriter, batch_size: int) -> None:
    """Decode in threads ahead of the encoder, encode in batches, in this process."""
    size, mode = encoder.image_size, encoder.resize_mode
    workers = options.workers or default_decode_workers()
    batch: list[tuple[FileFacts, Known | None, str, Decoded]] = []

    def flush_batch() -> None:
        if not batch:
            return
        t = time.perf_counter()
        vecs = encoder.encode_images(np.stack([d.pixels for _f, _k, _d, d in batch]))
        summary.encode_seconds += time.perf_counter() - t
        for (facts, known, digest, dec), vec in zip(batch, vecs, strict=False):
            writer.encoded(facts, known, digest, dec.width, dec.height, dec.format, vec, dec.hashes, dec.meta)
        batch.clear()

    def decode(path: str) -> tuple[str, Decoded] | VideoFrames:
        if is_video_file(path):
            return sample_frames(path, size, mode, options.frame_interval)
        return read_and_decode(path, size, mode)

    def add_video(facts: FileFacts, known: Known | None, video: VideoFrames) -> None:
        if known is not None and same_content(known, video.digest):
            writer.unchanged(facts, known, meta=video.meta)
            return
        t = time.perf_counter()
        pixels = np.stack([p for _ms, p in video.frames])
        vecs = np.concatenate([encoder.encode_images(pixels[i:i + batch_size])
                               for i in range(0, len(pixels), batch_size)])
        summary.encode_seconds += time.perf_counter() - t
        writer.video(EncodedVideo(facts.path, facts.size, facts.mtime_ns, video.digest, video.width, video.height,
                                  video.format, [(ms, v) for (ms, _p), v in zip(video.frames, vecs, strict=True)],
                                  known, meta=video.meta))

    for facts, known, fut in decode_stream(todo, decode, workers, prefetch=batch_size * 3):
        try:
            result = fut.result()
        except DecodeError as exc:
            writer.failed(facts, known, str(exc))
        else:
            if isinstance(result, VideoFrames):
                add_video(facts, known, result)
            elif known is not None and same_content(known, result[0]):
                writer.unchanged(facts, known, result[1].hashes, result[1].meta)
            else:
                batch.append((facts, known, *result))
                if len(batch) >= batch_size:
                    flush_batch()
    flush_batch()
