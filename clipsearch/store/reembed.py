"""Re-embedding a store in place by id: the same catalog rows (ids, runs, roots, vectors version), new embeddings.

A re-embed works on a copy of the store beside it (`folder.reembed_folder`) and swaps it in when complete, so
queries answer from the old vectors until then and a crash leaves the old store as it was. The copy starts as a
snapshot of the catalog with every embedding dropped; an index run over the store's present roots then re-encodes
each file into its own row (a still keeps its id, a video keeps the id of every frame at the same moment). Rows
of a vanished root (an unmounted drive) stay, without an embedding, hidden like the root: the run that finds the
folder again re-encodes them. The FAISS index type a user forced is built again, and the re-embed is recorded in
the catalog (`info` shows it).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from clipsearch.catalog.catalog import Catalog
    from clipsearch.indexing.writer import RunSummary

LAST_REEMBED = "last_reembed"  # the catalog's meta key: JSON of the last re-embed, as `info` shows it


@dataclass(frozen=True)
class ReembedPlan:
    """What a re-embed re-encodes (`targets`: the present roots and the single files that exist), keeps for
    later (`vanished_roots`) and drops (`gone`: ids of single files that no longer exist)."""
    targets: list[str]
    vanished_roots: list[str]
    gone: list[int]
    frame_interval: float | None = None  # as the store's videos were sampled (None: the default)


def plan(catalog: Catalog) -> ReembedPlan:
    """Sort the store's rows for a re-embed, by the folders and files that exist now."""
    from clipsearch.indexing.scan import is_inside

    roots = [r["path"] for r in catalog.roots()]
    present = [r for r in roots if os.path.isdir(r)]
    vanished = [r for r in roots if r not in present]
    singles = [p for p in dict.fromkeys(catalog.indexed_paths()) if not is_inside(p, roots)]
    gone = [p for p in singles if not os.path.exists(p)]
    ids = [i for known in catalog.known_rows([], gone).values() for i in known.all_ids] if gone else []
    return ReembedPlan(present + [p for p in singles if p not in gone], vanished, ids, catalog.frame_interval())


def prepare_copy(catalog: Catalog, target: Path, drop: list[int]) -> None:
    """The copy's catalog: a snapshot of `catalog` at `target` without embeddings and without the `drop` rows."""
    from clipsearch.catalog.catalog import Catalog as CatalogClass

    catalog.copy_to(target)
    copy = CatalogClass(target)
    try:
        if drop:
            copy.delete_images(drop)
        copy.drop_embeddings()
    finally:
        copy.close()


def waiting_under(catalog: Catalog, roots: list[str]) -> int:
    """Rows kept without an embedding under vanished roots: re-encoded when their folder is back."""
    return sum(catalog.count_under(r) for r in roots)


def record(catalog: Catalog, old_model: str, new_model: str, summary: RunSummary, started: float) -> None:
    """Note the re-embed in the catalog (what `info` reports as `last_reembed`)."""
    catalog.set_meta(LAST_REEMBED, json.dumps({
        "at": dt.datetime.now(dt.timezone.utc).replace(microsecond=0, tzinfo=None).isoformat(),
        "from": old_model, "to": new_model, "encoded": summary.encoded, "failed": summary.failed,
        "waiting": summary.waiting, "waiting_roots": summary.vanished_roots,
        "seconds": round(time.perf_counter() - started, 2)}))


def last(catalog: Catalog) -> dict | None:
    value = catalog.meta(LAST_REEMBED)
    return json.loads(value) if value else None
