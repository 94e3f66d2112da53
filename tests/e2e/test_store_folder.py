"""A store never adopts or deletes what is not its own.

Cases are generated at run time: every writing command against folders that are not stores (a user's folder with
photos and documents, a collection indexed into itself, a parent of the collection, a regular file), and against a
store that an earlier release let files into. Each must be refused before any write, and nothing outside the
store's own files may ever change.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest

import clipsearch
from clipsearch.errors import ClipsearchError
from clipsearch.store.folder import foreign_entries
from tests.conftest import cli, cli_json

MODEL = "clipsearch-tiny"  # random init: these tests check files, never relevance


def snapshot(folder: Path) -> dict[str, str]:
    """Every path under `folder` with a digest of its bytes ('dir' for folders)."""
    out: dict[str, str] = {}
    for root, dirs, files in os.walk(folder):
        for d in dirs:
            out[os.path.relpath(os.path.join(root, d), folder)] = "dir"
        for f in files:
            p = os.path.join(root, f)
            out[os.path.relpath(p, folder)] = hashlib.sha256(Path(p).read_bytes()).hexdigest()
    return out


def user_folder(root: Path, photos: Path) -> Path:
    """A folder a user might point --index at by mistake: photos in a subfolder, a document, a dot-file."""
    root.mkdir(parents=True, exist_ok=True)
    shutil.copytree(photos, root / "photos")
    (root / "thesis.txt").write_text("four years of work")
    (root / ".notes").write_text("private")
    return root


# --- generated cases: every writing command against folders that are not stores ----------------------------------
def _layouts(tmp_path: Path, photos: Path) -> list[tuple[str, Path, list[str]]]:
    """(name, --index folder, what to index) for each kind of folder that is not a store."""
    cases = []
    plain = user_folder(tmp_path / "documents", photos)
    cases.append(("a user's folder", plain, [str(photos)]))
    cases.append(("the collection itself", photos, [str(photos)]))  # index selfcol --index selfcol
    parent = user_folder(tmp_path / "parentstore", photos)
    cases.append(("the collection's parent", parent, [str(parent / "photos")]))
    a_file = tmp_path / "notes.txt"
    a_file.write_text("a file, not a folder")
    cases.append(("a regular file", a_file, [str(photos)]))
    return cases


WRITERS = {
    "index": lambda idx, targets: ["index", *targets, "--index", idx, "--model", MODEL],
    "index --reembed": lambda idx, targets: ["index", *targets, "--index", idx, "--model", MODEL, "--reembed"],
    "reindex": lambda idx, targets: ["reindex", "--index", idx],
    "reindex --vectors-only": lambda idx, targets: ["reindex", "--vectors-only", "--index", idx],
    "forget": lambda idx, targets: ["forget", targets[0], "--index", idx],
    "dupes": lambda idx, targets: ["dupes", "--index", idx],
}


def test_every_writing_command_refuses_a_folder_that_is_not_a_store(runner, tmp_path: Path, photos: Path) -> None:
    for layout, idx, targets in _layouts(tmp_path, photos):
        watched = idx if idx.is_dir() else idx.parent
        for command, argv in WRITERS.items():
            before = snapshot(tmp_path)
            result = cli(runner, *argv(idx, targets), ok=False)
            assert result.exit_code != 0, f"{command} on {layout} was accepted"
            message = result.stderr.lower()
            assert "not a clipsearch store" in message or "no index at" in message or "is a file" in message, \
                (command, layout, result.stderr)
            assert "traceback" not in message
            assert snapshot(tmp_path) == before, f"{command} on {layout} changed files"
        assert watched.exists()


def test_the_library_refuses_a_folder_that_is_not_a_store(tmp_path: Path, photos: Path) -> None:
    folder = user_folder(tmp_path / "docs", photos)
    before = snapshot(tmp_path)
    with pytest.raises(ClipsearchError, match="not a clipsearch store"):
        clipsearch.open(folder, model=MODEL)
    with pytest.raises(ClipsearchError, match="is a file"):
        clipsearch.open(folder / "thesis.txt", model=MODEL)
    assert snapshot(tmp_path) == before


def test_an_empty_folder_and_a_half_made_store_are_adopted(runner, tmp_path: Path, photos: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli_json(runner, "index", photos, "--index", empty, "--model", MODEL)["added"] == 60
    half = tmp_path / "half"  # a first run killed after the catalog appeared, before the manifest
    half.mkdir()
    (half / "lock").write_text("pid 1")
    shutil.copyfile(empty / "catalog.sqlite", half / "catalog.sqlite")
    assert foreign_entries(half) == []
    assert cli_json(runner, "index", photos, "--index", half, "--model", MODEL)["scanned"] == 60


def test_reembed_keeps_files_that_an_older_release_let_into_the_store(runner, tmp_path: Path, photos: Path) -> None:
    """Older releases adopted any folder: such a store answers and indexes, but a re-embed (which replaces the
    folder) is refused before any write, and its files stay where they are."""
    idx = tmp_path / "legacy"
    cli(runner, "index", photos, "--index", idx, "--model", MODEL)
    (idx / "thesis.txt").write_text("four years of work")
    shutil.copytree(photos, idx / "photos")
    for argv in (["reindex", "--index", idx], ["index", photos, "--index", idx, "--model", MODEL, "--reembed"]):
        before = snapshot(tmp_path)
        result = cli(runner, *argv, ok=False)
        assert result.exit_code != 0 and "not the store's" in result.stderr, result.stderr
        assert "thesis.txt" in result.stderr and snapshot(tmp_path) == before
    assert len(cli_json(runner, "query", "a red circle", "--index", idx, "-k", "3")) == 3


def test_reembed_swaps_in_the_new_store_and_removes_only_the_old_ones_files(runner, tmp_path: Path,
                                                                            photos: Path) -> None:
    idx = tmp_path / "index"
    cli(runner, "index", photos, "--index", idx, "--model", MODEL)
    outside = snapshot(photos)
    blocker = tmp_path / ".index.reembed"  # somebody's folder where the re-embed would build: refused, kept
    blocker.mkdir()
    (blocker / "mine.txt").write_text("not a store")
    result = cli(runner, "reindex", "--index", idx, ok=False)
    assert result.exit_code != 0 and "not a clipsearch store" in result.stderr
    assert (blocker / "mine.txt").read_text() == "not a store"
    shutil.rmtree(blocker)
    blocker.mkdir()
    (blocker / "catalog.sqlite").write_text("a half-built re-embed")  # a leftover of a killed re-embed: discarded
    assert cli_json(runner, "reindex", "--index", idx)["encoded"] == 60
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index", "photos"]
    assert foreign_entries(idx) == [] and snapshot(photos) == outside
    assert cli_json(runner, "info", "--index", idx)["images"] == 60
