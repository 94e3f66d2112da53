"""An index run end to end on the GPU, from the CLI: the run and the store record the device and precision, and
the store answers like one built on the CPU."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import cli_json


@pytest.mark.parametrize("backend", ["default", "torch"])
def test_index_and_query_on_the_gpu(runner, backend: str, trained_model: Path, shapes_source: Path,
                                    tmp_path: Path) -> None:
    from clipsearch.encoders import onnx_encoder

    chosen = [] if backend == "default" else ["--backend", backend]
    gpu_store, cpu_store = tmp_path / "gpu", tmp_path / "cpu"
    run = cli_json(runner, "index", shapes_source, "--index", gpu_store, "--model", trained_model,
                   "--device", "cuda", *chosen)
    expected_backend = "torch" if backend == "torch" or not onnx_encoder.cuda_runtime() else "onnx"
    assert run["encoded"] == run["added"] == 60 and run["failed"] == 0
    assert (run["backend"], run["device"], run["precision"]) == (expected_backend, "cuda:0", "fp32")
    manifest = json.loads((gpu_store / "manifest.json").read_text())
    assert manifest["created_with"] == {"backend": expected_backend, "device": "cuda:0", "precision": "fp32"}
    assert manifest["model"]["precision"] == "fp32"  # a GPU store keeps fp32 (int8 is the CPU's default)
    cli_json(runner, "index", shapes_source, "--index", cpu_store, "--model", trained_model, "--device", "cpu",
             "--fp32")
    for text in ("a red circle", "a blue square", "a green triangle"):
        on_gpu = cli_json(runner, "query", text, "--index", gpu_store, "--device", "cuda", "-k", "5")
        on_cpu = cli_json(runner, "query", text, "--index", cpu_store, "--device", "cpu", "-k", "5")
        assert {h["path"] for h in on_gpu} == {h["path"] for h in on_cpu}, text
    rebuilt = cli_json(runner, "reindex", "--vectors-only", "--index", gpu_store, "--device", "cuda")
    import faiss

    gpu_faiss = hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0
    assert rebuilt["faiss_device"] == ("cuda:0" if gpu_faiss else "cpu")
