"""What a store folder may hold and how its files are removed: only names a store makes, never anything else."""

from __future__ import annotations

import os
from pathlib import Path

from clipsearch.fsutil import swap_dirs
from clipsearch.store.folder import STORE_DIRS, STORE_FILES, is_store_entry, remove_store_files


def test_store_names_and_transient_files_are_ours_and_nothing_else() -> None:
    for name in [*STORE_FILES, *STORE_DIRS, ".manifest.json.123.456.tmp", ".vectors.faiss.1.2.tmp",
                 "text_encoder.tmp42", "text_encoder.old42"]:
        assert is_store_entry(name), name
    for name in ["photos", "thesis.txt", ".notes", "catalog.sqlite.bak", ".thesis.txt.1.2.tmp", "text_encoder.tmp",
                 "vectors.faiss~", "manifest.json.orig", "thumbnails2"]:
        assert not is_store_entry(name), name


def test_remove_store_files_deletes_only_store_names(tmp_path: Path) -> None:
    folder = tmp_path / "s"
    (folder / "thumbnails").mkdir(parents=True)
    (folder / "thumbnails" / "ab.webp").write_bytes(b"x")
    for name in ("manifest.json", "catalog.sqlite", "catalog.sqlite-wal", "lock", ".vectors.faiss.1.2.tmp"):
        (folder / name).write_text("store")
    (folder / "holiday.jpg").write_bytes(b"jpeg")
    assert remove_store_files(folder) == ["holiday.jpg"]
    assert sorted(os.listdir(folder)) == ["holiday.jpg"]
    (folder / "holiday.jpg").unlink()
    (folder / "lock").write_text("")
    assert remove_store_files(folder) == [] and not folder.exists()  # an emptied store folder goes too


def test_swap_dirs_hands_the_old_folder_to_discard(tmp_path: Path) -> None:
    new, target = tmp_path / ".s.reembed", tmp_path / "s"
    new.mkdir()
    target.mkdir()
    (new / "manifest.json").write_text("new")
    (target / "manifest.json").write_text("old")
    (target / "keep.txt").write_text("somebody's")
    swap_dirs(new, target, discard=remove_store_files)
    assert (target / "manifest.json").read_text() == "new"
    assert (new / "keep.txt").read_text() == "somebody's" and not (new / "manifest.json").exists()
