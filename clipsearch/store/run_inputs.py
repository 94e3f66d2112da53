"""What an index run starts from, checked before anything is scanned: targets that exist (a vanished root of
the store says what became of its images, and how to drop or bring them back), and the pool that encodes the
run's still images elsewhere (`ray_address` → a `RayPool`; Ray is imported only then), and the reader of the
text inside images when the run reads it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from clipsearch.errors import ClipsearchError

if TYPE_CHECKING:  # pragma: no cover
    from clipsearch.catalog.catalog import Catalog
    from clipsearch.catalog.reads import CatalogReads
    from clipsearch.indexing.text_stage import LineReader
    from clipsearch.indexing.writer import EncodePool


def check_target(catalog: CatalogReads, target: str | Path, store_roots: list[str]) -> None:
    """Refuse a target that does not exist, saying so kindly when it is one of the store's vanished roots."""
    from clipsearch.indexing.scan import canonical

    path = os.path.abspath(os.path.expanduser(str(target)))
    if os.path.exists(path):
        return
    if path in store_roots or canonical(path) in store_roots:
        n = catalog.count_under(path)
        raise ClipsearchError(f"{path} no longer exists; its {n} indexed images are hidden from results",
                              "if it is gone for good, drop it from the store with forget; if it is an "
                              "unmounted drive, mount it and index again")
    raise ClipsearchError(f"no such file or folder: {target}", "check the path and try again")


def encode_pool_for(ray_address: str | None, pool: EncodePool | None, device: str | None) -> EncodePool | None:
    """The pool that encodes a run's still images elsewhere: `pool`, else a RayPool for `ray_address`
    ("local": Ray on this machine); told the store's device when it takes one."""
    if ray_address is not None and pool is None:
        from clipsearch.indexing.ray_pool import RayPool

        pool = RayPool(None if ray_address == "local" else ray_address)
    if pool is not None and hasattr(pool, "for_device"):
        pool = pool.for_device(device)
    return pool


def text_reader_for(ocr: bool, catalog: Catalog) -> Callable[[], LineReader] | None:
    """The text reader of a run that reads text (asked to, or a store that does): one, loaded on first use.
    A missing OCR extra is a clear error before anything is scanned."""
    if not (ocr or catalog.reads_text()):
        return None
    from clipsearch.ocr.reader import TextReader, check_available

    check_available()
    reader = TextReader()
    return lambda: reader
