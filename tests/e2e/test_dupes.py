"""Duplicates: byte copies by digest, near copies (re-encoded, resized) by embedding, keeper rule, filters, output.

The CLI tests index generated images with the trained tiny CLIP plus injected copies. That model tells
colours and shapes apart but puts some distinct images of one class above 0.99, so the originals are chosen
among the images it tells apart (pairwise cosine < 0.97); the copies are what must group. The grouping and
the self-join are also tested with hand-made vectors.
"""

from __future__ import annotations

import math
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import clipsearch
from clipsearch.errors import ClipsearchError
from clipsearch.query.dupes import near_groups, split_by_keeper
from clipsearch.query.grouping import components, connected_groups
from clipsearch.vectors import index as vectors_mod
from clipsearch.vectors.index import JoinStats, VectorIndex
from tests.conftest import cli, cli_json

T0 = 1_600_000_000  # mtimes are set explicitly: the keeper rule's "oldest" must not depend on copy order
ODD = os.fsdecode(b"copy-\xff.png")  # a file name that is not UTF-8

# the injected groups, as paths relative to the collection (p0..p7 are distinct originals)
EXACT = {frozenset({"a/p0.png", "b/p0 copy.png"}), frozenset({"sub/p1.png", f"sub/deeper/{ODD}"})}
NEAR = EXACT | {frozenset({"a/p2.png", "b/p2.jpg"}), frozenset({"a/p3.png", "b/p3-98.png", "b/p3-94.png"})}
KEEPERS = {"b/p0 copy.png", "sub/p1.png", "a/p2.png", "b/p3-98.png"}


@pytest.fixture(scope="module")
def distinct(indexed: Path) -> list[Path]:
    """Images of the generated collection that the tiny model tells apart, in path order."""
    with clipsearch.open(indexed, create=False) as store:
        _version, ids, vecs = store.catalog.all_embeddings(store.dim)
        records = store.catalog.images(ids.tolist())
    paths = [records[int(i)].path for i in ids]
    picked: list[int] = []
    for i in np.argsort(paths):
        if all(float(vecs[i] @ vecs[j]) < 0.97 for j in picked):
            picked.append(int(i))
    assert len(picked) >= 8, "the trained model should tell at least 8 of the generated images apart"
    return [Path(paths[i]) for i in picked[:8]]


def _put(src: Path, dest: Path, mtime: int, size: int | None = None, fmt: str | None = None) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    if size is None and fmt is None:
        shutil.copyfile(src, dest)  # a byte copy
    else:
        im = Image.open(src).convert("RGB")
        if size:
            im = im.resize((size, size), Image.Resampling.BICUBIC)
        im.save(dest, **({"quality": 95} if fmt == "JPEG" else {}))
    os.utime(dest, (mtime, mtime))


@pytest.fixture(scope="module")
def collection(tmp_path_factory: pytest.TempPathFactory, distinct: list[Path], trained_model: Path):
    """(folder, store): the distinct originals, their byte / re-encoded / resized copies, indexed."""
    root = tmp_path_factory.mktemp("dupes") / "photos"
    p = distinct
    _put(p[0], root / "a/p0.png", T0 + 100)
    _put(p[0], root / "b/p0 copy.png", T0)  # same pixels: the oldest is kept
    _put(p[1], root / "sub/p1.png", T0)
    _put(p[1], root / "sub/deeper" / ODD, T0 + 100)
    _put(p[2], root / "a/p2.png", T0)
    _put(p[2], root / "b/p2.jpg", T0 + 100, fmt="JPEG")  # re-encoded as JPEG q95
    _put(p[3], root / "a/p3.png", T0)
    _put(p[3], root / "b/p3-98.png", T0 + 200, size=98)  # resized up 2 px: most pixels beats oldest
    _put(p[3], root / "b/p3-94.png", T0 + 100, size=94)
    for i in range(4, 8):
        _put(p[i], root / f"a/p{i}.png", T0)  # unrelated singles
    store = root.parent / "index"
    cli(CliRunner(), "index", root, "--index", store, "--model", trained_model)
    return root.resolve(), store


