"""An unchanged re-run (`indexing/unchanged.py`) answers and records what the pipeline would, without its imports;
anything with work to do still goes through the pipeline."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import clipsearch
from clipsearch.indexing import unchanged

MODEL = "clipsearch-tiny"  # random init: counts and rows only


@pytest.fixture()
def store(tmp_path: Path, shapes_source: Path) -> tuple[Path, Path]:
    photos = tmp_path / "photos"
    (photos / "sub").mkdir(parents=True)
    for i, src in enumerate(sorted(shapes_source.glob("*.png"))[:10]):
        shutil.copy(src, photos / ("sub" if i % 3 == 0 else "") / src.name)
    with clipsearch.open(tmp_path / "index", model=MODEL) as s:
        assert s.add([photos]).added == 10
    return photos, tmp_path / "index"


def _without_times(summary: dict) -> dict:
    return {k: v for k, v in summary.items() if k not in ("seconds", "model_seconds", "images_per_second")}


def test_the_quick_run_reports_and_records_what_the_pipeline_does(store: tuple[Path, Path], monkeypatch) -> None:
    photos, index = store
    calls: list[bool] = []
    real = unchanged.run_if_unchanged

    def spy(*args, **kwargs):  # type: ignore[no-untyped-def]
        result = real(*args, **kwargs)
        calls.append(result is not None)
        return result

    monkeypatch.setattr(unchanged, "run_if_unchanged", spy)
    with clipsearch.open(index, create=False) as s:
        quick = s.add([photos])
    with clipsearch.open(index, create=False) as s:
        _ = s.catalog  # the full catalog open: the pipeline runs
        full = s.add([photos])
        last_quick_then_full = [s.catalog.last_run()]
        roots = s.catalog.roots()
    assert calls == [True]  # the second run never asked
    assert _without_times(quick.to_dict()) == _without_times(full.to_dict())
    assert quick.unchanged == 10 and quick.scanned == 10 and quick.added == 0
    with clipsearch.open(index, create=False) as s:
        s.add([photos])
        runs = [s.catalog.last_run()]
        assert s.catalog.roots() != roots  # its root was marked indexed again, read back through SQLAlchemy
        assert s.catalog.roots()[0]["last_indexed_at"] > roots[0]["last_indexed_at"]
    for run in last_quick_then_full + runs:
        assert run is not None and run["status"] == "done" and run["unchanged"] == 10
        assert run["finished_at"] >= run["started_at"]


def test_a_quick_rerun_imports_neither_sqlalchemy_nor_faiss_nor_pil(store: tuple[Path, Path]) -> None:
    photos, index = store
    code = ("import json, sys, clipsearch\n"
            "with clipsearch.open(sys.argv[1], create=False) as s:\n"
            "    summary = s.add([sys.argv[2]])\n"
            "heavy = ('sqlalchemy', 'faiss', 'PIL', 'torch', 'onnxruntime', 'typer')\n"
            "print(json.dumps({'unchanged': summary.unchanged, 'loaded': [m for m in heavy if m in sys.modules]}))\n")
    out = subprocess.run([sys.executable, "-c", code, str(index), str(photos)], capture_output=True, text=True,
                         check=True, stdin=subprocess.DEVNULL).stdout
    assert json.loads(out) == {"unchanged": 10, "loaded": []}


def test_work_to_do_goes_through_the_pipeline(store: tuple[Path, Path], shapes_source: Path, tmp_path: Path) -> None:
    photos, index = store
    spare = sorted(shapes_source.glob("*.png"))[20:22]
    shutil.copy(spare[0], photos / "new.png")
    with clipsearch.open(index, create=False) as s:
        assert s.add([photos]).added == 1
    victim = sorted(photos.glob("*.png"))[0]
    victim.write_bytes(spare[1].read_bytes())
    with clipsearch.open(index, create=False) as s:
        assert s.add([photos]).updated == 1
    (photos / "new.png").unlink()
    with clipsearch.open(index, create=False) as s:
        assert s.add([photos]).removed == 1
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(spare[0], other / "o.png")
    with clipsearch.open(index, create=False) as s:
        assert s.add([other]).added == 1
    shutil.rmtree(other)
    with clipsearch.open(index, create=False) as s:  # a vanished root is marked, by the pipeline
        summary = s.add([photos])
        assert summary.vanished_roots == [str(other)] and summary.unchanged == 10
        assert [r["missing_since"] is not None for r in s.catalog.roots() if r["path"] == str(other)] == [True]


def test_a_stale_vector_file_is_brought_in_step(store: tuple[Path, Path]) -> None:
    photos, index = store
    sidecar = index / "vectors.json"
    meta = json.loads(sidecar.read_text())
    sidecar.write_text(json.dumps({**meta, "version": meta["version"] - 1}))  # as after a killed run
    with clipsearch.open(index, create=False) as s:
        assert s.add([photos]).unchanged == 10
    assert json.loads(sidecar.read_text())["version"] == meta["version"]  # saved again by the pipeline
    os.utime(sidecar)
    with clipsearch.open(index, create=False) as s:  # and now a quick run finds it in step
        assert s.add([photos]).unchanged == 10


def test_a_killed_run_is_found_interrupted(store: tuple[Path, Path]) -> None:
    photos, index = store
    from clipsearch.catalog.sqlite_runs import QuickRuns

    runs = QuickRuns(index / "catalog.sqlite")
    killed = runs.begin_run()  # a run that never finished
    runs.close()
    with clipsearch.open(index, create=False) as s:
        s.add([photos])
    import sqlite3

    with sqlite3.connect(index / "catalog.sqlite") as conn:
        status = conn.execute("SELECT status FROM runs WHERE id = ?", (killed,)).fetchone()[0]
    assert status == "interrupted"
