"""An unchanged re-run without the pipeline: a walk, a stat per file, one read of the catalog, the run's record.

Re-indexing folders where nothing changed found nothing to do in ~0.06 s, but paid ~0.4 s of imports first: the
pipeline's (SQLAlchemy for the catalog's writer, PIL, the encoders' modules) and FAISS's for the vector check.
`run_if_unchanged` makes the pipeline's decision on the same scan (`diff.diff` against `known_rows`, read over
sqlite3) and, when there is nothing to do, records the run as the pipeline records it (`sqlite_runs`) and
returns its summary. Anything else returns None before writing anything, and the caller runs the pipeline on the
same scan: a new, changed, missing, unhashed or metadata-unread file, a vanished root (the pipeline marks it),
a store that reads text (the text stage may have work), a vector file not in step with the catalog (or IVF-PQ,
whose re-rank blocks a writer checks).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from clipsearch.indexing.diff import diff
from clipsearch.indexing.scan import ScanResult, is_inside
from clipsearch.indexing.summary import RunSummary

if TYPE_CHECKING:  # pragma: no cover
    from clipsearch.catalog.sqlite_reader import QuickCatalog


def run_if_unchanged(reads: QuickCatalog, db_path: Path, roots: list[str], scanned: ScanResult,
                     store_roots: list[str], vectors_in_step: Callable[[], bool]) -> RunSummary | None:
    """The summary of a run that found every scanned file unchanged (and recorded it), else None (nothing written).

    `roots` and `scanned` are the scan's (`scan.scan`), `store_roots` the roots the catalog held before it, the
    caller holds the writer lock, and `vectors_in_step()` says whether the saved vector index reflects the
    catalog as it is."""
    started = time.perf_counter()
    summary = RunSummary(scanned=len(scanned.files), problems=list(scanned.problems), aliases=scanned.aliases)
    if any(r not in roots and not os.path.isdir(r) for r in store_roots) or reads.reads_text():
        return None
    singles = [f.path for f in scanned.files if not is_inside(f.path, roots)]
    d = diff(scanned, reads.known_rows(roots, singles), summary)
    if d.todo or d.new or d.missing or d.unhashed or d.unread_meta or not vectors_in_step():
        return None
    from clipsearch.catalog.sqlite_runs import QuickRuns

    runs = QuickRuns(db_path)
    try:
        run_id = runs.begin_run()
        summary.seconds = time.perf_counter() - started
        runs.finish_run(run_id, "done", summary.counts(), roots)
    finally:
        runs.close()
    return summary
