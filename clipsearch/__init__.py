"""clipsearch: search your own image collections by text or by example image.

Importing this package is cheap (no torch); models load on first use.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from clipsearch.errors import ClipsearchError, ModelMismatchError, ModelUnavailableError, StoreLockedError

if TYPE_CHECKING:  # pragma: no cover
    from clipsearch.store.store import Store

__version__ = "0.1.0"
__all__ = ["open", "ClipsearchError", "ModelMismatchError", "ModelUnavailableError", "StoreLockedError"]


def open(path: str | Path | None = None, model: str | None = None, *, create: bool = True,
         device: str | None = None, readonly: bool | None = None, backend: str | None = None,
         db: str | None = None) -> Store:
    """Open (or, with create=True, start) a store. `model` is needed only for a new store or to assert one.

    A new store's folder appears only when `add` first writes to it. `readonly` (default: when the folder is
    not writable) opens the catalog read-only: queries work, writes are refused. `backend` runs the image
    tower in "onnx" (ONNX Runtime) or "torch"; by default onnx where the model exports, else torch. `db` puts
    a new store's catalog in a database (a SQLAlchemy URL such as postgresql+psycopg://user@host/db; default
    CLIPSEARCH_DB, else SQLite in the folder); the folder remembers it.
    """
    from clipsearch.store.store import open_store

    return open_store(path, model, create=create, device=device, readonly=readonly, backend=backend, db=db)
