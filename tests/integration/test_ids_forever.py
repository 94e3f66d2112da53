"""Ids are forever: a catalog id names one file for the store's whole life, through deletes, new files and
re-embeds, on SQLite and PostgreSQL; a re-embed works in place by id and keeps what the store knew (the images of
a vanished root, a forced index type, the run history, a rising vectors version).

The shipped tiny model at random init: only ids, paths and counts are compared, never relevance."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

from PIL import Image

import clipsearch
from clipsearch.store.manifest import CATALOG
from clipsearch.vectors.store import FAISS_FILE, saved_meta

MODEL = "clipsearch-tiny"


def _photos(folder: Path, n: int, start: int = 0) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(start, start + n):
        path = folder / f"{i:03d}.png"
        Image.new("RGB", (32 + i, 32), ((37 * i) % 256, (91 * i) % 256, (53 * i) % 256)).save(path)
        out.append(path)
    return out


def _ids(store: clipsearch.Store) -> dict[int, str]:
    """id → path of every image the store answers with."""
    return {h.id: h.path for h in store.search("a photo", k=1000)}


def _sql(store: Path, query: str) -> list[tuple]:
    con = sqlite3.connect(store / CATALOG)
    try:
        return con.execute(query).fetchall()
    finally:
        con.close()


def test_ids_are_never_reused_or_renumbered(tmp_path: Path, catalog_db: str | None) -> None:
    photos = tmp_path / "photos"
    files = _photos(photos, 8)
    store_path = tmp_path / "index"
    with clipsearch.open(store_path, model=MODEL, db=catalog_db) as store:
        store.add([photos])
        first = _ids(store)
        assert len(first) == 8
        by_path = {p: i for i, p in first.items()}
        newest, middle = max(first), sorted(first)[3]
        for gone in (first[newest], first[middle]):
            Path(gone).unlink()
        assert store.add([photos]).removed == 2
        _photos(photos, 2, start=20)  # two new files: new ids, never the deleted ones
        assert store.add([photos]).added == 2
        now = _ids(store)
        assert {i: p for i, p in now.items() if i in first} == {i: p for i, p in first.items() if i in now}
        fresh = [i for i in now if i not in first]
        assert len(fresh) == 2 and min(fresh) > newest
        if catalog_db is not None:
            return  # re-embedding a store whose catalog is in a database is refused (a clear error elsewhere)
        summary = store.reembed(MODEL)
        assert summary.encoded == 8
        assert _ids(store) == now  # every id names the same file after the re-embed
        assert {p: i for i, p in _ids(store).items() if p in by_path} == \
            {p: i for p, i in by_path.items() if Path(p).exists()}
    assert len(files) == 8


def test_a_reembed_keeps_a_vanished_roots_images_the_forced_type_the_runs_and_the_version(tmp_path: Path) -> None:
    here, away = tmp_path / "here", tmp_path / "drive"
    _photos(here, 5)
    _photos(away, 4, start=10)
    store_path = tmp_path / "index"
    with clipsearch.open(store_path, model=MODEL) as store:
        store.add([here])
        store.add([away])
        before = _ids(store)
        store.rebuild_vectors("hnsw")
        runs = _sql(store_path, "SELECT count(*) FROM runs")[0][0]
        version = int(_sql(store_path, "SELECT value FROM meta WHERE key = 'vectors_version'")[0][0])
        away_ids = {i for i, p in before.items() if p.startswith(str(away))}
        assert len(before) == 9 and len(away_ids) == 4

        unmounted = tmp_path / "unmounted"
        away.rename(unmounted)  # the drive is unplugged
        summary = store.reembed(MODEL)
        assert (summary.encoded, summary.waiting, summary.vanished_roots) == (5, 4, [str(away)])
        info = store.info()
        assert info["index_type"] == "hnsw" and saved_meta(store_path / FAISS_FILE)["forced"] is True
        assert info["last_reembed"]["waiting"] == 4 and info["last_reembed"]["encoded"] == 5
        assert info["vanished_roots"] == [str(away)]
        assert _sql(store_path, "SELECT count(*) FROM runs")[0][0] == runs + 1  # the history is kept
        assert int(_sql(store_path, "SELECT value FROM meta WHERE key = 'vectors_version'")[0][0]) > version
        rows = dict(_sql(store_path, "SELECT id, path FROM images"))
        assert {i: rows[i] for i in away_ids} == {i: before[i] for i in away_ids}  # kept, by id
        listed = ",".join(map(str, away_ids))
        assert not _sql(store_path, f"SELECT image_id FROM embeddings WHERE image_id IN ({listed})")
        assert set(_ids(store)) == set(before) - away_ids  # hidden while the drive is away

        unmounted.rename(away)  # plugged in again: the next run re-encodes its images, same ids
        back = store.add([away])
        assert (back.encoded, back.added, back.removed) == (4, 0, 0)
        assert _ids(store) == before
        assert store.info()["index_type"] == "hnsw"


def test_a_reembed_keeps_every_id_of_a_store_written_before_it(tmp_path: Path) -> None:
    """The previous release's store (tests/fixtures/store-0.1.0): a re-embed keeps its ids, rows and runs."""
    from clipsearch.media import synthetic
    from tests.integration.test_previous_release_store import FIXTURE, PHOTOS

    if not PHOTOS.is_dir():
        synthetic.make_dataset(PHOTOS, per_class=1, seed=3)
    store_path = tmp_path / "index"
    shutil.copytree(FIXTURE, store_path)
    rows = _sql(store_path, "SELECT id, path, digest FROM images ORDER BY id")
    with clipsearch.open(store_path) as store:
        before = _ids(store)
        summary = store.reembed(store.model_spec.text)
        assert summary.encoded == 12 and _ids(store) == before
        assert store.info()["last_reembed"]["encoded"] == 12
    assert _sql(store_path, "SELECT id, path, digest FROM images ORDER BY id") == rows
    assert _sql(store_path, "SELECT count(*) FROM embeddings") == [(12,)]
    assert _sql(store_path, "SELECT count(*) FROM runs") == [(2,)]
    assert json.loads((store_path / "manifest.json").read_text())["model"]["precision"] == "int8"


