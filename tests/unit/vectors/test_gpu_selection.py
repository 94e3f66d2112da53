"""Where FAISS works for a device (vectors/gpu.py), checked on the CPU with fake faiss builds and a CPU index
standing in for a GPU copy (the IVF build's GPU path: tests/integration/test_ivf_gpu_path.py)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from clipsearch.errors import ClipsearchError
from clipsearch.vectors import gpu
from clipsearch.vectors.index import VectorIndex

DIM = 32


def fake_faiss(gpus: int, gpu_build: bool = True) -> Any:
    build = SimpleNamespace(get_num_gpus=lambda: gpus)
    if gpu_build:
        build.StandardGpuResources = object
    return build


@pytest.mark.parametrize(("device", "gpus", "gpu_build", "expected"), [
    (None, 1, True, 0),  # the default: the GPU when the GPU build sees one
    (None, 0, True, None),  # the GPU build on a machine without a GPU
    (None, 2, False, None),  # faiss-cpu: never
    ("cpu", 2, True, None),  # asked for the CPU: also where a GPU is there
    ("cuda", 1, True, 0),
    ("cuda:1", 2, True, 1),
    ("cuda:1", 1, True, None),  # no such GPU for FAISS: the CPU (the encoder reports its own device)
    ("cuda", 1, False, None),  # a CUDA encoder beside faiss-cpu is a supported install: FAISS on the CPU
])
def test_gpu_number_follows_the_device_where_it_can(device: str | None, gpus: int, gpu_build: bool,
                                                    expected: int | None) -> None:
    assert gpu.gpu_number(device, fake_faiss(gpus, gpu_build)) == expected


def test_a_device_that_is_not_cpu_or_cuda_is_a_clear_error() -> None:
    with pytest.raises(ClipsearchError) as refused:
        gpu.gpu_number("tpu", fake_faiss(1))
    assert refused.value.param == "device" and "tpu" in refused.value.message
    with pytest.raises(ClipsearchError):
        VectorIndex.build(np.arange(3), np.eye(3, DIM, dtype=np.float32), DIM, "flat", device="mps")


def unit_vectors(n: int, seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=(n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_searches_use_a_gpu_copy_only_where_the_device_allows(monkeypatch) -> None:
    vecs, ids = unit_vectors(500, seed=4), np.arange(500, dtype=np.int64)
    copies: list[int] = []

    def copy(index: Any, number: int, faiss_module: Any) -> Any:
        copies.append(number)
        return index  # the CPU index stands in for its GPU copy

    monkeypatch.setattr(gpu, "search_copy", copy)
    monkeypatch.setattr(gpu, "gpu_number", lambda device, f: None if device == "cpu" else 0)
    on_cpu = VectorIndex.build(ids, vecs, DIM, "flat", device="cpu")
    assert on_cpu.faiss_device == "cpu" and not on_cpu.searches_on_gpu and copies == []
    on_gpu = VectorIndex.build(ids, vecs, DIM, "flat", device="cuda")
    assert on_gpu.faiss_device == "cuda:0" and on_gpu.searches_on_gpu and copies == [0]
    assert np.array_equal(on_gpu.search(vecs[:5], 3)[1], on_cpu.search(vecs[:5], 3)[1])
    on_gpu.add(np.array([1000], np.int64), vecs[:1])  # a change drops the copy; the next search makes a new one
    on_gpu.search(vecs[:1], 3)
    assert copies == [0, 0]
    hnsw = VectorIndex.build(ids, vecs, DIM, "hnsw", device="cuda")
    assert not hnsw.searches_on_gpu  # HNSW has no GPU version: searched on the CPU


def test_the_vector_store_hands_its_device_to_every_index(tmp_path) -> None:
    from clipsearch.vectors.store import VectorStore, load_index

    vecs, ids = unit_vectors(40, seed=5), np.arange(1, 41, dtype=np.int64)

    class Catalog:
        def version(self) -> int:
            return 3

        def all_embeddings(self, dim: int) -> tuple[int, np.ndarray, np.ndarray]:
            return 3, ids, vecs

    vs = VectorStore(tmp_path, Catalog(), DIM, device="cpu")  # type: ignore[arg-type]
    assert vs.current().device == "cpu"
    vs.save()
    assert VectorStore(tmp_path, Catalog(), DIM, device="cpu").current().device == "cpu"  # type: ignore[arg-type]
    loaded = load_index(vs.path, DIM, device="cuda:1")
    assert loaded is not None and loaded[0].device == "cuda:1"
