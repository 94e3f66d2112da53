"""What a store folder may hold, and the only ways a store's files are ever removed.

A store folder is created empty, or adopted only when everything in it is the store's own (its manifest, the
catalog and its journal files, the FAISS files, the text tower, thumbnails, the lock, and the temporary files of
an interrupted write). Anything else in it — a user's photos, a thesis, another program's folder — means it is
not a store: writing commands refuse it before any write, and nothing ever deletes a name that is not on this
list. A user's files are read, never written or removed.

`StoreFolder` is an open store's folder: where it is, whether it may be written, and its manifest (None until
the first write records the model). The store's collaborators share it, so they agree on what has been stored.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from pathlib import Path
from typing import Any

from clipsearch.errors import ClipsearchError
from clipsearch.store.manifest import CATALOG, LOCK_FILE, MANIFEST, TEXT_ENCODER_DIR, THUMB_DIR, write_manifest
from clipsearch.vectors.store import EXACT_FILE, FAISS_FILE, FAISS_SIDECAR

STORE_FILES = frozenset({MANIFEST, CATALOG, f"{CATALOG}-wal", f"{CATALOG}-shm", f"{CATALOG}-journal",
                         FAISS_FILE, FAISS_SIDECAR, EXACT_FILE, LOCK_FILE})
STORE_DIRS = frozenset({TEXT_ENCODER_DIR, THUMB_DIR})
# what an interrupted write leaves: fsutil.atomic_write's ".NAME.PID.THREAD.tmp", and the text tower's
# "text_encoder.tmpPID" / ".oldPID" (fsutil.replace_dir, link_tree)
_STORE_NAMES = "|".join(re.escape(n) for n in sorted(STORE_FILES))
_TRANSIENT = re.compile(rf"\.(?:{_STORE_NAMES})\.\d+\.\d+\.tmp|{re.escape(TEXT_ENCODER_DIR)}\.(?:tmp|old)\d+")


def is_store_entry(name: str) -> bool:
    """Whether a store makes an entry of this name in its folder."""
    return name in STORE_FILES or name in STORE_DIRS or _TRANSIENT.fullmatch(name) is not None


def foreign_entries(folder: Path) -> list[str]:
    """The names in `folder` that no store makes, sorted ([] when the folder does not exist)."""
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return []
    return sorted(n for n in names if not is_store_entry(n))


def _listing(names: list[str], folder: Path) -> str:
    shown = [n + ("/" if (folder / n).is_dir() else "") for n in names[:5]]
    more = f" and {len(names) - 5} more" if len(names) > 5 else ""
    return ", ".join(shown) + more


def check_new_store_folder(folder: Path) -> None:
    """Refuse, before anything is written, a folder that a new store cannot take: a file, or a folder that
    holds anything a store does not make (it is somebody's folder, not a store)."""
    if folder.exists() and not folder.is_dir():
        raise ClipsearchError(f"{folder} is a file, not a store folder",
                              "point the index option at a new or empty folder", param="path")
    foreign = foreign_entries(folder)
    if foreign:
        raise ClipsearchError(f"{folder} is not a clipsearch store and is not empty (it holds "
                              f"{_listing(foreign, folder)})",
                              "point the index option at a new or empty folder: a store keeps only its own files",
                              param="path")


def check_replaceable(folder: Path, why: str) -> None:
    """Refuse to replace a store folder that holds anything but the store's files (`why`: the verb)."""
    foreign = foreign_entries(folder)
    if foreign:
        raise ClipsearchError(f"store {folder} also holds files that are not the store's "
                              f"({_listing(foreign, folder)}), and {why} replaces the store folder",
                              "move those files out of the store folder, then try again")


def remove_store_files(folder: Path) -> list[str]:
    """Delete the store files in `folder` by name, then the folder if nothing else is left; returns the names
    that were not the store's and so were left in place."""
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return []
    for name in names:
        if not is_store_entry(name):
            continue
        path = folder / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            try:
                path.unlink()
            except FileNotFoundError:
                pass
    left = foreign_entries(folder)
    if not left:
        try:
            folder.rmdir()
        except OSError:
            pass
    return left



def reembed_folder(folder: Path) -> Path:
    """Where a re-embed builds the store that will replace the one in `folder`: beside it, hidden. Refused
    before anything is written when `folder` holds files that are not the store's, or the place is taken by
    anything but a leftover half-built store (which is discarded)."""
    check_replaceable(folder, "re-embedding")
    new = folder.with_name(f".{folder.name}.reembed")
    check_new_store_folder(new)
    return new


def swap_in(new: Path, folder: Path) -> None:
    """Put the store built in `new` in place of the one in `folder`, keeping the thumbnails (they depend on
    content only); the old store's files are then removed, by name."""
    from clipsearch.fsutil import swap_dirs

    with contextlib.suppress(OSError):
        os.rename(folder / THUMB_DIR, new / THUMB_DIR)
    swap_dirs(new, folder, discard=remove_store_files)

class StoreFolder:
    """An open store's folder and its manifest; the folder itself appears on the first write."""

    def __init__(self, path: Path, manifest: dict[str, Any] | None, readonly: bool) -> None:
        self.path = path
        self.manifest = manifest
        self.readonly = readonly
        self._created = False

    def ensure_writable(self) -> None:
        """Refuse a read-only store or a folder that is not a store; make the folder of a new store."""
        if self.readonly:
            raise ClipsearchError(f"store {self.path} is read-only", "copy it to a writable place to change it")
        if self.manifest is None:
            check_new_store_folder(self.path)  # never adopt somebody's folder as a store
        if not self.path.exists():
            self.path.mkdir(parents=True)
            self._created = True

    def require_manifest(self) -> dict[str, Any]:
        if self.manifest is None:
            raise ClipsearchError(f"store {self.path} is empty", "add images first: index a folder into it")
        return self.manifest

    def record(self, manifest: dict[str, Any]) -> None:
        """Write the manifest: from now on the folder is a store (of this model)."""
        write_manifest(self.path, manifest)
        self.manifest = manifest

    def discard_if_unused(self) -> None:
        """Remove the folder made for a new store when nothing was stored (e.g. the model failed to load)."""
        if self._created and self.manifest is None:
            remove_store_files(self.path)
