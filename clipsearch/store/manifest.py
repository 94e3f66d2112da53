"""The store's manifest (format version, model description, where the catalog lives) and the names of the
store's files.

The manifest is validated on every open: a damaged one is one clear error before anything is written, so
a store can never take embeddings of a second model or dimension beside the first.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from clipsearch.encoders.base import PRECISIONS
from clipsearch.errors import ClipsearchError
from clipsearch.fsutil import atomic_write_text

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
CATALOG = "catalog.sqlite"
TEXT_ENCODER_DIR = "text_encoder"
THUMB_DIR = "thumbnails"  # WebP thumbnails by content digest (thumbnails.py)
LOCK_FILE = "lock"

# key → (type, must be positive) of what every manifest's "model" holds
_MODEL_KEYS: dict[str, tuple[type, bool]] = {"spec": (str, False), "key": (str, False), "embed_dim": (int, True),
                                              "image_size": (int, True)}


def precision(manifest: dict[str, Any]) -> str:
    return str(manifest["model"].get("precision", "fp32"))


def _damaged(path: Path, why: str) -> ClipsearchError:
    return ClipsearchError(f"store manifest {path / MANIFEST} is damaged: {why}",
                           "restore it from a backup, or index into a new store folder")


def validate(manifest: Any, path: Path) -> dict[str, Any]:
    if not isinstance(manifest, dict):
        raise _damaged(path, "not a JSON object")
    if "format_version" not in manifest:
        raise _damaged(path, "no format_version")
    if manifest["format_version"] != FORMAT_VERSION:
        raise ClipsearchError(f"store {path} has format {manifest['format_version']!r}, this clipsearch reads "
                              f"{FORMAT_VERSION}",
                              "use the clipsearch release that wrote it, or re-index into a new store")
    model = manifest.get("model")
    if not isinstance(model, dict):
        raise _damaged(path, "no model description")
    for key, (kind, positive) in _MODEL_KEYS.items():
        value = model.get(key)
        if not isinstance(value, kind) or isinstance(value, bool) or value == "" \
                or (positive and not (isinstance(value, int) and value > 0)):
            raise _damaged(path, f"model.{key} is missing or invalid ({value!r})")
    catalog = manifest.get("catalog")
    if catalog is not None and not (isinstance(catalog, dict) and isinstance(catalog.get("url"), str)
                                    and isinstance(catalog.get("store_id"), str) and catalog["store_id"]):
        raise _damaged(path, "catalog is not a database URL and a store id")
    if model.get("precision", "fp32") not in PRECISIONS:
        raise _damaged(path, f"model.precision is not one of {', '.join(PRECISIONS)} ({model['precision']!r})")
    return manifest


def read_manifest(path: Path) -> dict[str, Any] | None:
    """The validated manifest of the store at `path`, or None when there is none (a new store)."""
    try:
        text = (Path(path) / MANIFEST).read_text()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ClipsearchError(f"store manifest {path / MANIFEST} is unreadable: {exc.strerror or exc}",
                              "check the permissions of the store folder") from exc
    try:
        return validate(json.loads(text), Path(path))
    except ValueError as exc:
        raise _damaged(Path(path), f"not valid JSON ({exc})") from exc


def new_manifest(model: dict[str, Any], catalog: dict[str, str] | None = None,
                 created_with: dict[str, str] | None = None) -> dict[str, Any]:
    """`catalog`: {"url" (no password), "store_id"} of a catalog kept in a database; None: SQLite in the folder.
    `created_with`: the backend, device and precision of the first run's encoder (`encoders.base.runs_on`);
    informative only (each run's summary says where that run encoded)."""
    manifest: dict[str, Any] = {"format_version": FORMAT_VERSION,
                                "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                                "model": model}
    if created_with:
        manifest["created_with"] = created_with
    if catalog:
        manifest["catalog"] = catalog
    return manifest


def catalog_url(manifest: dict[str, Any] | None) -> str | None:
    """The database URL (without password) of a store whose catalog is not the SQLite file in its folder."""
    return ((manifest or {}).get("catalog") or {}).get("url")


def write_manifest(path: Path, manifest: dict[str, Any]) -> None:
    atomic_write_text(Path(path) / MANIFEST, json.dumps(manifest, indent=2))