def _rel(root: Path, path: str) -> str:
    return Path(path).relative_to(root).as_posix()


def _groups(root: Path, data: list[dict]) -> set[frozenset[str]]:
    return {frozenset(_rel(root, im["path"]) for im in g["images"]) for g in data}


def _keepers(root: Path, data: list[dict]) -> set[str]:
    return {_rel(root, im["path"]) for g in data for im in g["images"] if im["keeper"]}


# --- through the CLI ---------------------------------------------------------------------------------------

def test_exact_finds_exactly_the_byte_copies(runner, collection):
    root, store = collection
    data = cli_json(runner, "dupes", "--exact", "--index", store)
    assert _groups(root, data) == EXACT
    assert _keepers(root, data) == {"b/p0 copy.png", "sub/p1.png"}  # same pixels: the oldest
    assert all(g["similarity"] == 1.0 for g in data)


def test_near_finds_the_injected_groups_with_keepers(runner, collection):
    root, store = collection
    data = cli_json(runner, "dupes", "--level", "similar", "--index", store)  # default threshold 0.99
    assert _groups(root, data) == NEAR
    assert _keepers(root, data) == KEEPERS  # b/p3-98.png: largest resolution, though the newest
    assert len(data[0]["images"]) == 3  # biggest group first
    for g in data:
        images = g["images"]
        assert images[0]["keeper"] and not any(im["keeper"] for im in images[1:])
        assert g["keeper"] == images[0]["id"]
        assert g["similarity"] == min(im["similarity"] for im in images) >= 0.99
        assert set(images[0]) >= {"id", "path", "size", "width", "height", "modified", "keeper"}
    p3 = next(g for g in data if len(g["images"]) == 3)
    assert [(im["width"], im["height"]) for im in p3["images"]] == [(98, 98), (96, 96), (94, 94)]
    assert p3["images"][0]["size"] == (root / "b/p3-98.png").stat().st_size


def test_under_restricts_both_sides(runner, collection, tmp_path):
    root, store = collection
    for flags in (["--exact"], ["--level", "similar"]):
        only_sub = cli_json(runner, "dupes", *flags, "--under", root / "sub", "--index", store)
        assert _groups(root, only_sub) == {frozenset({"sub/p1.png", f"sub/deeper/{ODD}"})}
        ab = cli_json(runner, "dupes", *flags, "--under", root / "a", "--under", root / "b", "--index", store)
        expected = EXACT if flags == ["--exact"] else NEAR
        assert _groups(root, ab) == expected - {frozenset({"sub/p1.png", f"sub/deeper/{ODD}"})}
    assert cli_json(runner, "dupes", "--under", root / "a", "--index", store) == []  # each copy is in b/
    link = tmp_path / "link-to-sub"
    link.symlink_to(root / "sub")  # --under takes the real path, like query
    assert len(cli_json(runner, "dupes", "--under", link, "--index", store)) == 1
    empty = cli(runner, "dupes", "--under", tmp_path, "--index", store, "--json")
    assert empty.stdout.strip() == "[]" and "no indexed images under" in empty.stderr


def test_paths_list_exactly_the_non_keepers_and_nothing_is_deleted(runner, collection):
    root, store = collection
    before = sorted(p for p in root.rglob("*"))
    data = cli_json(runner, "dupes", "--level", "similar", "--index", store)
    extra = {os.fsencode(im["path"]) for g in data for im in g["images"] if not im["keeper"]}
    assert len(extra) == 5
    lines = cli(runner, "dupes", "-l", "similar", "--paths", "--index", store).stdout_bytes
    assert lines.endswith(b"\n") and set(lines.split(b"\n")[:-1]) == extra
    assert any(b"\xff" in p for p in extra)  # the raw bytes of the non-UTF-8 name
    nul = cli(runner, "dupes", "-l", "similar", "-0", "--index", store).stdout_bytes
    assert nul.endswith(b"\0") and set(nul.split(b"\0")[:-1]) == extra
    exact = cli(runner, "dupes", "--exact", "--paths0", "--index", store).stdout_bytes
    assert set(exact.split(b"\0")[:-1]) == {os.fsencode(root / "a/p0.png"), os.fsencode(root / "sub/deeper" / ODD)}
    assert sorted(p for p in root.rglob("*")) == before


