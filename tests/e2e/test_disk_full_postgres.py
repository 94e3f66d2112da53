"""A full disk on the catalog's PostgreSQL server (SQLSTATE 53100 disk_full) is one line saying what happened and
what to do — from the CLI and the library, while creating a store, indexing and forgetting — never "unexpected …
report it" nor "cannot reach the database"; the catalog stays consistent (vectors = images, everything committed
answers) and the same command finishes once there is space.

As root the test database lives in a tablespace on a small tmpfs that really fills up: PostgreSQL itself fails
to extend a table file with ENOSPC and answers 53100 (its WAL stays in its data folder, as on a server whose
tablespace disk is full). Elsewhere the server's real psycopg `DiskFull` is raised at the driver layer."""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

import clipsearch
from clipsearch.cli import app
from clipsearch.errors import DiskFullError, server_short_of, sqlstate
from tests.conftest import cli, cli_json, new_database
from tests.e2e.test_disk_full import _fill, _photos

MODEL = "clipsearch-tiny"
ROOT = os.geteuid() == 0
_spaces = itertools.count()


def _admin(server):
    from sqlalchemy import create_engine

    return create_engine(server.get_uri(database="postgres", driver="psycopg"), isolation_level="AUTOCOMMIT")


@pytest.fixture()
def full_tablespace(pg_server):
    """(database URL, mount): a fresh database whose tables all live on a 16 MB tmpfs (root only)."""
    if not ROOT:
        pytest.skip("a real full tablespace needs a tmpfs mount (root); the injected test covers others")
    base = Path(tempfile.mkdtemp(prefix="clipsearch-ts-"))
    base.chmod(0o755)  # the server's user must reach the mount
    mount = base / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)], check=True)
    owner = os.stat(pg_server.pgdata)
    os.chown(mount, owner.st_uid, owner.st_gid)
    name = f"small_{next(_spaces)}"
    admin = _admin(pg_server)
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE TABLESPACE {name} LOCATION '{mount}'")
        conn.exec_driver_sql(f"CREATE DATABASE {name} TABLESPACE {name}")
    try:
        yield pg_server.get_uri(database=name, driver="psycopg"), mount
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            conn.exec_driver_sql(f"DROP TABLESPACE IF EXISTS {name}")
        admin.dispose()
        subprocess.run(["umount", "-l", str(mount)], check=False)
        shutil.rmtree(base, ignore_errors=True)


def _assert_one_line(result) -> None:
    assert result.exit_code == 1, result.stdout
    assert "database server" in result.stderr and "disk is full" in result.stderr, result.stderr
    assert "unexpected" not in result.stderr and "cannot reach" not in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.splitlines()) <= 6, result.stderr


def _consistent(store: Path, images: int) -> None:
    with clipsearch.open(store) as s:
        info = s.info()
        assert info["vectors"] == info["images"] == images
        assert len(s.search("a photo", k=500)) == images


def test_a_full_database_disk_is_one_line_and_the_catalog_recovers(full_tablespace, tmp_path: Path) -> None:
    url, mount = full_tablespace
    runner = CliRunner()
    photos = _photos(tmp_path / "photos", 6)
    more = _photos(tmp_path / "more", 60, start=100)
    store = tmp_path / "store"

    filler = _fill(mount)  # not even room for a new store's tables
    _assert_one_line(runner.invoke(app, ["index", str(photos), "--index", str(store), "--db", url, "--model", MODEL]))
    filler.unlink()
    assert cli_json(runner, "index", photos, "--index", store, "--db", url, "--model", MODEL)["encoded"] == 6

    filler = _fill(mount)
    _assert_one_line(runner.invoke(app, ["index", str(more), "--index", str(store)]))
    with clipsearch.open(store) as s, pytest.raises(DiskFullError) as raised:
        s.add([more])
    assert "53100" in raised.value.message and "free space" in (raised.value.hint or "")
    forgot = runner.invoke(app, ["forget", str(photos), "--index", str(store)])
    if forgot.exit_code:  # a delete may find room in the pages it has; when it does not, one line
        _assert_one_line(forgot)
        _consistent(store, 6)
    else:
        _consistent(store, 0)
        cli(runner, "index", photos, "--index", store)  # (it did fit: put them back for what follows)

    filler.unlink()
    _consistent(store, 6)  # what was committed before the full disk, and nothing half-written
    assert cli_json(runner, "index", more, "--index", store)["encoded"] == 60  # the same command now finishes
    _consistent(store, 66)
    cli(runner, "forget", photos, "--index", store)
    _consistent(store, 60)


def test_an_injected_disk_full_is_one_line(pg_server, tmp_path: Path) -> None:
    """Without root: the server's own exception (psycopg's DiskFull, SQLSTATE 53100) raised by the driver for
    the catalog's inserts and deletes; the catalog's earlier commits stand."""
    import psycopg
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    runner = CliRunner()
    photos = _photos(tmp_path / "photos", 4)
    store = tmp_path / "store"
    cli(runner, "index", photos, "--index", store, "--db", new_database(pg_server), "--model", MODEL)

    def full(_conn, _cursor, statement: str, *_args) -> None:
        if statement.lstrip().upper().startswith(("INSERT INTO IMAGES", "DELETE FROM IMAGES")):
            raise psycopg.errors.DiskFull('could not extend file "base/1/2": No space left on device')

    event.listen(Engine, "before_cursor_execute", full)
    try:
        more = _photos(tmp_path / "more", 3, start=50)
        result = runner.invoke(app, ["index", str(more), "--index", str(store)])
        _assert_one_line(result)
        _assert_one_line(runner.invoke(app, ["forget", str(photos), "--index", str(store)]))
        with clipsearch.open(store) as s, pytest.raises(DiskFullError):
            s.add([more])
    finally:
        event.remove(Engine, "before_cursor_execute", full)
    _consistent(store, 4)
    assert cli_json(runner, "index", more, "--index", store)["encoded"] == 3
    _consistent(store, 7)


def test_what_the_server_being_short_of_means() -> None:
    import psycopg
    from sqlalchemy.exc import OperationalError

    full = OperationalError("INSERT …", {}, psycopg.errors.DiskFull("could not extend file"))
    assert sqlstate(full) == "53100"
    error = server_short_of(full, "postgresql://u@h/db", "indexing")
    assert isinstance(error, DiskFullError) and "53100 disk_full" in error.message and "indexing" in error.message
    connections = server_short_of(OperationalError("", {}, psycopg.errors.TooManyConnections("too many clients")))
    assert connections is not None and not isinstance(connections, DiskFullError)
    assert "max_connections" in (connections.hint or "")
    assert server_short_of(OperationalError("", {}, psycopg.errors.UniqueViolation("dup"))) is None
    assert server_short_of(ValueError("no")) is None
    at_login = OperationalError("", {}, psycopg.OperationalError(
        'connection failed: FATAL:  could not write init file: No space left on device'))
    assert isinstance(server_short_of(at_login), DiskFullError)  # a FATAL at login carries no SQLSTATE
    assert server_short_of(OSError(28, "No space left on device")) is None  # the store folder's own disk
