"""Encoding on Ray: a local Ray cluster (2 CPUs, started once for the module) encodes a generated collection
into a store equal to a local run's, and a driver killed after its first committed chunk leaves a store that
the next run completes by encoding only what is missing. Deselect with `-m "not ray"`."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import clipsearch
from clipsearch.errors import ClipsearchError
from tests.conftest import INDEX_PER_CLASS, cli_json

pytestmark = pytest.mark.ray
TOTAL = INDEX_PER_CLASS * 12
MODEL = "clipsearch-tiny"  # the shipped tiny config, seeded random weights: exports in seconds, no training


@pytest.fixture(scope="module")
def ray_cluster():
    """Ray on this machine with 2 CPUs, shared by the module's tests (a start costs seconds and ~1 GB)."""
    import ray

    from clipsearch.indexing.ray_pool import short_temp_dir

    extra = {"_temp_dir": short_temp_dir()} if short_temp_dir() else {}  # a long TMPDIR: sockets must fit
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False, **extra)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


def test_missing_ray_or_unreachable_cluster_is_a_clear_error(tmp_path: Path, photos: Path, monkeypatch) -> None:
    """Before the module's cluster starts (no Ray in this process): a wrong address fails in seconds, not after
    Ray's minutes of retries, and without Ray installed the error says how to install it; the store stays usable."""
    import ray

    assert not ray.is_initialized()
    with clipsearch.open(tmp_path / "index", model=MODEL) as store:
        assert store.add([photos]).added == TOTAL  # the model is loaded: what follows times Ray alone
        new = photos / "new.png"
        new.write_bytes(next(photos.glob("*.png")).read_bytes() + b"\0")
        t = time.perf_counter()
        with pytest.raises(ClipsearchError) as refused:
            store.add([photos], ray_address="127.0.0.1:9")  # the discard port: nothing listens
        assert refused.value.param == "ray_address" and "127.0.0.1:9" in refused.value.message
        assert time.perf_counter() - t < 60  # Ray alone retries for minutes
        monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
        with pytest.raises(ClipsearchError) as missing:
            store.add([photos], ray_address="local")
        assert missing.value.param == "ray_address" and "clipsearch[ray]" in (missing.value.hint or "")
    with clipsearch.open(tmp_path / "index") as store:
        summary = store.add([photos])
    assert (summary.unchanged, summary.added) == (TOTAL, 1)


def _contents(store_path: Path) -> dict[str, tuple]:
    """path → (record facts less the id, embedding), and the ids by path."""
    with clipsearch.open(store_path) as store:
        _version, ids, vectors = store.catalog.all_embeddings(store.dim)
        records = store.catalog.images([int(i) for i in ids])
        info = store.info()
        assert info["images"] == info["vectors"] == len(ids)
        assert store.vector_index().ntotal == len(ids)
        return {records[int(i)].path: (int(i), records[int(i)], v) for i, v in zip(ids, vectors, strict=False)}


def test_ray_store_equals_local_store(tmp_path: Path, photos: Path, ray_cluster) -> None:
    (photos / "zz_broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")  # last in scan order
    with clipsearch.open(tmp_path / "local", model=MODEL) as store:
        local = store.add([photos])
        local_failures = store.failures()
    with clipsearch.open(tmp_path / "ray", model=MODEL) as store:
        remote = store.add([photos], ray_address="local", commit_every=16)  # several chunks
        remote_failures = store.failures()
        assert store.manifest["model"]["precision"] == "int8"  # the CPU default: per-batch scales, batches matter

    assert remote.encoded == local.encoded == TOTAL
    assert (remote.added, remote.failed) == (local.added, local.failed) == (TOTAL, 1)
    assert [(f["path"], f["error"]) for f in remote_failures] == [(f["path"], f["error"]) for f in local_failures]
    a, b = _contents(tmp_path / "local"), _contents(tmp_path / "ray")
    assert sorted(a) == sorted(b) and len(a) == TOTAL
    for path, (local_id, local_record, local_vector) in a.items():
        ray_id, ray_record, ray_vector = b[path]
        assert ray_id == local_id and ray_record == local_record  # same ids, sizes, dates, digests, pixels
        np.testing.assert_allclose(ray_vector, local_vector, atol=1e-6, rtol=0)
    hashes = []
    for name in ("local", "ray"):  # the actors send the perceptual hashes of what they decoded
        with clipsearch.open(tmp_path / name, create=False) as store:
            ids, words = store.catalog.picture_hashes()
            hashes.append((ids.tolist(), words.tolist()))
    assert hashes[0] == hashes[1] and len(hashes[0][0]) == TOTAL  # same ids (checked above), same hashes

    with clipsearch.open(tmp_path / "ray") as store:  # an unchanged collection: nothing goes to Ray
        again = store.add([photos], ray_address="local")
    assert (again.encoded, again.unchanged) == (0, TOTAL + 1)


