"""The indexing pipeline: scan → diff with the catalog → decode (threads) → encode (batches) → commit chunks.

Decoding runs in a thread pool ahead of the encoder (Pillow and torch both release the GIL), so the two
overlap. Every chunk of results is committed in one SQLite transaction — rows and embeddings together —
so a run killed at any moment leaves a consistent store, and the next run skips what was committed.
"""

from __future__ import annotations

import collections
import os
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable, Protocol

import numpy as np
from sqlalchemy import select, update

from . import catalog
from .catalog import EmbeddingRow, ImageRow, RootRow, RunRow
from .images import Decoded, DecodeError, file_digest, read_and_decode
from .scan import FileFacts, scan, sniff_file

if TYPE_CHECKING:  # pragma: no cover
    from .store import Store

COMMIT_EVERY = int(os.environ.get("CLIPSEARCH_COMMIT_EVERY", 256))  # images per transaction
COMMIT_SECONDS = 5.0  # also commit at least this often, so a kill loses seconds of work, not minutes


class Progress(Protocol):
    def start(self, total: int, description: str) -> None: ...
    def advance(self, n: int = 1) -> None: ...


@dataclass
class RunSummary:
    scanned: int = 0
    added: int = 0
    updated: int = 0
    moved: int = 0
    removed: int = 0
    unchanged: int = 0
    failed: int = 0
    not_images: int = 0
    encoded: int = 0
    seconds: float = 0.0
    encode_seconds: float = 0.0
    model_seconds: float = 0.0
    failures: list[tuple[str, str]] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)

    @property
    def images_per_second(self) -> float:
        return self.encoded / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in self.__dict__.items() if k not in ("failures", "problems")}
        d["images_per_second"] = round(self.images_per_second, 2)
        d["failures"] = [{"path": p, "error": e} for p, e in self.failures]
        d["problems"] = [{"path": p, "error": e} for p, e in self.problems]
        return d


@dataclass
class _Known:
    id: int
    size: int
    mtime_ns: int
    ok: bool
    digest: str | None
    has_vector: bool


@dataclass
class _Pending:
    """Results waiting for the next chunk commit."""
    encoded: list[tuple[FileFacts, _Known | None, str, Decoded, np.ndarray]] = field(default_factory=list)
    failed: list[tuple[FileFacts, _Known | None, str]] = field(default_factory=list)
    touched: list[tuple[FileFacts, _Known]] = field(default_factory=list)  # new stat, same content

    def __len__(self) -> int:
        return len(self.encoded) + len(self.failed) + len(self.touched)


def _known_rows(session, roots: list[str], files: list[str]) -> dict[str, _Known]:
    q = (select(ImageRow.path, ImageRow.id, ImageRow.size, ImageRow.mtime_ns, ImageRow.ok, ImageRow.digest,
                EmbeddingRow.image_id)
         .outerjoin(EmbeddingRow, EmbeddingRow.image_id == ImageRow.id))
    known: dict[str, _Known] = {}
    batches: list[Any] = [q.where(catalog.under_clause(roots))] if roots else []
    for start in range(0, len(files), 900):
        batches.append(q.where(ImageRow.path.in_(files[start:start + 900])))
    for stmt in batches:
        for path, id_, size, mtime, ok, digest, emb in session.execute(stmt):
            known[path] = _Known(id_, size, mtime, ok, digest, emb is not None)
    return known


def _ext(path: str) -> str:
    return os.path.splitext(path)[1].lower().lstrip(".")


