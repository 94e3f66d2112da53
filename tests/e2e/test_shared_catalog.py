"""A catalog in a database server (PostgreSQL, started by the `pg_server` fixture): the CLI end to end from the
store folder, what the manifest records, one clear error per misconfiguration, and writers on several folders
at once (two processes) beside the SQLite default, whose single writer refuses the second."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import clipsearch
from clipsearch import ClipsearchError, StoreLockedError
from clipsearch.catalog.database import public_url
from tests.conftest import INDEX_PER_CLASS, cli, cli_json, db_args, new_database

TOTAL = INDEX_PER_CLASS * 12
MODEL = "clipsearch-tiny"  # the shipped config, random init: these tests check counts, locks and paths, not relevance


def _with_password(url: str, password: str) -> str:
    """The test server trusts local logins, so any password works: enough to see that none is written down."""
    return url.replace("postgres:@", f"postgres:{password}@").replace("postgres@", f"postgres:{password}@", 1)


def test_cli_index_then_query_from_the_store_folder(runner, pg_server, photos: Path,
                                                    tmp_path: Path) -> None:
    url = _with_password(new_database(pg_server), "s3cret-word")
    idx = tmp_path / "index"
    first = cli_json(runner, "index", photos, "--index", idx, "--model", MODEL, "--db", url)
    assert first["added"] == TOTAL
    manifest = (idx / "manifest.json").read_text()
    assert "s3cret-word" not in manifest  # the password stays in the environment, never in the folder
    assert not (idx / "catalog.sqlite").exists()
    recorded = json.loads(manifest)["catalog"]["url"]
    assert recorded.startswith("postgresql+psycopg://postgres@/catalog_")

    env = {k: v for k, v in os.environ.items() if k != "CLIPSEARCH_DB"}
    done = subprocess.run([sys.executable, "-m", "clipsearch", "query", "a red circle", "-k", "5", "--json",
                           "--index", str(idx)], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    hits = json.loads(done.stdout)
    assert len(hits) == 5 and all(Path(h["path"]).parent == photos for h in hits)
    info = cli_json(runner, "info", "--index", idx)
    assert info["catalog"] == recorded and info["images"] == info["vectors"] == TOTAL
    assert info["last_run"]["status"] == "done"
    again = cli_json(runner, "index", photos, "--index", idx)  # no --db: the folder knows its catalog
    assert again["unchanged"] == TOTAL and again["encoded"] == 0


def test_clipsearch_db_names_new_stores_catalog_only(pg_server, photos: Path, tmp_path: Path,
                                                     monkeypatch) -> None:
    sqlite_store = tmp_path / "old"
    with clipsearch.open(sqlite_store, model=MODEL) as s:
        s.add([photos / "red_circle_000.png"])
    url = new_database(pg_server)
    monkeypatch.setenv("CLIPSEARCH_DB", url)
    with clipsearch.open(sqlite_store) as s:  # an existing SQLite store keeps its catalog
        assert s.info()["catalog"] == "sqlite" and s.add([photos / "red_circle_001.png"]).added == 1
    with clipsearch.open(tmp_path / "new", model=MODEL) as s:
        s.add([photos / "red_circle_000.png"])
        assert s.info()["catalog"] == public_url(url)
    with pytest.raises(ClipsearchError, match="keeps its catalog in its folder") as caught:
        clipsearch.open(sqlite_store, db=url)
    assert caught.value.param == "db"


@pytest.mark.parametrize("url, message", [
    ("mysql://u@h/db", "SQLite or PostgreSQL"),
    ("postgresql+psycopg://u@h", "names no database"),
    ("not a url", "not a database URL"),
    ("postgresql+pg8000://u@h/db", "no database driver"),
])
def test_bad_database_urls_are_one_clear_error(runner, photos: Path, tmp_path: Path, url: str, message: str) -> None:
    result = cli(runner, "index", photos, "--index", tmp_path / "index", "--model", "clipsearch-tiny", "--db", url,
                 ok=False)
    assert result.exit_code == 1 and message in result.stderr and "Traceback" not in result.stderr
    assert "--db" in result.stderr or "hint" in result.stderr
    assert not (tmp_path / "index").exists()


def test_unreachable_database_is_one_clear_error(runner, photos: Path, tmp_path: Path) -> None:
    result = cli(runner, "index", photos, "--index", tmp_path / "index", "--model", "clipsearch-tiny",
                 "--db", "postgresql+psycopg://nobody:pw@127.0.0.1:9/photos", ok=False)
    assert result.exit_code == 1 and "cannot reach the catalog database" in result.stderr
    assert "pw@" not in result.stderr and "Traceback" not in result.stderr


def test_a_database_holds_one_store(pg_server, photos: Path, tmp_path: Path) -> None:
    url = new_database(pg_server)
    with clipsearch.open(tmp_path / "one", model=MODEL, db=url) as s:
        s.add([photos / "red_circle_000.png"])
    with clipsearch.open(tmp_path / "two", model=MODEL, db=url) as s:
        with pytest.raises(ClipsearchError, match="already holds the catalog of another store") as caught:
            s.add([photos / "red_circle_001.png"])
    assert str(tmp_path / "one") in caught.value.message
    with clipsearch.open(tmp_path / "one") as s:  # the first store is untouched
        assert s.info()["images"] == 1


def _two_folders(photos: Path, tmp_path: Path) -> tuple[Path, Path]:
    a, b = tmp_path / "a", tmp_path / "b"
    for i, dest in enumerate((a, b)):
        shutil.copytree(photos, dest)
        for p in dest.iterdir():
            with open(p, "ab") as f:
                f.write(bytes([i]))  # other content: no moves between the folders
    return a, b


def test_same_folder_is_locked_other_folders_only_on_a_shared_catalog(photos: Path,
                                                                      tmp_path: Path, runner,
                                                                      catalog_db: str | None) -> None:
    a, b = _two_folders(photos, tmp_path)
    idx = tmp_path / "index"
    cli_json(runner, "index", a / "red_circle_000.png", "--index", idx, "--model", MODEL,
             *db_args(catalog_db))
    with clipsearch.open(idx) as holder, holder.writer_lock([str(a)]):
        same = cli(runner, "index", a, "--index", idx, ok=False)
        assert same.exit_code == 1 and "being written by" in same.stderr
        other = cli(runner, "index", b, "--index", idx, "--json", ok=False)
        if catalog_db:  # separate folders: both writers go ahead
            assert other.exit_code == 0 and json.loads(other.stdout)["added"] == TOTAL
        else:  # SQLite: one writer per store
            assert other.exit_code == 1 and "being written by" in other.stderr
        nested = cli(runner, "index", a / "red_circle_000.png", "--index", idx, ok=False)
        assert nested.exit_code == 1 and "being written by" in nested.stderr


def test_two_writers_on_two_folders_at_once(photos: Path, tmp_path: Path, runner,
                                            catalog_db: str | None) -> None:
    """Two `clipsearch index` processes, one per folder, started together on one store with small commits: on
    PostgreSQL both finish and the store holds both folders, consistent; on SQLite a writer that found the store
    busy said so and its rerun completes it."""
    a, b = _two_folders(photos, tmp_path)
    idx = tmp_path / "index"
    cli_json(runner, "index", a / "red_circle_000.png", "--index", idx, "--model", MODEL,
             *db_args(catalog_db))
    env = {**os.environ, "CLIPSEARCH_COMMIT_EVERY": "4"}
    procs = [subprocess.Popen([sys.executable, "-m", "clipsearch", "index", str(folder), "--index", str(idx),
                               "--batch-size", "4", "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=env) for folder in (a, b)]
    outcomes = [(p.wait(timeout=300), p.stdout.read(), p.stderr.read()) for p in procs]  # type: ignore[union-attr]
    for folder, (code, out, err) in zip((a, b), outcomes, strict=False):
        if code != 0:
            assert catalog_db is None and "being written by" in err, err
            cli_json(runner, "index", folder, "--index", idx)
        else:
            assert json.loads(out)["scanned"] == TOTAL
    with clipsearch.open(idx) as s:
        info = s.info()
        assert info["images"] == info["vectors"] == 2 * TOTAL == s.vector_index().ntotal
        assert sorted(info["roots"]) == sorted([str(a), str(b)])
        assert info["last_run"]["status"] == "done"
        for folder in (a, b):
            hits = s.search("a red circle", k=3, under=[folder])
            assert len(hits) == 3 and all(Path(h.path).parent == folder for h in hits)
    for folder in (a, b):  # nothing left to do: every file was committed once, with its vector
        assert cli_json(runner, "index", folder, "--index", idx)["unchanged"] == TOTAL


def test_run_lock_shows_in_progress_runs_on_a_shared_catalog(pg_server, photos: Path,
                                                             tmp_path: Path) -> None:
    """A second writer starting does not mark the first one's run interrupted (it is still going)."""
    a, b = _two_folders(photos, tmp_path)
    idx = tmp_path / "index"
    with clipsearch.open(idx, model=MODEL, db=new_database(pg_server)) as s:
        s.add([a / "red_circle_000.png"])
    with clipsearch.open(idx) as first, first.writer_lock([str(a)]):
        running = first.catalog.begin_run()
        with clipsearch.open(idx) as second:
            second.add([b])
        with clipsearch.open(idx) as reader:
            assert reader.writer_active(running)
        assert _run_status(first, running) == "running"  # not marked interrupted by the second writer
        first.catalog.finish_run(running, "done", {}, [str(a)])
    with pytest.raises(StoreLockedError):
        with clipsearch.open(idx) as s, s.writer_lock(None):
            with clipsearch.open(idx) as other, other.writer_lock([str(b)]):
                pass


def _run_status(store, run_id: int) -> str:
    from sqlalchemy import text

    with store.catalog.engine.connect() as conn:
        return conn.execute(text("SELECT status FROM runs WHERE id = :id"), {"id": run_id}).scalar()
