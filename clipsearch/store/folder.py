"""What a store folder may hold, and the only ways a store's files are ever removed.

A store folder is created empty, or adopted only when everything in it is the store's own (its manifest, the
catalog and its journal files, the FAISS files, the text tower, thumbnails, the lock, and the temporary files of
an interrupted write). Anything else in it — a user's photos, a thesis, another program's folder — means it is
not a store: writing commands refuse it before any write, and nothing ever deletes a name that is not on this
list. A user's files are read, never written or removed.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from clipsearch.errors import ClipsearchError
from clipsearch.store.manifest import CATALOG, LOCK_FILE, MANIFEST, TEXT_ENCODER_DIR, THUMB_DIR
from clipsearch.vectors.store import EXACT_FILE, FAISS_FILE, FAISS_SIDECAR

STORE_FILES = frozenset({MANIFEST, CATALOG, f"{CATALOG}-wal", f"{CATALOG}-shm", f"{CATALOG}-journal",
                         FAISS_FILE, FAISS_SIDECAR, EXACT_FILE, LOCK_FILE})
STORE_DIRS = frozenset({TEXT_ENCODER_DIR, THUMB_DIR})
# what an interrupted write leaves: fsutil.atomic_write's ".NAME.PID.THREAD.tmp", and the text tower's
# "text_encoder.tmpPID" / ".oldPID" (fsutil.replace_dir, link_tree)
_TRANSIENT = re.compile(r"\.(?:%s)\.\d+\.\d+\.tmp|%s\.(?:tmp|old)\d+" % (
    "|".join(re.escape(n) for n in sorted(STORE_FILES)), re.escape(TEXT_ENCODER_DIR)))


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