class _Committer:
    """Writes chunks to the catalog and mirrors them into the in-memory FAISS index."""

    def __init__(self, store: "Store", summary: RunSummary) -> None:
        self.store = store
        self.summary = summary
        self.vectors = store.vector_index()

    def commit(self, pending: _Pending) -> None:
        if not len(pending):
            return
        removed_ids: list[int] = []
        added_ids: list[int] = []
        added_vecs: list[np.ndarray] = []
        now = catalog.utcnow()
        with self.store.session() as s, s.begin():
            for facts, known, digest, dec, vec in pending.encoded:
                values = dict(path=facts.path, ext=_ext(facts.path), size=facts.size, mtime_ns=facts.mtime_ns,
                              digest=digest, width=dec.width, height=dec.height, format=dec.format, ok=True,
                              error=None, indexed_at=now)
                if known is None:
                    row = ImageRow(**values)
                    s.add(row)
                    s.flush()
                    image_id = row.id
                    self.summary.added += 1
                else:
                    image_id = known.id
                    s.execute(update(ImageRow).where(ImageRow.id == image_id).values(**values))
                    removed_ids.append(image_id)
                    self.summary.updated += 1
                s.merge(EmbeddingRow(image_id=image_id, vector=catalog.vector_to_blob(vec)))
                added_ids.append(image_id)
                added_vecs.append(vec)
            for facts, known, error in pending.failed:
                values = dict(path=facts.path, ext=_ext(facts.path), size=facts.size, mtime_ns=facts.mtime_ns,
                              digest=None, width=None, height=None, format=None, ok=False, error=error,
                              indexed_at=now)
                if known is None:
                    s.add(ImageRow(**values))
                else:
                    s.execute(update(ImageRow).where(ImageRow.id == known.id).values(**values))
                    s.query(EmbeddingRow).filter(EmbeddingRow.image_id == known.id).delete()
                    removed_ids.append(known.id)
                self.summary.failed += 1
                self.summary.failures.append((facts.path, error))
            for facts, known in pending.touched:
                s.execute(update(ImageRow).where(ImageRow.id == known.id)
                          .values(size=facts.size, mtime_ns=facts.mtime_ns, indexed_at=now))
                self.summary.unchanged += 1
            version = catalog.bump_version(s)
        self._mirror(removed_ids, added_ids, added_vecs, version)
        pending.encoded.clear()
        pending.failed.clear()
        pending.touched.clear()

    def _mirror(self, removed: list[int], added: list[int], vecs: list[np.ndarray], version: int) -> None:
        if removed and not self.vectors.supports_remove:  # HNSW: rebuild from the committed embeddings
            old = self.vectors
            self.vectors = self.store.build_vectors(old.kind if old.forced else None, old.forced)
            return
        self.vectors.remove(np.asarray(removed, dtype=np.int64))
        if added:
            self.vectors.add(np.asarray(added, dtype=np.int64), np.stack(vecs).astype(np.float32))
        self.store.set_vector_index(self.vectors, version)

    def remove_missing(self, rows: list[_Known]) -> None:
        if not rows:
            return
        ids = [r.id for r in rows]
        with self.store.session() as s, s.begin():
            catalog.delete_images(s, ids)
            version = catalog.bump_version(s)
        self._mirror(ids, [], [], version)
        self.summary.removed += len(ids)

    def record_moves(self, moves: list[tuple[FileFacts, _Known]]) -> None:
        if not moves:
            return
        with self.store.session() as s, s.begin():
            # Two passes so that swapping two names never collides on the unique path constraint.
            for _facts, known in moves:
                s.execute(update(ImageRow).where(ImageRow.id == known.id).values(path=f"\0moving\0{known.id}"))
            for facts, known in moves:
                s.execute(update(ImageRow).where(ImageRow.id == known.id).values(
                    path=facts.path, ext=_ext(facts.path), size=facts.size, mtime_ns=facts.mtime_ns,
                    indexed_at=catalog.utcnow()))
        self.summary.moved += len(moves)


def _detect_moves(new: list[FileFacts], missing: list[_Known]) -> tuple[list[tuple[FileFacts, _Known]], list[FileFacts]]:
    """Match new files to vanished rows by size, then content digest; only size matches get hashed."""
    by_size: dict[int, list[_Known]] = collections.defaultdict(list)
    for row in missing:
        if row.ok and row.has_vector and row.digest:
            by_size[row.size].append(row)
    if not by_size:
        return [], new
    moves: list[tuple[FileFacts, _Known]] = []
    still_new: list[FileFacts] = []
    for facts in new:
        candidates = by_size.get(facts.size)
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


def _decode_stream(items: list[tuple[FileFacts, _Known | None]], decode: Callable[[str], tuple[str, Decoded]],
                   workers: int, prefetch: int) -> Iterable[tuple[FileFacts, _Known | None, Future]]:
    """Yield decode futures in order, keeping at most `prefetch` in flight (bounded memory)."""
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="clipsearch-decode") as pool:
        queue: collections.deque = collections.deque()
        it = iter(items)
        try:
            for facts, known in it:
                queue.append((facts, known, pool.submit(decode, facts.path)))
                if len(queue) >= prefetch:
                    yield queue.popleft()
            while queue:
                yield queue.popleft()
        finally:
            for _f, _k, fut in queue:
                fut.cancel()


def default_batch_size(device_type: str) -> int:
    return 128 if device_type == "cuda" else 32