def test_killed_ray_driver_resumes_with_only_what_is_missing(tmp_path: Path, photos: Path, ray_cluster,
                                                              runner) -> None:
    """SIGKILL a `clipsearch index --ray-address` driver once it has committed a chunk; the next run (also on
    Ray) encodes exactly the files that were not committed."""
    big = tmp_path / "big"
    for i in range(6):  # copies of the collection with different contents (digests): 360 files
        dest = big / f"copy{i}"
        shutil.copytree(photos, dest)
        for p in dest.iterdir():
            with open(p, "ab") as f:
                f.write(bytes([i]))  # PNG readers ignore trailing bytes
    total = 6 * TOTAL
    idx = tmp_path / "index"
    cmd = [sys.executable, "-m", "clipsearch", "index", str(big), "--index", str(idx), "--model", MODEL,
           "--ray-address", ray_cluster, "--batch-size", "1", "--json"]
    log = open(tmp_path / "driver.log", "wb")
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log,
                            env={**os.environ, "CLIPSEARCH_COMMIT_EVERY": "4"})
    db, committed, deadline = idx / "catalog.sqlite", 0, time.time() + 300
    while time.time() < deadline and proc.poll() is None and not committed:
        if db.exists():
            try:
                with sqlite3.connect(db) as con:
                    committed = con.execute("select count(*) from embeddings").fetchone()[0]
            except sqlite3.Error:
                pass
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    log.close()
    assert committed and proc.returncode == -signal.SIGKILL, (tmp_path / "driver.log").read_text()  # killed mid-run

    before = _contents(idx)
    assert 0 < len(before) < total
    with clipsearch.open(idx) as store:
        assert store.info()["last_run"]["status"] == "interrupted"
        summary = store.add([big], ray_address="local")
    assert (summary.unchanged, summary.added) == (len(before), total - len(before))
    assert summary.encoded == total - len(before)  # nothing committed before the kill is encoded again
    after = _contents(idx)
    assert len(after) == total
    assert all(after[p][0] == before[p][0] for p in before)  # committed rows keep their ids
    assert cli_json(runner, "info", "--index", idx)["last_run"]["status"] == "done"


def test_a_local_ray_gets_socket_paths_that_fit_under_a_long_tmpdir(monkeypatch, tmp_path: Path) -> None:
    """Ray's Unix sockets live ~75 bytes below its temp dir and may not pass 107 bytes: under a long TMPDIR a
    local start gets a short temp dir instead; a short TMPDIR is left to Ray."""
    import tempfile

    from clipsearch.indexing.ray_pool import short_temp_dir

    monkeypatch.delenv("RAY_TMPDIR", raising=False)
    monkeypatch.setattr(tempfile, "tempdir", "/tmp/a/rather/long/path/for/temporary/files")
    short = short_temp_dir()
    assert (short is not None
            and len(short) + len("/session_2026-12-02_00-35-45_179511_97431/sockets/plasma_store") < 107)
    monkeypatch.setattr(tempfile, "tempdir", "/tmp")
    assert short_temp_dir() is None
