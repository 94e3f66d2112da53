"""A saved flat index is read without FAISS (`vectors/flat_file.py`) and searched in NumPy with FAISS's answers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import faiss
import numpy as np
import pytest

from clipsearch.vectors import flat_file
from clipsearch.vectors.flat_file import read_flat
from clipsearch.vectors.index import VectorIndex
from clipsearch.vectors.store import load_index, save_index

DIM = 32


def unit_vectors(n: int, seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=(n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@pytest.mark.parametrize("n", [0, 1, 7, 300])
def test_the_file_faiss_writes_reads_back_as_its_arrays(tmp_path: Path, n: int) -> None:
    vecs, ids = unit_vectors(n, seed=n), np.arange(5, 5 + 3 * n, 3, dtype=np.int64)
    index = faiss.IndexIDMap2(faiss.IndexFlatIP(DIM))
    if n:
        index.add_with_ids(vecs, ids)
    faiss.write_index(index, str(tmp_path / "v.faiss"))
    flat = read_flat(tmp_path / "v.faiss", DIM, n)
    assert flat is not None
    assert np.array_equal(flat.ids, ids) and np.array_equal(flat.vectors, vecs)
    assert not flat.vectors.flags.writeable
    assert read_flat(tmp_path / "v.faiss", DIM + 1, n) is None  # another dim
    assert read_flat(tmp_path / "v.faiss", DIM, n + 1) is None  # another count


def test_other_index_types_and_damaged_files_are_left_to_faiss(tmp_path: Path) -> None:
    vecs = unit_vectors(2000, seed=1)
    ivf = VectorIndex.build(np.arange(2000), vecs, DIM, "ivf")
    faiss.write_index(ivf.index, str(tmp_path / "ivf.faiss"))
    assert read_flat(tmp_path / "ivf.faiss", DIM, 2000) is None
    flat = VectorIndex.build(np.arange(2000), vecs, DIM, "flat")
    faiss.write_index(flat.index, str(tmp_path / "flat.faiss"))
    data = (tmp_path / "flat.faiss").read_bytes()
    (tmp_path / "short.faiss").write_bytes(data[:-8])
    (tmp_path / "long.faiss").write_bytes(data + b"\0")
    (tmp_path / "empty.faiss").write_bytes(b"")
    for name in ("short", "long", "empty", "missing"):
        assert read_flat(tmp_path / f"{name}.faiss", DIM, 2000) is None, name
    l2 = faiss.IndexIDMap2(faiss.IndexFlatL2(DIM))
    l2.add_with_ids(vecs[:5], np.arange(5, dtype=np.int64))
    faiss.write_index(l2, str(tmp_path / "l2.faiss"))
    assert read_flat(tmp_path / "l2.faiss", DIM, 5) is None  # not inner product


def test_numpy_search_gives_faiss_ids(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(flat_file, "gpu_visible", lambda: False)
    vecs, ids = unit_vectors(3000, seed=2), np.arange(10, 6010, 2, dtype=np.int64)
    built = VectorIndex.build(ids, vecs, DIM, "flat")
    save_index(built, tmp_path / "vectors.faiss", version=4)
    loaded = load_index(tmp_path / "vectors.faiss", DIM)
    assert loaded is not None and loaded[1] == 4
    mapped = loaded[0]
    assert mapped.flat is not None and mapped._index is None and mapped.ntotal == 3000
    queries = unit_vectors(5, seed=3)
    rng = np.random.default_rng(4)
    for k in (1, 10, 3000, 5000):
        for allowed in (None, rng.choice(ids, 20, replace=False),  # few: gathered
                        rng.choice(ids, 2000, replace=False),  # many: all scored, then picked
                        np.array([11, 13], np.int64), np.array([], np.int64)):
            got_s, got_i = mapped.search(queries, k, allowed)
            want_s, want_i = built.search(queries, k, allowed)
            assert np.array_equal(got_i, want_i), (k, None if allowed is None else len(allowed))
            assert np.allclose(got_s, want_s, atol=1e-5)
    assert mapped._index is None  # searching never built the FAISS index
    pairs = list(mapped.pairs_above(0.5))  # anything else builds it from the mapped arrays, the same answers
    assert [len(p[0]) for p in pairs] == [len(p[0]) for p in built.pairs_above(0.5)]
    assert mapped.index.ntotal == 3000


def test_a_gpu_or_a_writer_keeps_faiss(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    vecs = unit_vectors(50, seed=5)
    save_index(VectorIndex.build(np.arange(50), vecs, DIM, "flat"), tmp_path / "vectors.faiss", version=1)
    monkeypatch.setattr(flat_file, "gpu_visible", lambda: True)
    on_gpu_machine = load_index(tmp_path / "vectors.faiss", DIM)
    assert on_gpu_machine is not None and on_gpu_machine[0].flat is None  # FAISS decides where it searches
    asked_cpu = load_index(tmp_path / "vectors.faiss", DIM, device="cpu")
    assert asked_cpu is not None and asked_cpu[0].flat is not None
    owned = load_index(tmp_path / "vectors.faiss", DIM, mapped=False, device="cpu")
    assert owned is not None and owned[0].flat is None and not owned[0].mapped


def test_a_cold_search_of_a_small_flat_store_does_not_import_faiss(tmp_path: Path) -> None:
    vecs = unit_vectors(50, seed=6)
    save_index(VectorIndex.build(np.arange(50), vecs, DIM, "flat"), tmp_path / "vectors.faiss", version=1)
    code = ("import sys, numpy as np\n"
            "from clipsearch.vectors.store import load_index\n"
            f"vi, _ = load_index(__import__('pathlib').Path(sys.argv[1]), {DIM}, device='cpu')\n"
            f"print(vi.search(np.ones((1, {DIM}), np.float32), 3)[1].tolist(), 'faiss' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "vectors.faiss")], capture_output=True,
                         text=True, check=True).stdout.split()
    assert out[-1] == "False"
