"""Reading the text inside images as its own stage of an index run, beside encoding.

OCR costs about a second an image on a CPU, ten to a hundred times what encoding costs, so it must neither
stall the encoder nor hold the run's writer. The stage is a queue and a worker thread: it is fed the committed
rows that lack text — at the start of a run (what earlier runs left unread: `index --ocr` on an existing store,
or a run that was killed), then each chunk the writer commits — reads each file again at a size fit for text
(the model-sized pixels are far too small), and commits what it read in its own short transactions
(`Catalog.save_texts`, every `BATCH` images or `COMMIT_SECONDS`). A text row is kept only while the image still
holds the content that was read (its digest), so a file changed meanwhile is read again on the next run, and
a kill at any moment leaves a store whose next run reads just what is still missing. Where a run encodes on
Ray, the actors read the text of the files they encode (`read_still`, beside the encoder) and it comes back
with the embeddings: the stage only commits it (a row read there arrives as a `TextTask` with its `lines`);
what earlier runs left unread, and videos, are read here.
"""

from __future__ import annotations

import collections
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from clipsearch.catalog.catalog import Catalog
from clipsearch.catalog.codec import STILL
from clipsearch.catalog.records import ReadText, TextLine, TextTask
from clipsearch.errors import ClipsearchError
from clipsearch.indexing.writer import RunSummary
from clipsearch.media.images import DecodeError, digest_bytes, open_image
from clipsearch.progress import Progress

BATCH = 16  # images per text commit
COMMIT_SECONDS = 5.0
_DONE = None


class LineReader(Protocol):
    """What the stage needs of a text reader (`ocr.reader.TextReader`; a fake in unit tests)."""

    def read(self, image: Any) -> tuple[TextLine, ...]: ...


@dataclass
class _Counts:
    read: int = 0
    found: int = 0
    seconds: float = 0.0


class TextStage:
    """A worker thread that reads the text of queued images and commits it; `put` never blocks."""

    def __init__(self, catalog: Catalog, reader: Callable[[], LineReader], summary: RunSummary,
                 max_side: int = 1920, draft_to: int = 1080) -> None:
        self.catalog, self.reader, self.summary = catalog, reader, summary
        self.max_side, self.draft_to = max_side, draft_to
        self._queue: queue.SimpleQueue[list[TextTask] | None] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._pending = 0  # files queued and not yet read (for the progress bar at the end)
        self._lock = threading.Lock()
        self._progress: Progress | None = None
        self._counts = _Counts()
        self._thread = threading.Thread(target=self._run, name="clipsearch-text", daemon=True)
        self._thread.start()

    # --- the run's side ---------------------------------------------------------------------------------
    def put(self, tasks: Sequence[TextTask]) -> None:
        """Queue rows to read (a video's frames are read from one decode of the file)."""
        by_file: dict[str, list[TextTask]] = collections.defaultdict(list)
        for task in tasks:
            by_file[task.path].append(task)
        for group in by_file.values():
            with self._lock:
                self._pending += 1
            self._queue.put(group)

    def finish(self, progress: Progress | None = None) -> None:
        """Wait until everything queued is read and committed; re-raise the stage's error, if any."""
        with self._lock:
            left = self._pending
            if progress is not None and left:
                progress.start(left, "reading text")
                self._progress = progress
        self._queue.put(_DONE)
        self._thread.join()
        self._collect()
        if self._error is not None:
            raise self._error

    def stop(self) -> None:
        """Give up (the run was interrupted): the batch being read is dropped, what was committed stays."""
        if self._thread.is_alive():
            self._stop.set()
            self._queue.put(_DONE)
            self._thread.join(timeout=30)
        self._collect()

    def _collect(self) -> None:
        c, s = self._counts, self.summary
        s.text_read, s.text_found, s.text_seconds = c.read, c.found, c.seconds

    # --- the worker -------------------------------------------------------------------------------------
    def _run(self) -> None:
        batch: list[ReadText] = []
        last = time.perf_counter()
        try:
            while not self._stop.is_set():
                try:
                    group = self._queue.get(timeout=1.0)
                except queue.Empty:
                    group = []
                if group is _DONE:
                    break
                if group:
                    started = time.perf_counter()
                    batch.extend(self._read(group))
                    self._counts.seconds += time.perf_counter() - started
                    with self._lock:
                        self._pending -= 1
                        if self._progress is not None:
                            self._progress.advance(1)
                if batch and (len(batch) >= BATCH or time.perf_counter() - last > COMMIT_SECONDS):
                    self._commit(batch)
                    last = time.perf_counter()
            if not self._stop.is_set():
                self._commit(batch)
        except BaseException as exc:  # re-raised in the run's thread by finish()
            self._error = exc

    def _commit(self, batch: list[ReadText]) -> None:
        if batch:
            saved = self.catalog.save_texts(batch)  # text read elsewhere may be of content changed since
            self._counts.read += len(saved)
            self._counts.found += sum(1 for t in saved if t.lines)
            batch.clear()

    def _read(self, group: list[TextTask]) -> list[ReadText]:
        """One file's rows read (or already read where they were encoded). A file that changed or cannot be opened
        is skipped (its next run handles it); one the text models fail on is recorded as holding no text, with the
        reason among the run's problems."""
        task = group[0]
        if task.lines is not None:
            return [ReadText(t.id, t.digest, t.lines) for t in group if t.lines is not None]
        try:
            if task.frame_ms == STILL:
                lines = read_still(task.path, task.digest, lambda image: self._lines(image, task.path),
                                   self.draft_to)
                return [] if lines is None else [ReadText(task.id, task.digest, lines)]
            return self._read_video(group)
        except (OSError, DecodeError):
            return []

    def _lines(self, image: Any, path: str) -> tuple[TextLine, ...]:
        reader = self.reader()  # a missing OCR extra fails the run (ClipsearchError), not one image
        try:
            return reader.read(image)
        except ClipsearchError:
            raise
        except Exception as exc:  # ONNX Runtime or OpenCV (whose error is no RuntimeError) refusing one image
            self.summary.problems.append((path, f"could not read its text: {str(exc).splitlines()[0][:200]}"))
            return ()

    def _read_video(self, group: list[TextTask]) -> list[ReadText]:
        from clipsearch.media.video import fingerprint, frames_at

        path, digest = group[0].path, group[0].digest
        if fingerprint(path) != digest:
            return []
        frames = frames_at(path, [t.frame_ms for t in group], self.max_side)
        return [ReadText(t.id, digest, self._lines(frames[t.frame_ms], path)) for t in group if t.frame_ms in frames]


def read_still(path: str, digest: str, read: Callable[[Any], tuple[TextLine, ...]],
               draft_to: int = 1080) -> tuple[TextLine, ...] | None:
    """The lines `read` finds in the still image at `path`, opened at a size fit for text (a JPEG drafted so its
    shorter side covers `draft_to`); None when the file no longer holds the content `digest` names. The text
    stage and the Ray actors read a file the same way. Raises OSError or DecodeError for an unreadable file."""
    with open(path, "rb") as f:
        data = f.read()
    if digest_bytes(data) != digest:
        return None
    return read(open_image(data, draft_to=draft_to)[0])
