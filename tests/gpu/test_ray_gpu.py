"""Ray with one GPU actor: a local cluster offering 1 GPU runs one actor that holds it, and the store it fills
equals a local GPU run's (same ids, records and embeddings)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

import clipsearch
from tests.conftest import INDEX_PER_CLASS

MODEL = "clipsearch-tiny"  # the shipped tiny config, seeded weights: exports in seconds


def _contents(store_path: Path) -> dict[str, tuple]:
    with clipsearch.open(store_path) as store:
        _version, ids, vectors = store.catalog.all_embeddings(store.dim)
        records = store.catalog.images([int(i) for i in ids])
        return {records[int(i)].path: (int(i), v) for i, v in zip(ids, vectors, strict=True)}


def test_one_gpu_actor_fills_the_store_like_a_local_gpu_run(ray_module, shapes_source: Path, tmp_path: Path) -> None:
    from clipsearch.indexing.ray_pool import RayPool, short_temp_dir

    ray = ray_module
    extra = {"_temp_dir": short_temp_dir()} if short_temp_dir() else {}
    ray.init(num_cpus=4, num_gpus=1, include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False,
             **extra)
    try:
        pool = RayPool().for_device(None)
        actors, resources = pool._resources(ray)
        assert actors == 1 and resources["num_gpus"] == 1.0  # one actor, holding the GPU
        with clipsearch.open(tmp_path / "local", model=MODEL, device="cuda") as store:
            local = store.add([shapes_source])
            assert store.manifest["model"]["precision"] == "fp32"
        with clipsearch.open(tmp_path / "ray", model=MODEL) as store:
            remote = store.add([shapes_source], encode_pool=pool)
            assert store.manifest["model"]["precision"] == "fp32"  # the driver saw the GPU: the GPU default
    finally:
        ray.shutdown()
    assert remote.encoded == local.encoded == INDEX_PER_CLASS * 12 and remote.device == "ray"
    a, b = _contents(tmp_path / "local"), _contents(tmp_path / "ray")
    assert sorted(a) == sorted(b)
    for path, (local_id, local_vector) in a.items():
        ray_id, ray_vector = b[path]
        assert ray_id == local_id
        assert float(local_vector @ ray_vector) / np.linalg.norm(local_vector) / np.linalg.norm(ray_vector) >= 0.999