def test_table_output(runner, collection):
    _root, store = collection
    out = cli(runner, "dupes", "--level", "similar", "--index", store).stdout
    assert "4 groups of duplicates: 5 files beside the keepers" in out
    assert "kept: most pixels" in out and "kept: oldest" in out  # why each keeper
    assert out.count("keep") >= 4 and "nothing was deleted" in out
    assert "copy-\\xff.png" in out  # the undecodable byte shown as an escape, not written raw
    assert "98x98" in out


def test_bad_threshold_and_flags(runner, collection):
    _root, store = collection
    for value in ("0", "1.5", "-0.2", "nan"):
        result = cli(runner, "dupes", "-l", "similar", "--threshold", value, "--index", store, ok=False)
        assert result.exit_code == 1
        assert "--threshold must be a cosine similarity in (0, 1]" in result.stderr, result.stderr
    assert cli_json(runner, "dupes", "-l", "similar", "--threshold", "1", "--index", store)  # byte copies: cosine 1
    for flags in (["--exact"], [], ["--level", "same"]):
        result = cli(runner, "dupes", *flags, "--threshold", "0.9", "--index", store, ok=False)
        assert result.exit_code == 1 and "--threshold goes with --level similar" in result.stderr
    result = cli(runner, "dupes", "--level", "alike", "--index", store, ok=False)
    assert result.exit_code == 1 and "unknown duplicate level 'alike'" in result.stderr


def test_library_api(collection, tmp_path):
    root, store_path = collection
    with clipsearch.open(store_path, create=False) as store:
        groups = store.duplicates("similar")
        assert {frozenset(_rel(root, im.path) for im in g.images) for g in groups} == NEAR
        assert {_rel(root, g.images[0].path) for g in groups} == KEEPERS
        assert all(g.images[0].id == g.keeper and g.extra == g.images[1:] for g in groups)
        assert groups.stats.vectors == 13 and groups.stats.partition == "exhaustive"
        loose = store.duplicates("similar", threshold=0.5)  # looser: unrelated pictures start to group
        assert sum(len(g.images) for g in loose) > sum(len(g.images) for g in groups)
        assert len(store.duplicates("exact", under=[str(root / "b")])) == 0
        with pytest.raises(ClipsearchError) as info:
            store.duplicates("similar", threshold=1.01)
        assert info.value.param == "threshold" and str(info.value).startswith("threshold must be")
        with pytest.raises(ClipsearchError) as info:
            store.duplicates("same", threshold=0.9)
        assert info.value.param == "threshold"
        with pytest.raises(ClipsearchError) as info:
            store.duplicates("near")
        assert info.value.param == "level"
    with clipsearch.open(tmp_path / "new-store") as empty, pytest.raises(ClipsearchError, match="is empty"):
        empty.duplicates()


