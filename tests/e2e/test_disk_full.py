"""A full disk is one line saying so and what to do, never "unexpected … report it", and the store stays
consistent: it opens, answers what it committed, and the same command finishes once there is space.

As root the store lives on a small tmpfs that really fills up (creating a store, SQLite's commits, the FAISS
file, forget); elsewhere the same paths get an injected ENOSPC."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

import clipsearch
from clipsearch.cli import app
from clipsearch.errors import is_disk_full
from tests.conftest import cli, cli_json

MODEL = "clipsearch-tiny"
ROOT = os.geteuid() == 0


def _photos(folder: Path, n: int, start: int = 0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(start, start + n):
        Image.new("RGB", (48, 40), ((37 * i) % 256, (91 * i) % 256, (53 * i) % 256)).save(folder / f"{i:03d}.png")
    return folder


@pytest.fixture()
def small_disk(tmp_path: Path):
    """A tmpfs of a few MB (root), resized with `grow`; elsewhere a plain folder."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if ROOT:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], check=True)
    yield mount
    if ROOT:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _grow(mount: Path, size: str) -> None:
    subprocess.run(["mount", "-o", f"remount,size={size}", str(mount)], check=True)


def _fill(mount: Path, spare: int = 0) -> Path:
    """Fill the disk to the last block, then give `spare` bytes back; returns the filler to delete."""
    filler = mount / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        for size in (1 << 20, 4096):
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)
    if spare:
        os.truncate(filler, max(0, filler.stat().st_size - spare))
    return filler


def _assert_one_line(result) -> None:
    assert result.exit_code == 1
    assert "is full" in result.stderr and "unexpected" not in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.splitlines()) <= 4


@pytest.mark.skipif(not ROOT, reason="a real full disk needs a tmpfs mount (root); the injected test covers others")
def test_a_full_disk_while_creating_indexing_and_forgetting_is_one_line(small_disk: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    photos = _photos(tmp_path / "photos", 6)
    idx = small_disk / "index"
    filler = _fill(small_disk, spare=16 << 10)  # 16 KB left: not room for the new store's catalog
    created = runner.invoke(app, ["index", str(photos), "--index", str(idx), "--model", MODEL])
    _assert_one_line(created)

    filler.unlink()
    _grow(small_disk, "40m")
    assert cli_json(runner, "index", photos, "--index", idx)["encoded"] == 6  # the same command now finishes
    assert cli_json(runner, "info", "--index", idx)["vectors"] == 6

    more = _photos(tmp_path / "more", 300, start=100)
    filler = _fill(small_disk)  # not even room to open the catalog
    _assert_one_line(runner.invoke(app, ["index", str(more), "--index", str(idx)]))
    _assert_one_line(runner.invoke(app, ["forget", str(photos), "--index", str(idx)]))
    filler.unlink()
    filler = _fill(small_disk, spare=160 << 10)  # room to open it, not for 300 more rows: SQLite or FAISS fills it
    _assert_one_line(runner.invoke(app, ["index", str(more), "--index", str(idx)]))

    filler.unlink()
    with clipsearch.open(idx) as store:  # consistent: it answers what it committed, vectors = images
        info = store.info()
        assert info["vectors"] == info["images"] >= 6
        assert len(store.search("a photo", k=500)) == info["images"]
    assert cli_json(runner, "index", more, "--index", idx)["scanned"] == 300
    info = cli_json(runner, "info", "--index", idx)
    assert info["images"] == info["vectors"] == 306
    cli(runner, "forget", photos, "--index", idx)
    assert cli_json(runner, "info", "--index", idx)["images"] == 300


def test_an_injected_enospc_is_one_line_and_the_store_stays(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where no tmpfs can be mounted: the FAISS write fails with ENOSPC; the catalog's commits stand."""
    runner = CliRunner()
    photos = _photos(tmp_path / "photos", 4)
    idx = tmp_path / "index"
    cli(runner, "index", photos, "--index", idx, "--model", MODEL)
    import clipsearch.vectors.store as vector_store

    def full(*_args, **_kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(vector_store, "atomic_write", full)
    _photos(photos, 3, start=50)
    _assert_one_line(runner.invoke(app, ["index", str(photos), "--index", str(idx)]))
    monkeypatch.undo()
    with clipsearch.open(idx) as store:
        assert len(store.search("a photo", k=100)) == store.info()["images"] == 7  # rebuilt from the catalog


def test_what_counts_as_a_full_disk() -> None:
    import sqlite3

    from sqlalchemy.exc import OperationalError

    assert is_disk_full(OSError(errno.ENOSPC, "No space left on device"))
    assert is_disk_full(OSError(errno.EDQUOT, "Disk quota exceeded"))
    assert is_disk_full(OperationalError("INSERT …", {}, sqlite3.OperationalError("database or disk is full")))
    assert is_disk_full(shutil.Error([("a", "b", "[Errno 28] No space left on device: 'b'")] * 1000))
    assert is_disk_full(RuntimeError("Error: 'ret == (n)' failed: write error in index.faiss: No space left on device"))
    assert not is_disk_full(OSError(errno.EACCES, "Permission denied"))
    assert not is_disk_full(ValueError("full of surprises"))
