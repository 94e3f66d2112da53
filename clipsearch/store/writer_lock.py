"""One writer at a time: the store's writer lock, and whether another process's run is still at work.

On SQLite the lock is an fcntl lock on the store's `lock` file (it names the holder's pid, for the error a
second writer sees); the kernel drops it when the holder dies, so a killed run never leaves the store locked.
A catalog in a database server is shared by machines that see no common lock file: there the catalog's
advisory locks (`Catalog.writer`, `Catalog.run_active`) do the job, per folder, so writers on separate folders
run at once. Readers never wait on either (SQLite WAL or the server's MVCC, and atomic FAISS file replaces).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from clipsearch.errors import StoreLockedError
from clipsearch.store.manifest import LOCK_FILE

if TYPE_CHECKING:  # pragma: no cover
    from clipsearch.store.catalog_place import CatalogPlace
    from clipsearch.store.folder import StoreFolder


class WriterLock:
    """The writer lock of the store in `folder` whose catalog is `place`."""

    def __init__(self, folder: StoreFolder, place: CatalogPlace) -> None:
        self._folder = folder
        self._place = place

    @contextlib.contextmanager
    def hold(self, folders: Sequence[str] | None = None) -> Iterator[None]:
        """Hold the lock for the block: the store's on SQLite; on a shared catalog the one of `folders` (None:
        the whole store). A held lock is a StoreLockedError at once, never a wait."""
        import fcntl

        self._folder.ensure_writable()
        if self._place.shared:
            with self._place.catalog.writer(folders):
                yield
            return
        lock_path = self._folder.path / LOCK_FILE
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = lock_path.read_text().strip() or "another process"
                raise StoreLockedError(f"store {self._folder.path} is being written by {holder}",
                                       "wait for that run to finish (queries still work meanwhile)") from None
            os.ftruncate(fd, 0)
            os.write(fd, f"pid {os.getpid()}".encode())
            yield
        finally:
            os.close(fd)

    def active(self, run_id: int | None = None) -> bool:
        """Whether another process holds the lock right now (a run in progress, not a killed one); on a shared
        catalog, whether run `run_id`'s writer is still at work."""
        import fcntl

        if self._place.shared:
            return run_id is not None and self._place.catalog.run_active(run_id)
        try:
            fd = os.open(self._folder.path / LOCK_FILE, os.O_RDONLY)
        except OSError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            return False
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
