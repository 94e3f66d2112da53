"""A store above its IVF-PQ threshold (lowered through CLIPSEARCH_PQ_MIN so a small store crosses it): the
store builds IVF-PQ with its re-rank file, answers like exact search, filtered counts hold, a damaged re-rank
file is never ranked with and is rebuilt by the next writer, and incremental runs keep the mapped file in step
with the catalog.

The store holds the shapes photos plus 12k synthetic rows under another folder, committed through the catalog as
bench/query_latency.py grows a store: noisy copies of the photos' own embeddings (clustered like a real library).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

import clipsearch
from clipsearch.catalog.records import Encoded
from tests.conftest import cli, cli_json

N_SYNTH = 12_000


def grow(idx: Path, folder: Path, n: int) -> None:
    rng = np.random.default_rng(0)
    with clipsearch.open(idx, create=False) as store:
        _version, _ids, seeds = store.catalog.all_embeddings(store.dim)
        vecs = seeds[rng.integers(0, len(seeds), n)]
        vecs += rng.standard_normal(vecs.shape).astype(np.float32) * (0.5 / np.sqrt(store.dim))
        vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
        for start in range(0, n, 4000):
            rows = [Encoded(str(folder / f"{start + i:06d}.jpg"), 1000, 1, f"{start + i:032x}", 64, 64, "JPEG", v,
                            None) for i, v in enumerate(vecs[start:start + 4000])]
            store.catalog.commit_chunk(rows, [], [])


@pytest.fixture()
def pq_store(runner, tmp_path: Path, photos: Path, trained_model: Path, monkeypatch) -> Path:
    idx = tmp_path / "index"
    cli(runner, "index", photos, "--index", idx, "--model", trained_model)
    (tmp_path / "elsewhere").mkdir()
    grow(idx, tmp_path / "elsewhere", N_SYNTH)
    monkeypatch.setenv("CLIPSEARCH_PQ_MIN", "5000")
    cli(runner, "index", photos, "--index", idx)  # nothing to encode: the writer saves the rebuilt index
    return idx


def catalog_vectors(idx: Path) -> tuple[np.ndarray, np.ndarray]:
    with clipsearch.open(idx, create=False) as store:
        _version, ids, vecs = store.catalog.all_embeddings(store.dim)
    order = np.argsort(ids)
    return ids[order], vecs[order]


def saved(idx: Path):
    from clipsearch.vectors.store import load_index

    with clipsearch.open(idx, create=False) as store:
        return load_index(idx / "vectors.faiss", store.dim)


def paths(hits: list[dict]) -> list[str]:
    return [h["path"] for h in hits]


def flat_answers(runner, idx: Path, tmp_path: Path, *queries: list[str]) -> list[list[dict]]:
    """The same queries on a copy of the store rebuilt as an exact (flat) index."""
    copy = tmp_path / "flat-copy"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(idx, copy)
    cli(runner, "reindex", "--vectors-only", "--type", "flat", "--index", copy)
    return [cli_json(runner, "query", *q, "--index", copy) for q in queries]


def like_exact(got: list[dict], exact: list[dict]) -> None:
    """Near-exact: every score the exact cosine (re-ranked, not approximated), the best hit found, and the k-th
    hit within 0.02 of the exact k-th (which of several near-equal vectors come back may differ)."""
    exact_score = {h["path"]: h["score"] for h in exact}
    assert len(got) == len(exact)
    assert all(abs(h["score"] - exact_score[h["path"]]) < 1e-5 for h in got if h["path"] in exact_score)
    assert [h["score"] for h in got] == sorted((h["score"] for h in got), reverse=True)
    assert abs(got[0]["score"] - exact[0]["score"]) < 1e-5 and got[-1]["score"] >= exact[-1]["score"] - 0.02


def test_store_picks_ivfpq_and_answers_like_exact(runner, pq_store: Path, photos: Path, tmp_path: Path,
                                                  monkeypatch) -> None:
    info = cli_json(runner, "info", "--index", pq_store)
    assert info["index_type"] == "ivfpq" and info["vectors"] == 60 + N_SYNTH
    vi, _version = saved(pq_store)
    assert vi.kind == "ivfpq" and vi.mapped and vi.exact.mapped and len(vi.exact) == 60 + N_SYNTH
    assert (pq_store / "vectors.f16").stat().st_size >= (60 + N_SYNTH) * vi.dim * 2
    image = str(sorted(photos.glob("blue_square_*"))[0])  # an image query lands among its copies, like real ones
    queries = [["--image", image, "-k", "10"], ["a blue square", "-k", "100", "--under", str(photos)],
               ["--image", image, "-k", "10", "--under", str(tmp_path / "elsewhere")]]
    got = [cli_json(runner, "query", *q, "--index", pq_store) for q in queries]
    assert [len(g) for g in got] == [10, 60, 10]  # filtered: min(k, matches), from 60 and from 12k matches
    exact = flat_answers(runner, pq_store, tmp_path, *queries)
    assert paths(got[1]) == paths(exact[1])  # a small filter is scored exactly
    like_exact(got[0], exact[0])
    like_exact(got[2], exact[2])  # 12k synthetic vectors: codes pick 200 candidates, re-ranked
    # below the threshold (the default one) a rebuild goes back to an exact index
    monkeypatch.delenv("CLIPSEARCH_PQ_MIN")
    assert cli_json(runner, "reindex", "--vectors-only", "--index", pq_store)["index_type"] == "flat"


def test_damaged_rerank_file_is_not_trusted(runner, pq_store: Path, tmp_path: Path) -> None:
    expected = paths(cli_json(runner, "query", "a red circle", "-k", "10", "--index", pq_store))
    f16 = pq_store / "vectors.f16"
    size = f16.stat().st_size
    vi, _ = saved(pq_store)
    start, length, dim = size - len(vi.exact.crcs) * 4 - vi.exact.vecs.nbytes, vi.exact.vecs.nbytes, vi.dim
    del vi
    with open(f16, "r+b") as f:  # every vector replaced by another one in place: same length, same header
        f.seek(start)
        rows = np.frombuffer(f.read(length), np.float16).reshape(-1, dim)
        f.seek(start)
        f.write(rows[np.random.default_rng(0).permutation(len(rows))].tobytes())
    assert f16.stat().st_size == size
    assert paths(cli_json(runner, "query", "a red circle", "-k", "10", "--index", pq_store)) == expected
    damaged = f16.read_bytes()
    cli(runner, "index", pq_store.parent / "photos", "--index", pq_store)  # the next writer repairs the file
    assert f16.read_bytes() != damaged
    vi, _ = saved(pq_store)
    vi.exact.verify()
    ids, vecs = catalog_vectors(pq_store)
    assert np.array_equal(vi.exact.get(ids), vecs)


def test_damaged_pq_faiss_file_is_not_trusted(runner, pq_store: Path) -> None:
    expected = paths(cli_json(runner, "query", "a red circle", "-k", "10", "--index", pq_store))
    path = pq_store / "vectors.faiss"
    data = bytearray(path.read_bytes())
    data[len(data) // 2:len(data) // 2 + 4096] = bytes(4096)  # codes zeroed in place, same length
    path.write_bytes(bytes(data))
    assert saved(pq_store) is None
    assert paths(cli_json(runner, "query", "a red circle", "-k", "10", "--index", pq_store)) == expected


def test_incremental_runs_keep_the_rerank_file_in_step(runner, pq_store: Path, photos: Path, tmp_path: Path) -> None:
    before = saved(pq_store)[0]
    assert before.mapped
    removed = sorted(photos.glob("red_*"))[:4]
    for p in removed:
        p.unlink()
    added = []
    for i, src in enumerate(sorted(photos.glob("blue_*"))[:3]):  # new files (same pixels, new paths and ids)
        added.append(photos / f"new_{i}.png")
        shutil.copyfile(src, added[-1])
    summary = cli_json(runner, "index", photos, "--index", pq_store)
    assert summary["added"] == 3 and summary["removed"] == 4
    vi, version = saved(pq_store)
    assert vi.kind == "ivfpq" and vi.ntotal == 60 + N_SYNTH - 4 + 3 == len(vi.exact)
    ids, vecs = catalog_vectors(pq_store)
    assert np.array_equal(np.asarray(vi.exact.ids), ids)  # the file holds exactly the catalog's ids, in order
    assert np.array_equal(vi.exact.get(ids), vecs)  # and their stored vectors
    vi.exact.verify()
    query = ["--image", str(added[0]), "-k", "10"]
    hits = cli_json(runner, "query", *query, "--index", pq_store)
    assert not set(paths(hits)) & {str(p) for p in removed}
    like_exact(hits, flat_answers(runner, pq_store, tmp_path, query)[0])
    everything = paths(cli_json(runner, "query", "a blue square", "-k", "100", "--under", str(photos),
                                "--index", pq_store))
    assert sorted(everything) == sorted(str(p) for p in photos.iterdir())  # min(k, 59 matches), new ones included
