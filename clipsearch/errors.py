"""One exception type for every failure a user can fix, so the CLI can print it as one line."""

from __future__ import annotations


class ClipsearchError(Exception):
    """A problem the user can act on: `message` says what went wrong, `hint` what to do."""

    def __init__(self, message: str, hint: str | None = None, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.param = param  # the library parameter at fault; a front end names its own option for it

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message} ({self.hint})"


class StoreLockedError(ClipsearchError):
    """Another process is writing to the store."""


class ModelMismatchError(ClipsearchError):
    """The store was built with a different model than the one asked for."""


class ModelUnavailableError(ClipsearchError):
    """The model name is unknown or its weights cannot be had."""


class NotFoundError(ClipsearchError):
    """No such image in the store (an unknown or deleted id), or its file is gone or changed since indexing."""


class DiskFullError(ClipsearchError):
    """The disk (or quota) that holds the store ran out of space: nothing half-written is kept."""


_FULL_TEXTS = ("no space left on device", "database or disk is full", "disk quota exceeded")


def is_disk_full(exc: BaseException | None, where: object = None) -> bool:
    """Whether `exc`, or what caused it (SQLAlchemy's `orig`, a `shutil.Error`'s list, a chained exception),
    is the disk or quota running out of space (ENOSPC / EDQUOT, SQLITE_FULL, FAISS's write error); or, given the
    folder `where`, an I/O error there while its disk has no free block (SQLite's "disk I/O error" when it cannot
    make its -shm file)."""
    import errno
    import os
    import shutil

    if where is not None and exc is not None and "disk i/o error" in str(exc).lower():
        try:
            if os.statvfs(str(where)).f_bavail == 0:
                return True
        except OSError:
            pass

    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if isinstance(exc, shutil.Error) and exc.args and isinstance(exc.args[0], list):
            if any(any(t in str(item).lower() for t in _FULL_TEXTS) for item in exc.args[0]):
                return True
        if any(t in str(exc).lower() for t in _FULL_TEXTS):
            return True
        exc = getattr(exc, "orig", None) or exc.__cause__ or exc.__context__
    return False


def disk_full(where: object, doing: str) -> DiskFullError:
    """The one line for a full disk while `doing` something in the store at `where`."""
    return DiskFullError(f"the disk holding {where} is full (no space left) while {doing}; the store is as it was "
                         "before the write that failed", "free some space (or use a store on another disk), then run "
                         "the same command again: committed work is kept")
