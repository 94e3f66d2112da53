"""What a store holds, as `info` reports it: counts, model, where the catalog is, the index type, roots (the
vanished ones apart), the last run (running, or interrupted when its writer is gone), the last re-embed and the
size on disk.

It reads only: a store whose folder has not appeared yet (nothing written) reports an empty store without
creating anything, and the FAISS file's type comes from its sidecar, without loading the index.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from clipsearch.store.catalog_place import CatalogPlace
    from clipsearch.store.folder import StoreFolder
    from clipsearch.store.writer_lock import WriterLock


def store_info(folder: StoreFolder, place: CatalogPlace, lock: WriterLock, disk: bool = True) -> dict[str, Any]:
    """The facts of the store in `folder`; `disk=False` skips the walk of the folder that sums its size."""
    from clipsearch.catalog.catalog import parse_datetime
    from clipsearch.store.reembed import last as last_reembed
    from clipsearch.vectors.store import FAISS_FILE, saved_meta

    path = folder.path
    exists = path.exists()  # a new store's folder appears on its first write
    catalog = place.catalog if exists else None
    counts = catalog.counts() if catalog is not None else {"images": 0, "failed": 0, "vectors": 0,
                                                                 "videos": 0, "frames": 0}
    roots = [r["path"] for r in catalog.roots()] if catalog is not None else []
    last = catalog.last_run() if catalog is not None else None
    if last is not None:
        run_id = last.pop("id")
        if last["status"] == "running":
            last["status"] = "in progress" if lock.active(run_id) else "interrupted"
        last.update(seconds=round(last["seconds"], 2), started_at=parse_datetime(last["started_at"]),
                    finished_at=parse_datetime(last["finished_at"]))
    model = (folder.manifest or {}).get("model")
    if model is not None and "languages" not in model:  # recorded since the model description has them
        model = {**model, "languages": list(_languages(model["spec"]))}
    return {
        "store": str(path.resolve()),
        "model": model,
        "catalog": place.where(),
        **counts,
        "photo_metadata": catalog.photo_counts() if catalog is not None else
        {"with_capture_time": 0, "with_camera": 0, "with_place": 0, "metadata_unread": 0},
        "index_type": (saved_meta(path / FAISS_FILE) or {}).get("kind", "flat (not built yet)"),
        "disk_bytes": (sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if exists else 0)
        if disk else None,
        "roots": roots,
        "vanished_roots": [r for r in roots if not os.path.isdir(r)],
        "last_run": last,
        "last_reembed": last_reembed(catalog) if catalog is not None else None,
        "text": catalog.text_info() if catalog is not None else None,  # the text read inside images (OCR)
    }


def _languages(spec_text: str) -> tuple[str, ...]:
    """The languages of a recorded model spec (by its name when its model folder is gone)."""
    from clipsearch.encoders.languages import languages_of_name, model_languages
    from clipsearch.encoders.spec import parse_spec
    from clipsearch.errors import ClipsearchError

    try:
        return model_languages(parse_spec(spec_text))
    except ClipsearchError:
        return languages_of_name(spec_text)


def count_line(counts: dict[str, Any]) -> str:
    """'6 photos, 1 video (3 moments)': what a store holds, in files (a video is one, however many moments)."""
    def n(count: int, one: str, many: str) -> str:
        return f"{count} {one if count == 1 else many}"

    line = n(counts.get("images", 0), "photo", "photos")
    if counts.get("videos"):
        line += f", {n(counts['videos'], 'video', 'videos')} ({n(counts.get('frames', 0), 'moment', 'moments')})"
    return line
