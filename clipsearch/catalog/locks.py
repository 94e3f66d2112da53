"""Who may write a shared catalog, and which runs are still going: PostgreSQL advisory locks.

A catalog in a database server has several writers at once, each on its own folders and maybe on other
machines, so no lock file can order them; the database can. A writer holds session-level advisory locks on
one connection of its own, the *lease*, for as long as it writes: shared on the store and on every folder above
each of its folders, exclusive on each of its folders (runs on the same or nested folders exclude each other;
runs on separate folders proceed together); a whole-store verb (forget, rebuild) holds the store exclusively.
A run's writer also holds that run's lock, so others can tell a run in progress from one whose writer died.
Locks go with the connection: a killed writer releases them at once.

Kept apart from `catalog.py`, which speaks only the SQL of images, embeddings, roots and runs.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence

from sqlalchemy import Connection, Engine, func, select, text
from sqlalchemy.exc import DBAPIError

from clipsearch.catalog.database import lock_key
from clipsearch.errors import StoreLockedError

_HOLDERS = text(
    "SELECT DISTINCT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
    "WHERE l.locktype = 'advisory' AND l.granted AND l.pid <> pg_backend_pid() "
    "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())")


def lock_schema(conn: Connection) -> None:
    """Wait for the catalog's schema lock until `conn`'s transaction ends: one upgrader (or new store claiming
    the catalog) at a time."""
    conn.execute(select(func.pg_advisory_xact_lock(lock_key("clipsearch", "schema"))))


def writer_keys(owner: str, folders: Sequence[str] | None) -> dict[int, bool]:
    """The advisory lock keys a writer of `folders` (None: the whole store) takes → whether exclusively."""
    store_key = lock_key(owner)
    if folders is None:
        return {store_key: True}
    wanted = {store_key: False}
    for folder in folders:
        parts = folder.rstrip("/").split("/")
        for i in range(1, len(parts)):
            wanted.setdefault(lock_key(owner, "/".join(parts[:i]) or "/"), False)
        wanted[lock_key(owner, folder.rstrip("/") or "/")] = True
    return wanted


def _run_key(owner: str, run_id: int) -> int:
    return lock_key(owner, "run", str(run_id))


class WriterLocks:
    """The advisory locks of one store's writers in a shared catalog (`owner`: the store id)."""

    def __init__(self, engine: Engine, owner: str, where: str) -> None:
        self.engine = engine
        self.owner = owner
        self.where = where  # the catalog, as messages name it
        self.lease: Connection | None = None  # while a writer's block runs: the connection holding its locks

    @property
    def holding(self) -> bool:
        """Whether this process is inside `writer()` (the run locks are asked and held on its lease)."""
        return self.lease is not None

    @contextlib.contextmanager
    def writer(self, folders: Sequence[str] | None, wait: float = 0.0) -> Iterator[None]:
        """Hold a writer's locks for the block (see the module); waits up to `wait` seconds, then raises
        StoreLockedError naming the processes that hold them."""
        conn = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        try:
            self._take(conn, writer_keys(self.owner, folders), folders, time.monotonic() + wait)
        except BaseException:
            _release(conn)
            raise
        self.lease = conn
        try:
            yield
        finally:
            self.lease = None
            _release(conn)

    def _take(self, conn: Connection, wanted: dict[int, bool], folders: Sequence[str] | None,
              deadline: float) -> None:
        """All of `wanted` or none: a try that misses one drops those it got and tries again until `deadline`."""
        while True:
            taken = [conn.execute(select(func.pg_try_advisory_lock(key) if exclusive else
                                         func.pg_try_advisory_lock_shared(key))).scalar()
                     for key, exclusive in wanted.items()]
            if all(taken):
                return
            conn.execute(select(func.pg_advisory_unlock_all()))
            if time.monotonic() >= deadline:
                what = "the store" if folders is None else ", ".join(folders)
                raise StoreLockedError(f"{what} is being written by {_holders(conn)} (catalog {self.where})",
                                       "wait for that run to finish (queries still work meanwhile)")
            time.sleep(0.2)

    def run_active(self, run_id: int) -> bool:
        """Whether run `run_id`'s writer still holds the run's lock."""
        key = _run_key(self.owner, run_id)
        with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            free = conn.execute(select(func.pg_try_advisory_lock_shared(key))).scalar()
            if free:
                conn.execute(select(func.pg_advisory_unlock_shared(key)))
        return not free

    def run_abandoned(self, run_id: int) -> bool:
        """Whether a run marked running has lost its writer (its lock is free); asked on the lease."""
        assert self.lease is not None, "only inside writer()"
        key = _run_key(self.owner, run_id)
        if not self.lease.execute(select(func.pg_try_advisory_lock(key))).scalar():
            return False
        self.lease.execute(select(func.pg_advisory_unlock(key)))
        return True

    def hold_run(self, run_id: int) -> None:
        """Hold run `run_id`'s lock on the lease until the writer's block ends."""
        assert self.lease is not None, "only inside writer()"
        self.lease.execute(select(func.pg_advisory_lock(_run_key(self.owner, run_id))))

    def close(self) -> None:
        if self.lease is not None:
            self.lease.close()
            self.lease = None


def _holders(conn: Connection) -> str:
    names = conn.execute(_HOLDERS).scalars().all()
    return ", ".join(sorted(n for n in names if n)) or "another process"


def _release(conn: Connection) -> None:
    """Drop a session's advisory locks before its connection goes back to the pool (where it stays open)."""
    try:
        conn.execute(select(func.pg_advisory_unlock_all()))
    except DBAPIError:
        conn.invalidate()  # a broken connection: closing it for real ends the session and its locks
    finally:
        conn.close()
