"""GPU tests (marker `gpu`): they run where torch sees a CUDA GPU and are skipped elsewhere, with the reason.

This is the one place that decides: every test under tests/gpu gets the `gpu` marker and, without CUDA, a skip
saying why. A test that needs more than CUDA (onnxruntime-gpu, faiss-gpu, Ray) asks for the fixture below that
checks it, so its skip names the missing package. `scripts/gpu-check.sh` installs all of them and runs
`pytest -m gpu`.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

HERE = Path(__file__).parent


def cuda_missing() -> str | None:
    """Why these tests cannot run here (None: torch sees a CUDA GPU)."""
    if importlib.util.find_spec("torch") is None:
        return "no CUDA: torch is not installed (install clipsearch[torch] on a GPU machine)"
    import torch

    if not torch.cuda.is_available():
        return "no CUDA GPU on this machine (torch.cuda.is_available() is False); run scripts/gpu-check.sh on one"
    return None


@pytest.hookimpl(tryfirst=True)  # before `-m gpu` selects by the marker added here
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    why = cuda_missing()
    for item in items:
        if Path(item.path).is_relative_to(HERE):
            item.add_marker(pytest.mark.gpu)
            if why is not None:
                item.add_marker(pytest.mark.skip(reason=why))


@pytest.fixture(scope="session")
def ort_cuda() -> None:
    """onnxruntime with CUDAExecutionProvider (the onnxruntime-gpu package)."""
    from clipsearch.encoders import onnx_encoder

    if importlib.util.find_spec("onnxruntime") is None or not onnx_encoder.cuda_runtime():
        pytest.skip("this onnxruntime has no CUDAExecutionProvider (install onnxruntime-gpu: clipsearch[gpu])")


@pytest.fixture(scope="session")
def faiss_gpu() -> None:
    """The faiss GPU build, seeing a GPU."""
    import faiss

    if not hasattr(faiss, "StandardGpuResources") or faiss.get_num_gpus() < 1:
        pytest.skip("this faiss is not the GPU build or sees no GPU (install faiss-gpu: clipsearch[gpu])")


@pytest.fixture(scope="session")
def ray_module():
    """Ray, when installed (clipsearch[ray])."""
    return pytest.importorskip("ray", reason="Ray is not installed (clipsearch[ray])")