def run_index(store: "Store", targets: list, *, exclude: tuple[str, ...] = (), include_hidden: bool = False,
              batch_size: int | None = None, workers: int | None = None, progress: Progress | None = None,
              commit_every: int = COMMIT_EVERY) -> RunSummary:
    started = time.perf_counter()
    summary = RunSummary()
    roots, scanned = scan(targets, exclude=exclude, include_hidden=include_hidden, skip_dirs=[str(store.path)])
    summary.scanned = len(scanned.files)
    summary.problems = scanned.problems
    single_files = [f.path for f in scanned.files if not any(f.path.startswith(r.rstrip("/") + "/") for r in roots)]
    with store.writer_lock():
        with store.session() as s, s.begin():
            catalog.mark_stale_runs(s)
            run = RunRow(status="running")
            s.add(run)
        with store.session() as s:
            known = _known_rows(s, roots, single_files)

        seen: set[str] = set()
        todo: list[tuple[FileFacts, _Known | None]] = []
        new: list[FileFacts] = []
        for facts in scanned.files:
            seen.add(facts.path)
            row = known.get(facts.path)
            if row is None:
                if facts.has_image_ext or sniff_file(facts.path):
                    new.append(facts)
                else:
                    summary.not_images += 1
            elif row.size == facts.size and row.mtime_ns == facts.mtime_ns and (not row.ok or row.has_vector):
                summary.unchanged += 1
            else:
                todo.append((facts, row))
        missing = [row for path, row in known.items() if path not in seen]

        status = "failed"
        committer: _Committer | None = None
        try:
            if todo or new or missing:
                if todo or new:
                    t_model = time.perf_counter()
                    store.encoder  # noqa: B018 - loads the model: only when there is work for it
                    summary.model_seconds = time.perf_counter() - t_model
                    store.ensure_manifest()
                    store.ensure_text_cache()
                committer = _Committer(store, summary)
                moves, new = _detect_moves(new, missing)
                committer.record_moves(moves)
                moved_ids = {k.id for _f, k in moves}
                committer.remove_missing([r for r in missing if r.id not in moved_ids])
                todo.extend((facts, None) for facts in new)
                if todo:
                    _encode_all(store, committer, todo, summary, batch_size=batch_size, workers=workers,
                                progress=progress, commit_every=commit_every)
                store.retype_vectors_if_needed()
                store.save_vector_index()
            else:
                store.sync_vector_file()  # e.g. after a killed run: persist the rebuilt index once
            status = "done"
        except KeyboardInterrupt:
            status = "interrupted"
            raise
        finally:
            if committer is not None and status != "done":
                store.save_vector_index()  # the in-memory index mirrors exactly what was committed
            summary.seconds = time.perf_counter() - started
            with store.session() as s, s.begin():
                for root in roots:
                    existing = s.scalars(select(RootRow).where(RootRow.path == root)).first()
                    if existing:
                        existing.last_indexed_at = catalog.utcnow()
                    else:
                        s.add(RootRow(path=root))
                s.execute(update(RunRow).where(RunRow.id == run.id).values(
                    status=status, finished_at=catalog.utcnow(), scanned=summary.scanned, added=summary.added,
                    updated=summary.updated, moved=summary.moved, removed=summary.removed,
                    unchanged=summary.unchanged, failed=summary.failed, seconds=summary.seconds))
    return summary


def _encode_all(store: "Store", committer: _Committer, todo: list[tuple[FileFacts, _Known | None]],
                summary: RunSummary, *, batch_size: int | None, workers: int | None, progress: Progress | None,
                commit_every: int) -> None:
    encoder = store.encoder
    size, mode = encoder.image_size, encoder.resize_mode
    batch_size = batch_size or default_batch_size(encoder.device.type)
    workers = workers or max(2, os.cpu_count() or 2)
    if progress:
        progress.start(len(todo), "encoding")
    pending = _Pending()
    batch: list[tuple[FileFacts, _Known | None, str, Decoded]] = []

    def flush_batch() -> None:
        if not batch:
            return
        t = time.perf_counter()
        vecs = encoder.encode_images(np.stack([d.pixels for _f, _k, _d, d in batch]))
        summary.encode_seconds += time.perf_counter() - t
        summary.encoded += len(batch)
        for (facts, known, digest, dec), vec in zip(batch, vecs):
            pending.encoded.append((facts, known, digest, dec, vec))
        if progress:
            progress.advance(len(batch))
        batch.clear()

    def decode(path: str) -> tuple[str, Decoded]:
        return read_and_decode(path, size, mode)

    last_commit = time.perf_counter()
    for facts, known, fut in _decode_stream(todo, decode, workers, prefetch=batch_size * 3):
        try:
            digest, dec = fut.result()
        except DecodeError as exc:
            pending.failed.append((facts, known, str(exc)))
            if progress:
                progress.advance(1)
        else:
            if known is not None and known.ok and known.has_vector and known.digest == digest:
                pending.touched.append((facts, known))  # stat changed, content did not: keep the embedding
                if progress:
                    progress.advance(1)
            else:
                batch.append((facts, known, digest, dec))
                if len(batch) >= batch_size:
                    flush_batch()
        if len(pending) >= commit_every or (len(pending) and time.perf_counter() - last_commit > COMMIT_SECONDS):
            committer.commit(pending)
            last_commit = time.perf_counter()
    flush_batch()
    committer.commit(pending)