def test_the_cli_says_what_a_reembed_kept_for_a_vanished_folder(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from tests.conftest import cli, cli_json

    runner = CliRunner()
    here, away = tmp_path / "here", tmp_path / "drive"
    _photos(here, 3)
    _photos(away, 2, start=10)
    idx = tmp_path / "index"
    cli(runner, "index", here, away, "--index", idx, "--model", MODEL)
    away.rename(tmp_path / "unplugged")
    result = cli_json(runner, "reindex", "--index", idx)
    assert (result["encoded"], result["waiting"], result["vanished_roots"]) == (3, 2, [str(away)])
    plain = cli(runner, "reindex", "--index", idx).stdout
    assert "2 images of vanished folders kept" in plain.replace("\n", " ")
    info = cli_json(runner, "info", "--index", idx)
    assert info["last_reembed"]["waiting"] == 2 and info["last_reembed"]["to"] == info["model"]["spec"]


def test_a_reembed_keeps_the_id_of_every_video_frame(tmp_path: Path, shapes_source: Path) -> None:
    from tests.e2e.test_video import make_video, scene

    folder = tmp_path / "media"
    _photos(folder, 3)
    make_video(folder / "walk.mp4", [scene(shapes_source, "red circle"), scene(shapes_source, "blue square")])
    with clipsearch.open(tmp_path / "index", model=MODEL) as store:
        store.add([folder], frame_interval=1.0)
        frames = {h.id: (h.path, h.timestamp) for h in store.search("a photo", k=100, all_frames=True)}
        assert sum(t is not None for _p, t in frames.values()) >= 4 and len(frames) >= 7
        summary = store.reembed(MODEL)
        assert summary.updated == 4 and summary.added == 0  # three photos and one video, each in its rows
        assert {h.id: (h.path, h.timestamp) for h in store.search("a photo", k=100, all_frames=True)} == frames
