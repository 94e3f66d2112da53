"""Crash-safe file writes: a reader sees the old file or the new one, never half of either."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path


def canonical(path: str | Path) -> str:
    """The real absolute path (symlinks resolved): the one name under which a file is catalogued."""
    return os.path.realpath(os.path.expanduser(os.fspath(path)))


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: Path, write: Callable[[Path], object], durable: bool = True) -> None:
    """Call `write(tmp_path)`, fsync, then rename over `path` (write-temp, fsync, rename).

    `durable=False` skips the fsyncs: still never half a file for a reader, but a power cut may lose it. For
    caches that can be rebuilt (thumbnails), where an fsync per file would dominate the cost.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        write(tmp)
        if durable:
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    if durable:
        _fsync_dir(path.parent)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text))


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux renameat2 RENAME_EXCHANGE); False where the system cannot."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    return renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0


def swap_dirs(new: Path, target: Path, discard: Callable[[Path], object]) -> None:
    """Put the complete folder `new` in place of `target`, then `discard` the old one (a store passes a
    function that deletes only its own files, by name).

    With an atomic exchange a reader always finds a whole store at `target`; elsewhere two renames leave
    a moment without one (the old folder is kept aside until the new one is in place).
    """
    new, target = Path(new), Path(target)
    if _exchange(new, target):
        discard(new)  # `new` now holds the old store
        return
    old = target.with_name(f".{target.name}.old")
    if old.exists():
        discard(old)
    os.replace(target, old)
    os.replace(new, target)
    discard(old)


def replace_dir(tmp: Path, folder: Path) -> None:
    """Put the finished folder `tmp` in place of `folder` (which may exist): readers see one or the other."""
    import shutil

    old = folder.with_name(folder.name + f".old{os.getpid()}")
    shutil.rmtree(old, ignore_errors=True)
    if folder.exists():
        os.replace(folder, old)
    os.replace(tmp, folder)
    shutil.rmtree(old, ignore_errors=True)


def link_tree(src: Path, dst: Path) -> None:
    """Copy a folder of read-only files by hard links where the file system allows (no bytes copied), else
    by copying; `dst` appears whole or not at all."""
    import shutil

    def link_or_copy(a: str, b: str) -> None:
        try:
            os.link(a, b)
        except OSError:
            shutil.copy2(a, b)

    tmp = dst.with_name(dst.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        shutil.copytree(src, tmp, copy_function=link_or_copy)
        replace_dir(tmp, dst)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
