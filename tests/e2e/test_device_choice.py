"""The device a store is opened with, from the CLI on this CPU: the run and the new store record where the
embeddings were made (backend, device, precision), FAISS follows the device, and a device that is not cpu or
cuda is one clear line. The same checks on a GPU: tests/gpu/test_index_on_gpu.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import cli, cli_json

MODEL = "clipsearch-tiny"  # the shipped tiny config, seeded random weights: exports in seconds


@pytest.mark.parametrize(("backend", "expected"), [("onnx", ("onnx", "cpu", "int8")),
                                                   ("torch", ("torch", "cpu", "fp32"))])
def test_an_index_run_records_backend_device_and_precision(runner, photos: Path, tmp_path: Path, backend: str,
                                                           expected: tuple[str, str, str]) -> None:
    store = tmp_path / "index"
    run = cli_json(runner, "index", photos, "--index", store, "--model", MODEL, "--device", "cpu",
                   "--backend", backend)
    assert run["encoded"] > 0 and (run["backend"], run["device"], run["precision"]) == expected
    manifest = json.loads((store / "manifest.json").read_text())
    assert tuple(manifest["created_with"].values()) == expected and manifest["model"]["precision"] == expected[2]
    table = cli(runner, "index", photos, "--index", tmp_path / "other", "--model", MODEL, "--device", "cpu",
                "--backend", backend).stdout
    assert f"{expected[0]}, {expected[2]} on cpu" in " ".join(table.split())
    again = cli_json(runner, "index", photos, "--index", store)
    assert again["encoded"] == 0 and again["device"] == ""  # nothing encoded: no encoder loaded
    rebuilt = cli_json(runner, "reindex", "--vectors-only", "--index", store, "--device", "cpu")
    assert rebuilt["faiss_device"] == "cpu"


def test_a_device_that_is_not_cpu_or_cuda_is_one_clear_line(runner, photos: Path, tmp_path: Path) -> None:
    result = cli(runner, "index", photos, "--index", tmp_path / "index", "--model", MODEL, "--device", "tpu",
                 ok=False)
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert "tpu" in result.output and "cpu" in result.output
