"""Hostile collections and damaged stores: names that try to drive the terminal, names that are not UTF-8,
links and aliases, vanished and unreadable folders, content changed behind an unchanged stat, damaged
manifests and FAISS files, read-only stores. Every case is generated here at run time, and every check is on
behaviour (exit codes, rows, results, exact bytes), never on wrapped terminal text."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

import clipsearch
import clipsearch.cli
from clipsearch.errors import ClipsearchError
from tests.conftest import assert_same_hits, cli, cli_json

ESC_NAME = "\x1b[2J\x1b]0;pwned\x07clear.png"  # clears the screen and retitles the terminal if printed raw
MARKUP_NAME = "[bold red]alarm [blink][link=evil]y.png"
NEWLINE_NAME = "two\nlines.png"
DASH_NAME = "-rf --json.png"
LATIN1_NAME = os.fsdecode(b"caf\xe9 cr\xe8me.png")  # a valid JPEG named in Latin-1: not UTF-8
HOSTILE = [ESC_NAME, MARKUP_NAME, NEWLINE_NAME, DASH_NAME, LATIN1_NAME]


def _images(src: Path, dest: Path, names: list[str], start: int = 0) -> list[Path]:
    """Copy distinct generated images under the given names."""
    dest.mkdir(parents=True, exist_ok=True)
    sources = sorted(src.glob("*.png"))
    out = []
    for i, name in enumerate(names):
        target = dest / name
        shutil.copyfile(sources[(start + i) % len(sources)], target)
        out.append(target)
    return out


def _no_raw_controls(text: str) -> None:
    assert "\x1b" not in text and "\x07" not in text
    assert "Traceback" not in text


@pytest.fixture()
def hostile(tmp_path: Path, shapes_source: Path, trained_model: Path, runner) -> tuple[Path, Path]:
    """A folder of hostile names, plus a broken file with an escape in its name, indexed into a store."""
    col = tmp_path / "col"
    _images(shapes_source, col, HOSTILE + ["plain.png"])
    (col / "\x1b[31mbroken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    idx = tmp_path / "index"
    result = cli(runner, "index", col, "--index", idx, "--model", trained_model)
    _no_raw_controls(result.stdout + result.stderr)
    assert "\\x1b" in result.stderr  # the broken file is reported, its name shown with visible escapes
    return col, idx


def test_hostile_names_are_indexed_and_printed_safely(runner, hostile) -> None:
    col, idx = hostile
    hits = cli_json(runner, "query", "a red circle", "-k", "50", "--index", idx)
    assert sorted(Path(h["path"]).name for h in hits) == sorted(HOSTILE + ["plain.png"])  # --json keeps real names
    assert all(os.path.exists(h["path"]) for h in hits)
    table = cli(runner, "query", "a red circle", "-k", "50", "--index", idx)
    _no_raw_controls(table.stdout + table.stderr)
    assert "\\x1b[2J" in table.stdout and "\\xe9" in table.stdout  # shown visibly, not interpreted
    assert "[bold red]alarm [blink][link=evil]y.png" in table.stdout  # markup printed as text, not applied
    failures = cli(runner, "info", "--failures", "--index", idx)
    _no_raw_controls(failures.stdout + failures.stderr)
    assert "\\x1b[31mbroken.jpg" in failures.stdout
    listed = cli_json(runner, "info", "--failures", "--index", idx)["failures_list"]
    assert [Path(f["path"]).name for f in listed] == ["\x1b[31mbroken.jpg"]


def test_paths0_round_trips_every_name(runner, hostile) -> None:
    col, idx = hostile
    result = runner.invoke(clipsearch.cli.app, ["query", "a red circle", "-k", "50", "-0", "--index", str(idx)])
    assert result.exit_code == 0
    names = [os.fsdecode(p) for p in result.stdout_bytes.split(b"\0") if p]
    assert sorted(Path(n).name for n in names) == sorted(HOSTILE + ["plain.png"])
    assert all(os.path.isfile(n) for n in names)
    lines = runner.invoke(clipsearch.cli.app, ["query", "a red circle", "-k", "50", "--paths", "--index", str(idx)])
    assert os.fsencode(str(col / LATIN1_NAME)) + b"\n" in lines.stdout_bytes  # the real bytes, not mojibake


def test_non_utf8_name_round_trips_through_the_library(hostile) -> None:
    col, idx = hostile
    with clipsearch.open(idx, create=False) as store:
        assert store.info()["images"] == len(HOSTILE) + 1
        hits = store.search(image=str(col / "plain.png"), k=50)
        latin = [h for h in hits if h.path.endswith(LATIN1_NAME)]
        assert latin and os.fsencode(latin[0].path) == os.fsencode(str(col)) + b"/caf\xe9 cr\xe8me.png"
        assert store.search("a circle", k=50, under=[str(col)])  # prefix filters over encoded names


def test_error_lines_never_wrap_when_piped(tmp_path: Path) -> None:
    deep = tmp_path / ("a-rather-long-folder-name-" * 6) / "and-then-some-more" / "index"
    env = {**os.environ, "COLUMNS": "40", "TERM": "dumb"}
    proc = subprocess.run([sys.executable, "-m", "clipsearch", "query", "x", "--index", str(deep)],
                          capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL)
    assert proc.returncode == 1
    lines = proc.stderr.splitlines()
    assert len(lines) == 2, proc.stderr  # one error line and one hint line, however long
    assert str(deep) in lines[0]


def test_tables_keep_long_paths_whole_when_piped(tmp_path: Path, shapes_source: Path, trained_model: Path,
                                                 runner) -> None:
    col = tmp_path / ("very-long-album-name-" * 5) / "2023"
    [img] = _images(shapes_source, col, ["a-long-file-name-that-would-be-cut-in-a-narrow-table.png"])
    idx = tmp_path / "index"
    cli(runner, "index", col, "--index", idx, "--model", trained_model)
    env = {**os.environ, "COLUMNS": "40"}
    proc = subprocess.run([sys.executable, "-m", "clipsearch", "query", "a circle", "--index", str(idx)],
                          capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    assert any(str(img) in line for line in proc.stdout.splitlines())
    assert "…" not in proc.stdout


def test_vanished_root_is_hidden_listed_and_forgettable(runner, tmp_path: Path, shapes_source: Path,
                                                        trained_model: Path) -> None:
    col, col2 = tmp_path / "col", tmp_path / "col2"
    _images(shapes_source, col, [f"a{i}.png" for i in range(4)])
    _images(shapes_source, col2, [f"b{i}.png" for i in range(3)], start=10)
    idx = tmp_path / "index"
    cli(runner, "index", col, col2, "--index", idx, "--model", trained_model)
    shutil.rmtree(col2)
    summary = cli_json(runner, "index", col, "--index", idx)
    assert summary["vanished_roots"] == [str(col2)]
    hits = cli_json(runner, "query", "a shape", "-k", "50", "--index", idx)
    assert len(hits) == 4 and all(h["path"].startswith(str(col) + "/") for h in hits)
    info = cli_json(runner, "info", "--index", idx)
    assert info["vanished_roots"] == [str(col2)] and info["images"] == 7  # kept until forgotten
    again = cli(runner, "index", col2, "--index", idx, ok=False)
    assert again.exit_code == 1 and "no longer exists" in again.stderr and "forget" in again.stderr
    assert cli_json(runner, "forget", col2, "--index", idx) == {"images": 3, "roots": 1}
    info = cli_json(runner, "info", "--index", idx)
    assert info["roots"] == [str(col)] and info["images"] == info["vectors"] == 4 and not info["vanished_roots"]
    assert cli(runner, "forget", col2, "--index", idx, ok=False).exit_code == 1  # nothing left to forget


def test_unreadable_folder_keeps_its_rows(tmp_path: Path, shapes_source: Path, trained_model: Path,
                                          monkeypatch) -> None:
    col = tmp_path / "col"
    _images(shapes_source, col / "ok", ["a.png", "b.png"])
    _images(shapes_source, col / "flaky", ["c.png", "d.png"], start=5)
    nas = tmp_path / "nas"
    _images(shapes_source, nas, ["e.png"], start=9)
    (col / "share").symlink_to(nas)  # a mounted share
    with clipsearch.open(tmp_path / "index", model=str(trained_model)) as store:
        assert store.add([col]).added == 5
        real_scandir = os.scandir

        def failing_scandir(path="."):
            if os.fspath(path).endswith("/flaky"):
                raise PermissionError(13, "Permission denied")
            return real_scandir(path)

        monkeypatch.setattr(os, "scandir", failing_scandir)  # a transient I/O error
        nas.rename(tmp_path / "nas-unmounted")  # the share is unmounted: the link dangles
        summary = store.add([col])
        monkeypatch.undo()
        assert summary.removed == 0 and summary.encoded == 0
        assert {Path(p).name for p, _why in summary.problems} == {"flaky", "share"}
        assert store.info()["images"] == 5
        (tmp_path / "nas-unmounted").rename(nas)
        back = store.add([col])
        assert back.encoded == 0 and back.unchanged == 5  # nothing to re-encode once it is readable again


def test_links_and_aliases_index_each_file_once(runner, tmp_path: Path, shapes_source: Path,
                                                trained_model: Path) -> None:
    col = tmp_path / "col"
    _images(shapes_source, col, ["a.png", "b.png", "c.png"])
    (col / "link-to-a.png").symlink_to(col / "a.png")
    (col / "loop").symlink_to(col)
    os.link(col / "b.png", col / "hardlink-to-b.png")
    alias = tmp_path / "alias"
    alias.symlink_to(col)
    idx = tmp_path / "index"
    first = cli_json(runner, "index", col, "--index", idx, "--model", trained_model)
    assert first["added"] == 3 and first["aliases"] == 3
    second = cli_json(runner, "index", alias, "--index", idx)  # the same folder through a symlinked alias
    assert second["added"] == 0 and second["unchanged"] == 3
    hits = cli_json(runner, "query", "a shape", "-k", "50", "--index", idx)
    assert len(hits) == 3 and len({h["path"] for h in hits}) == 3
    assert cli_json(runner, "info", "--index", idx)["roots"] == [str(col.resolve())]
    under_alias = cli_json(runner, "query", "a shape", "-k", "50", "--under", alias, "--index", idx)
    assert len(under_alias) == 3  # filters resolve links the same way


def test_verify_catches_content_changed_behind_the_same_stat(runner, tmp_path: Path, shapes_source: Path,
                                                             trained_model: Path) -> None:
    col = tmp_path / "col"
    a, _b = _images(shapes_source, col, ["a.png", "b.png"])
    idx = tmp_path / "index"
    cli(runner, "index", col, "--index", idx, "--model", trained_model)
    st = a.stat()
    # another picture, padded to the same size (PNG readers ignore bytes after the end chunk)
    other = next(p for p in sorted(shapes_source.glob("blue_*.png")) if p.stat().st_size < st.st_size)
    a.write_bytes(other.read_bytes().ljust(st.st_size, b"\0"))
    os.utime(a, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert a.stat().st_size == st.st_size and a.stat().st_mtime_ns == st.st_mtime_ns
    plain = cli_json(runner, "index", col, "--index", idx)
    assert plain["updated"] == 0 and plain["unchanged"] == 2  # the stat fast path cannot see it
    verified = cli_json(runner, "index", col, "--index", idx, "--verify")
    assert verified["verified"] == 2 and verified["updated"] == 1
    assert cli_json(runner, "index", col, "--index", idx, "--verify")["updated"] == 0


def test_damaged_manifest_is_one_clear_error_and_nothing_is_written(runner, tmp_path: Path, photos: Path,
                                                                    trained_model: Path) -> None:
    idx = tmp_path / "index"
    cli(runner, "index", photos, "--index", idx, "--model", trained_model)
    before = (idx / "catalog.sqlite").read_bytes()
    for damaged in ("{}", '{"format_version": 1, "model": {"spec": "x"}}', "not json"):
        (idx / "manifest.json").write_text(damaged)
        for args in (["query", "a red circle"], ["index", photos, "--model", "ViT-B-16"], ["info"]):
            result = cli(runner, *args, "--index", idx, ok=False)
            assert result.exit_code == 1 and "damaged" in result.stderr and "Traceback" not in result.stderr
    assert (idx / "catalog.sqlite").read_bytes() == before


def test_wrong_dimension_is_refused_before_any_write(runner, tmp_path: Path, photos: Path, trained_model: Path,
                                                     shapes_source: Path) -> None:
    idx = tmp_path / "index"
    cli(runner, "index", photos / "red_circle_000.png", "--index", idx, "--model", trained_model)
    manifest = json.loads((idx / "manifest.json").read_text())
    manifest["model"]["embed_dim"] = 32  # valid-looking, but not what the model makes
    (idx / "manifest.json").write_text(json.dumps(manifest))
    result = cli(runner, "index", photos, "--index", idx, ok=False)
    assert result.exit_code == 1 and "64-d" in result.stderr
    with clipsearch.open(idx, create=False) as store:
        assert store.catalog.counts()["images"] == 1


def test_overwritten_faiss_file_is_not_trusted(runner, tmp_path: Path, photos: Path, trained_model: Path) -> None:
    from clipsearch.vectors.index import VectorIndex
    from clipsearch.vectors.kinds import import_faiss

    idx = tmp_path / "index"
    cli(runner, "index", photos, "--index", idx, "--model", trained_model)
    expected = cli_json(runner, "query", "a red circle", "-k", "10", "--index", idx)
    faiss = import_faiss()
    good = faiss.read_index(str(idx / "vectors.faiss"))
    ids = faiss.vector_to_array(good.id_map)
    vecs = good.index.reconstruct_n(0, good.ntotal)
    rng = np.random.default_rng(0)
    wrong = VectorIndex.build(ids, vecs[rng.permutation(len(vecs))], vecs.shape[1], "flat")
    faiss.write_index(wrong.index, str(idx / "vectors.faiss.tmp"))
    size = (idx / "vectors.faiss").stat().st_size
    assert (idx / "vectors.faiss.tmp").stat().st_size == size  # same length: only a checksum can tell
    with open(idx / "vectors.faiss", "r+b") as f:  # overwritten in place
        f.write((idx / "vectors.faiss.tmp").read_bytes())
    (idx / "vectors.faiss.tmp").unlink()
    answered = cli_json(runner, "query", "a red circle", "-k", "10", "--index", idx)
    assert_same_hits(answered, expected)  # scores from the catalog's vectors now: another summation order
    cli(runner, "index", photos, "--index", idx)  # the next writer repairs the file
    with clipsearch.open(idx, create=False) as store:
        from clipsearch.vectors.store import load_index

        assert load_index(idx / "vectors.faiss", store.dim) is not None


def _read_only_checks(idx: Path, runner) -> None:
    hits = cli_json(runner, "query", "a red circle", "-k", "3", "--index", idx)
    assert len(hits) == 3
    assert cli_json(runner, "info", "--index", idx)["images"] == 60
    result = cli(runner, "index", idx.parent / "nowhere-needed", "--index", idx, ok=False)
    assert result.exit_code == 1 and "Traceback" not in result.stderr


def test_read_only_store_answers_queries(runner, tmp_path: Path, indexed: Path) -> None:
    copy = tmp_path / "backup" / "index"
    shutil.copytree(indexed, copy)
    (copy / "vectors.faiss").unlink()  # even the derived index has to be rebuilt, in memory only
    before = {p.name: p.read_bytes() for p in copy.iterdir() if p.is_file()}
    with clipsearch.open(copy, create=False, readonly=True) as store:
        assert len(store.search("a red circle", k=3)) == 3
        with pytest.raises(ClipsearchError, match="read-only"):
            store.add([copy.parent])
    assert {p.name: p.read_bytes() for p in copy.iterdir() if p.is_file()} == before


def test_read_only_mount_answers_queries(runner, tmp_path: Path, indexed: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("bind mounts need root; test_read_only_store_answers_queries covers the read-only open")
    src = tmp_path / "src" / "index"
    shutil.copytree(indexed, src)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    subprocess.run(["mount", "--bind", str(src.parent), str(mnt)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", str(mnt)], check=True)
        _read_only_checks(mnt / "index", runner)
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


def test_small_messages(runner, tmp_path: Path, indexed: Path, shapes_source: Path) -> None:
    outside = tmp_path / "not-indexed"
    outside.mkdir()
    result = cli(runner, "query", "a red circle", "--under", outside, "--json", "--index", indexed)
    assert json.loads(result.stdout) == [] and "no indexed images under" in result.stderr
    folder = cli(runner, "query", "--image", shapes_source, "--index", indexed, ok=False)
    assert folder.exit_code == 1 and "is a folder" in folder.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    idx = tmp_path / "index"
    nothing = cli(runner, "index", empty, "--index", idx, "--model", "clipsearch-tiny")
    assert "no images found" in nothing.stderr
    bad = cli(runner, "index", shapes_source, "--index", tmp_path / "new-index", "--model", "no-such-arch", ok=False)
    assert bad.exit_code == 1 and not (tmp_path / "new-index").exists()


def test_reindex_says_why_it_built_another_type(runner, tmp_path: Path, photos: Path, trained_model: Path) -> None:
    idx = tmp_path / "index"
    cli(runner, "index", photos, "--index", idx, "--model", trained_model)
    result = cli_json(runner, "reindex", "--vectors-only", "--type", "ivf", "--index", idx)
    assert result["index_type"] == "flat" and "too few" in result["note"]


def test_info_tells_a_run_in_progress_from_an_interrupted_one(tmp_path: Path, photos: Path,
                                                             trained_model: Path) -> None:
    idx = tmp_path / "index"
    started, release = threading.Event(), threading.Event()
    with clipsearch.open(idx, model=str(trained_model)) as writer:
        encoder = writer.encoder
        original = encoder.encode_images

        def slow(batch):
            started.set()
            release.wait(30)
            return original(batch)

        encoder.encode_images = slow
        thread = threading.Thread(target=lambda: writer.add([photos], batch_size=4))
        thread.start()
        assert started.wait(30)
        with clipsearch.open(idx, create=False) as reader:
            assert reader.info()["last_run"]["status"] == "in progress"
        release.set()
        thread.join(60)
    with clipsearch.open(idx, create=False) as reader:
        assert reader.info()["last_run"]["status"] == "done"
