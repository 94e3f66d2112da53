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


# SQLSTATE class 53 (insufficient resources): what each means, and what the user can do about it
_SERVER_SHORT = {
    "53100": ("its disk is full (SQLSTATE 53100 disk_full)",
              "free space on the disk that holds the database (its data folder or tablespace), or ask its "
              "administrator to"),
    "53200": ("it is out of memory (SQLSTATE 53200 out_of_memory)", "ask its administrator to give it more memory"),
    "53300": ("it has no free connection (SQLSTATE 53300 too_many_connections)",
              "close other clients, or ask its administrator to raise max_connections"),
    "53400": ("a configured limit was reached (SQLSTATE 53400 configuration_limit_exceeded)",
              "ask its administrator which limit (the server's log says) and to raise it"),
}


def sqlstate(exc: BaseException | None) -> str | None:
    """The SQLSTATE of a database server's error in `exc` or what caused it (psycopg's `sqlstate`, psycopg2's
    `pgcode`), else None."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        code = getattr(exc, "sqlstate", None) or getattr(exc, "pgcode", None)
        if isinstance(code, str) and len(code) == 5:
            return code
        exc = getattr(exc, "orig", None) or exc.__cause__ or exc.__context__
    return None


def _from_database(exc: BaseException | None) -> bool:
    """Whether `exc` or what caused it was raised by a database driver (psycopg, or SQLAlchemy wrapping one)."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if type(exc).__module__.partition(".")[0] in ("psycopg", "psycopg2", "sqlalchemy"):
            return True
        exc = getattr(exc, "orig", None) or exc.__cause__ or exc.__context__
    return False


def server_short_of(exc: BaseException | None, where: str | None = None,
                    doing: str | None = None) -> ClipsearchError | None:
    """The one line for a database server out of a resource (SQLSTATE class 53: a full disk, memory,
    connections) while `doing` something with the catalog at `where` (a URL without password); None for any
    other error. The server rolled the failed transaction back: the catalog holds what was committed before."""
    code = sqlstate(exc)
    if code is None and _from_database(exc) and is_disk_full(exc):
        code = "53100"  # a FATAL at login ("could not write init file: No space left on device") carries no code
    if code is None or not code.startswith("53"):
        return None
    what, todo = _SERVER_SHORT.get(code, (f"it is short of a resource (SQLSTATE {code} insufficient_resources)",
                                          "see the server's log, or ask its administrator"))
    message = (f"the database server of the catalog{f' {where}' if where else ''} refused the work"
               f"{f' while {doing}' if doing else ''}: {what}; the catalog is as it was before the failed write")
    hint = f"{todo}, then run the same command again: committed work is kept"
    return DiskFullError(message, hint) if code == "53100" else ClipsearchError(message, hint)


def disk_full(where: object, doing: str) -> DiskFullError:
    """The one line for a full disk while `doing` something in the store at `where`."""
    return DiskFullError(f"the disk holding {where} is full (no space left) while {doing}; the store is as it was "
                         "before the write that failed", "free some space (or use a store on another disk), then run "
                         "the same command again: committed work is kept")