def test_vanished_roots_are_hidden_and_an_empty_store_is_an_error(runner, distinct, trained_model, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    _put(distinct[4], one / "x.png", T0)
    _put(distinct[5], one / "y.png", T0)
    _put(distinct[4], two / "x copy.png", T0 + 1)
    store = tmp_path / "index"
    cli(runner, "index", one, two, "--index", store, "--model", trained_model)
    assert len(cli_json(runner, "dupes", "--exact", "--index", store)) == 1
    assert len(cli_json(runner, "dupes", "--index", store)) == 1
    two.rename(tmp_path / "two-unmounted")
    assert cli_json(runner, "dupes", "--exact", "--index", store) == []
    assert cli_json(runner, "dupes", "--index", store) == []
    cli(runner, "forget", two, "--index", store)
    cli(runner, "forget", one, "--index", store)
    result = cli(runner, "dupes", "--index", store, ok=False)
    assert result.exit_code == 1 and "holds no images" in result.stderr


# --- grouping and the self-join, with hand-made vectors ------------------------------------------------------

def _unit(angle_deg: float, dim: int = 8, axis: int = 1) -> np.ndarray:
    v = np.zeros(dim, np.float32)
    v[0], v[axis] = math.cos(math.radians(angle_deg)), math.sin(math.radians(angle_deg))
    return v


def _chain_index() -> tuple[VectorIndex, dict[int, np.ndarray]]:
    """A~B and B~C above 0.99 (cos 0.995) but A,C below (cos 0.980); D far from all."""
    step = math.degrees(math.acos(0.995))
    vecs = {1: _unit(0), 2: _unit(step), 3: _unit(2 * step), 4: _unit(90, axis=2)}
    ids = np.array(list(vecs), np.int64)
    return VectorIndex.build(ids, np.stack([vecs[i] for i in ids]), 8), vecs


def _near(vi: VectorIndex, vecs: dict[int, np.ndarray], rank: dict[int, int], threshold: float = 0.99):
    def vectors_of(ids):
        return np.asarray(ids, np.int64), np.stack([vecs[int(i)] for i in ids])

    return near_groups(vi, threshold, vectors_of, lambda ids: {int(i): rank[int(i)] for i in ids})


def test_chains_do_not_merge_unrelated_pictures():
    vi, vecs = _chain_index()
    groups = _near(vi, vecs, rank={1: 0, 2: 1, 3: 2, 4: 3})  # A is the preferred keeper
    assert [ids for ids, _sims in groups] == [[1, 2]]  # C is not A's duplicate: left on its own, so not reported
    assert groups[0][1][1] == pytest.approx(0.995, abs=1e-4)
    groups = _near(vi, vecs, rank={2: 0, 1: 1, 3: 2, 4: 3})  # B as keeper: A and C both are its duplicates
    assert [ids for ids, _sims in groups] == [[2, 1, 3]]


def test_split_by_keeper_regroups_the_rest():
    step = math.degrees(math.acos(0.995))
    vecs = np.stack([_unit(i * step) for i in range(5)])  # A B C D E, each 0.995 to the next
    out = split_by_keeper([10, 11, 12, 13, 14], vecs, [0, 1, 3, 2, 4], 0.99)
    assert [ids for ids, _s in out] == [[10, 11], [13, 12, 14]]  # A takes B; C, D, E regroup around D
    assert all(s[0] == 1.0 and min(s) >= 0.99 for _ids, s in out)
    out = split_by_keeper([10, 11, 12, 13, 14], vecs, [0, 1, 2, 3, 4], 0.99)
    assert [ids for ids, _s in out] == [[10, 11], [12, 13]]  # E is left alone: not reported


def test_union_find_components():
    nodes, labels = components(np.array([5, 7, 9, 100, 3]), np.array([7, 9, 11, 101, 5]))
    assert dict(zip(nodes.tolist(), labels.tolist(), strict=False)) == {3: 3, 5: 3, 7: 3, 9: 3, 11: 3,
                                                                        100: 100, 101: 100}
    chain = np.arange(1000)
    nodes, labels = components(chain[1:][::-1], chain[:-1][::-1])  # a long path, edges in reverse order
    assert (labels == 0).all()
    blocks = [(np.array([1, 2]), np.array([2, 3]), None), (np.array([10, 3]), np.array([11, 4]), None)]
    assert [g.tolist() for g in connected_groups(blocks)] == [[1, 2, 3, 4], [10, 11]]


def _clustered(n: int, dim: int, seed: int = 0, copies: int = 300) -> tuple[np.ndarray, np.ndarray]:
    """Clustered unit vectors (stored as float16 like the catalog) with `copies` near copies (cosine ~0.998)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(200, dim)).astype(np.float32)
    vecs = centres[rng.integers(0, 200, n)] + 0.6 * rng.normal(size=(n, dim)).astype(np.float32)
    src, dst = np.split(rng.choice(n, 2 * copies, replace=False), 2)
    vecs[dst] = vecs[src] / np.linalg.norm(vecs[src], axis=1, keepdims=True) + 0.008 * rng.normal(size=(copies, dim))
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    return np.arange(n, dtype=np.int64) * 3 + 7, vecs.astype(np.float16).astype(np.float32)


def _brute_pairs(ids: np.ndarray, vecs: np.ndarray, threshold: float) -> set[tuple[int, int]]:
    out = set()
    for start in range(0, len(vecs), 2048):
        rows, cols = np.nonzero(vecs[start:start + 2048] @ vecs.T >= threshold)
        keep = cols > rows + start
        out |= set(zip(ids[rows[keep] + start].tolist(), ids[cols[keep]].tolist(), strict=False))
    return out


def _join(vi: VectorIndex, threshold: float, allowed=None, max_visits=None) -> tuple[set[tuple[int, int]], JoinStats]:
    stats = JoinStats()
    found = []
    for a, b, scores in vi.pairs_above(threshold, allowed, stats, max_visits):
        assert (scores >= threshold).all()
        found += zip(np.minimum(a, b).tolist(), np.maximum(a, b).tolist(), strict=False)
    assert len(found) == len(set(found)), "each pair once"
    return set(found), stats


@pytest.fixture(scope="module")
def join_data():
    return _clustered(12_000, 32)


@pytest.mark.parametrize("kind", ["ivf", "flat", "hnsw"])
def test_self_join_finds_every_pair_without_comparing_all(kind, join_data, monkeypatch):
    """Exact (every pair >= threshold, each once) on every index type, scoring a small part of the n²/2 pairs:
    the IVF lists, or for flat/HNSW past EXACT_JOIN_MAX a partition built for the join."""
    monkeypatch.setattr(vectors_mod, "EXACT_JOIN_MAX", 2_000)
    ids, vecs = join_data
    vi = VectorIndex.build(ids, vecs, vecs.shape[1], kind)
    assert vi.kind == kind
    n = len(ids)
    truth = _brute_pairs(ids, vecs, 0.99)
    assert len(truth) >= 300
    found, stats = _join(vi, 0.99)
    assert found == truth
    assert stats.capped == 0 and stats.lists > 50
    assert stats.compared < 0.1 * n * (n - 1) / 2
    rng = np.random.default_rng(3)
    allowed = rng.choice(ids, n // 2, replace=False)
    kept = set(allowed.tolist())
    found, _stats = _join(vi, 0.99, allowed)
    assert found == {(a, b) for a, b in truth if a in kept and b in kept}


def test_self_join_small_and_loose(join_data, monkeypatch):
    ids, vecs = join_data
    small = VectorIndex.build(ids[:3000], vecs[:3000], vecs.shape[1])  # flat, under EXACT_JOIN_MAX: every pair
    found, stats = _join(small, 0.99)
    assert found == _brute_pairs(ids[:3000], vecs[:3000], 0.99) and stats.partition == "exhaustive"
    monkeypatch.setattr(vectors_mod, "EXACT_JOIN_MAX", 2_000)
    ivf = VectorIndex.build(ids[:6000], vecs[:6000], vecs.shape[1], "ivf")
    found, stats = _join(ivf, 0.6)  # a loose threshold: every vector is near every border, so all pairs are scored
    assert found == _brute_pairs(ids[:6000], vecs[:6000], 0.6)
    assert "every pair scored" in stats.partition
    found, stats = _join(ivf, 0.9, max_visits=1)  # a cap on border visits may miss pairs, and says so
    assert stats.capped > 0 and found <= _brute_pairs(ids[:6000], vecs[:6000], 0.9)
