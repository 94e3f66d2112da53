"""A read-only store reads its catalog's WAL: a store killed mid-run, or a live one on read-only media, shows every
commit, and a reader never serves what the catalog no longer holds."""

from __future__ import annotations

import gc
import os
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest

import clipsearch
from clipsearch.catalog.sqlite_uri import file_uri

MODEL = "clipsearch-tiny"


def _count(db: Path, mode: str) -> int:
    conn = sqlite3.connect(file_uri(db, mode), uri=True)
    try:
        return conn.execute("SELECT count(*) FROM images").fetchone()[0]
    finally:
        conn.close()


@pytest.fixture()
def killed_store(tmp_path: Path, photos: Path) -> tuple[Path, int]:
    """A copy of a store taken while its catalog's last commits were still in the WAL (as a kill -9 leaves it)."""
    live = tmp_path / "live"
    more = tmp_path / "more"
    more.mkdir()
    for i, src in enumerate(sorted(photos.glob("*.png"))[:10]):
        (more / f"extra{i}.png").write_bytes(src.read_bytes() + b"\0" * (i + 1))  # new content, new digest
    with clipsearch.open(live, model=MODEL) as store:
        store.add([photos])
    holder = sqlite3.connect(live / "catalog.sqlite")  # an open reader: the WAL is not folded back on close
    holder.execute("PRAGMA wal_autocheckpoint=0")
    holder.execute("SELECT count(*) FROM images").fetchone()
    try:
        with clipsearch.open(live, create=False) as store:
            store.add([more])
        copy = tmp_path / "backup" / "index"
        shutil.copytree(live, copy)
    finally:
        holder.close()
    total = 70
    assert _count(copy / "catalog.sqlite", "immutable=1") < total  # the WAL holds commits the main file lacks
    return copy, total


def test_a_killed_store_read_only_shows_its_wal(killed_store: tuple[Path, int]) -> None:
    copy, total = killed_store
    with clipsearch.open(copy, create=False, readonly=True) as store:
        info = store.info()
        assert info["images"] == total
        assert len(store.search("a red circle", k=100)) == total


def test_a_killed_store_on_a_read_only_mount_shows_its_wal(killed_store: tuple[Path, int], tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("bind mounts need root; test_a_killed_store_read_only_shows_its_wal covers the open")
    copy, total = killed_store
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    subprocess.run(["mount", "--bind", str(copy.parent), str(mnt)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", str(mnt)], check=True)
        with clipsearch.open(mnt / "index", create=False) as store:
            assert store.readonly
            assert store.info()["images"] == total
            assert len(store.search("a red circle", k=100)) == total
        del store
    finally:
        gc.collect()  # the memory-mapped FAISS file goes with the store
        subprocess.run(["umount", str(mnt)], check=True)


def test_a_read_only_reader_of_a_live_store_never_serves_forgotten_images(tmp_path: Path, photos: Path) -> None:
    live = tmp_path / "live"
    other = tmp_path / "other"
    other.mkdir()
    for i, src in enumerate(sorted(photos.glob("*.png"))[:5]):
        (other / f"o{i}.png").write_bytes(src.read_bytes() + b"\1" * (i + 1))
    with clipsearch.open(live, model=MODEL) as writer:
        writer.add([photos])
        writer.add([other])
        with clipsearch.open(live, create=False, readonly=True) as reader:
            assert len(reader.search("a red circle", k=100)) == 65
            writer.forget(other)
            hits = reader.search("a red circle", k=100)
            assert len(hits) == 60 and not any(h.path.startswith(str(other)) for h in hits)
