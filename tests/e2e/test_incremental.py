"""Incremental indexing through the library API: unchanged files cost a stat, moves keep embeddings.

Every test runs twice: with the catalog in SQLite (the store folder) and in PostgreSQL (`catalog_db`)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

import clipsearch
from tests.conftest import INDEX_PER_CLASS, cli_json, db_args

TOTAL = INDEX_PER_CLASS * 12


class CountingEncoder:
    """Wraps the store's encoder to count the images it is asked to encode."""

    def __init__(self, store) -> None:
        self.encoder = store.encoder
        self.original = self.encoder.encode_images
        self.images = 0
        self.encoder.encode_images = self._encode

    def _encode(self, batch):
        self.images += len(batch)
        return self.original(batch)


@pytest.fixture()
def store(tmp_path: Path, trained_model: Path, catalog_db: str | None):
    with clipsearch.open(tmp_path / "index", model=str(trained_model), db=catalog_db) as s:
        yield s


def test_second_run_encodes_nothing(store, photos: Path) -> None:
    counter = CountingEncoder(store)
    first = store.add([photos])
    assert (first.added, first.failed, counter.images) == (TOTAL, 0, TOTAL)
    second = store.add([photos])
    assert counter.images == TOTAL  # nothing more was encoded
    assert (second.unchanged, second.added, second.updated, second.encoded) == (TOTAL, 0, 0, 0)


def test_changed_file_is_reencoded_alone(store, photos: Path) -> None:
    store.add([photos])
    counter = CountingEncoder(store)
    target = photos / "red_circle_000.png"
    shutil.copyfile(photos / "blue_square_000.png", target)  # new content under the old name
    os.utime(target, ns=(1, 1))
    summary = store.add([photos])
    assert (summary.updated, summary.added, counter.images) == (1, 0, 1)
    assert store.info()["images"] == TOTAL


def test_touched_but_identical_file_keeps_its_embedding(store, photos: Path) -> None:
    store.add([photos])
    counter = CountingEncoder(store)
    os.utime(photos / "red_circle_001.png", ns=(10**18, 10**18))
    summary = store.add([photos])
    assert counter.images == 0 and summary.updated == 0 and summary.unchanged == TOTAL
    assert store.add([photos]).unchanged == TOTAL  # the new mtime was recorded: no digest next time


def test_deleted_file_leaves_the_index(store, photos: Path) -> None:
    store.add([photos])
    (photos / "green_square_002.png").unlink()
    summary = store.add([photos])
    assert summary.removed == 1
    assert store.info()["images"] == store.info()["vectors"] == TOTAL - 1
    hits = store.search("a green square", k=TOTAL)
    assert all(Path(h.path).name != "green_square_002.png" for h in hits)


def test_moved_file_keeps_embedding_without_encoding(store, photos: Path, runner) -> None:
    store.add([photos])
    (photos / "sub").mkdir()
    old, new = photos / "yellow_triangle_003.png", photos / "sub" / "renamed.png"
    before = store.search(image=str(old), k=3)
    counter = CountingEncoder(store)
    os.rename(old, new)
    summary = store.add([photos])
    assert (summary.moved, summary.added, summary.removed, counter.images) == (1, 0, 0, 0)
    assert store.info()["images"] == TOTAL
    after = cli_json(runner, "query", "--image", new, "-k", "3", "--index", store.path)
    assert [h["path"] for h in after] == [h.path for h in before]  # same embedding, same neighbours
    under = cli_json(runner, "query", "a yellow triangle", "--under", photos / "sub", "--index", store.path)
    assert [h["path"] for h in under] == [str(new)]


def test_other_roots_are_untouched(store, photos: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    shutil.copyfile(photos / "red_square_000.png", other / "x.png")
    store.add([photos])
    store.add([other])
    assert store.info()["images"] == TOTAL + 1  # indexing `other` does not remove `photos`
    single = store.add([photos / "red_square_001.png"])
    assert single.unchanged == 1 and single.removed == 0


def test_cli_second_run_reports_nothing_encoded(runner, photos: Path, trained_model: Path, tmp_path: Path,
                                                catalog_db: str | None) -> None:
    idx = tmp_path / "index"
    first = cli_json(runner, "index", photos, "--index", idx, "--model", trained_model, *db_args(catalog_db))
    assert first["added"] == TOTAL and first["encoded"] == TOTAL
    second = cli_json(runner, "index", photos, "--index", idx)
    assert second["encoded"] == 0 and second["unchanged"] == TOTAL


def test_lost_faiss_file_is_rebuilt_from_embeddings(store, photos: Path) -> None:
    store.add([photos])
    before = [h.path for h in store.search("a red square", k=5)]
    (store.path / "vectors.faiss").unlink()
    counter = CountingEncoder(store)
    summary = store.add([photos])  # nothing changed on disk: no image is decoded or encoded
    assert summary.unchanged == TOTAL and counter.images == 0
    assert (store.path / "vectors.faiss").exists()
    with clipsearch.open(store.path, create=False) as fresh:
        assert [h.path for h in fresh.search("a red square", k=5)] == before
