"""An index run stopped part-way leaves a store that opens, answers and resumes without redoing work, with the
catalog in SQLite and in PostgreSQL (`catalog_db`)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import clipsearch
from tests.conftest import INDEX_PER_CLASS, cli_json, count_rows

TOTAL = INDEX_PER_CLASS * 12


def _assert_consistent(store_path: Path) -> dict:
    with clipsearch.open(store_path, create=False) as store:
        info = store.info()
        assert info["images"] == info["vectors"]  # every row that claims an embedding has one
        assert store.vector_index().ntotal == info["vectors"]
        if info["images"]:
            hits = store.search("a red circle", k=5)
            assert hits and all(Path(h.path).exists() for h in hits)
        return info


@pytest.mark.parametrize("error", [KeyboardInterrupt, RuntimeError])
def test_interrupted_run_is_consistent_and_resumes(tmp_path: Path, photos: Path, trained_model: Path, error,
                                                   catalog_db: str | None) -> None:
    idx = tmp_path / "index"
    store = clipsearch.open(idx, model=str(trained_model), db=catalog_db)
    encoder = store.encoder
    original = encoder.encode_images
    calls = {"n": 0}

    def failing(batch):
        calls["n"] += 1
        if calls["n"] == 5:
            raise error("injected failure")
        return original(batch)

    encoder.encode_images = failing
    with pytest.raises(error):
        store.add([photos], batch_size=4, commit_every=8)
    store.close()

    info = _assert_consistent(idx)
    committed = info["images"]
    assert 0 < committed < TOTAL
    assert info["last_run"]["status"] in ("interrupted", "failed")

    with clipsearch.open(idx) as resumed:
        encoded = {"n": 0}
        enc = resumed.encoder
        orig = enc.encode_images

        def counting(batch):
            encoded["n"] += len(batch)
            return orig(batch)

        enc.encode_images = counting
        summary = resumed.add([photos])
    assert summary.unchanged == committed and summary.added == TOTAL - committed
    assert encoded["n"] == TOTAL - committed  # nothing committed is redone
    assert _assert_consistent(idx)["images"] == TOTAL


def test_killed_process_leaves_a_usable_store(tmp_path: Path, photos: Path, trained_model: Path, runner,
                                             catalog_db: str | None) -> None:
    """SIGKILL a real `clipsearch index` as soon as it has committed something."""
    import shutil

    big = tmp_path / "big"
    for i in range(8):  # 8 copies of the collection, re-saved so contents (digests) differ
        dest = big / f"copy{i}"
        shutil.copytree(photos, dest)
        for p in dest.iterdir():
            with open(p, "ab") as f:
                f.write(bytes([i]))  # PNG readers ignore trailing bytes
    idx = tmp_path / "index"
    cmd = [sys.executable, "-m", "clipsearch", "index", str(big), "--index", str(idx), "--model", str(trained_model),
           "--batch-size", "2", "--json", *(["--db", catalog_db] if catalog_db else [])]
    env = {**os.environ, "CLIPSEARCH_COMMIT_EVERY": "4"}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.time() + 120
    killed = False
    while time.time() < deadline and proc.poll() is None:
        if count_rows(idx, catalog_db, "embeddings") > 0:
            proc.send_signal(signal.SIGKILL)
            killed = True
            break
        time.sleep(0.05)
    proc.wait(timeout=30)
    if not killed:
        pytest.skip("the run finished before it could be killed")
    info = _assert_consistent(idx)
    assert info["images"] <= 8 * TOTAL  # usually a fraction; all of it if the kill came after the last commit
    assert info["last_run"]["status"] == "interrupted"  # killed: no process holds the writer lock any more
    summary = cli_json(runner, "index", big, "--index", idx)
    assert summary["unchanged"] == info["images"] and summary["added"] == 8 * TOTAL - info["images"]
    assert _assert_consistent(idx)["images"] == 8 * TOTAL
    assert cli_json(runner, "info", "--index", idx)["last_run"]["status"] == "done"
