"""Which GPU FAISS may use, and the GPU pieces of a search and of an IVF build.

The store's device decides for FAISS as it does for the encoder, but FAISS follows it only where it can: the
encoder's device is the requirement (a CUDA encoder beside the faiss-cpu build is a supported install), and FAISS
on the CPU returns the same ids, only slower.

- "cpu": FAISS stays on the CPU, also where the GPU build sees a GPU.
- "cuda" or "cuda:N": GPU N (0) when this faiss is the GPU build and sees that GPU, else the CPU.
- None (the default): GPU 0 when the GPU build sees one, else the CPU.

On the GPU, flat and IVF-Flat indexes are searched from a GPU copy (unfiltered searches; filtered ones use the
CPU index's id selectors), and an IVF or IVF-PQ build runs its k-means and the assignment of every vector to a
list on the GPU (`IndexIVF.clustering_index`, FAISS's documented way to train on a GPU and keep a CPU index).
IVF-PQ's small sub-quantizer k-means stay on the CPU; the saved index is always the CPU one.
"""

from __future__ import annotations

import threading
from typing import Any

from clipsearch.errors import ClipsearchError

_resources: dict[int, Any] = {}
_lock = threading.Lock()


def check_device(device: str | None) -> None:
    if device is not None and not device.startswith(("cpu", "cuda")):
        raise ClipsearchError(f"device {device!r} is not cpu or cuda", "pass cpu, cuda or cuda:N", param="device")


def gpu_number(device: str | None, faiss: Any) -> int | None:
    """The GPU FAISS uses for `device` (the rules in the module's docstring), or None for the CPU."""
    check_device(device)
    if device is not None and device.startswith("cpu"):
        return None
    if not hasattr(faiss, "StandardGpuResources"):  # the faiss-cpu build
        return None
    wanted = int(device.partition(":")[2] or 0) if device else 0
    return wanted if wanted < int(faiss.get_num_gpus()) else None


def resources(gpu: int, faiss: Any) -> Any:
    """One StandardGpuResources per GPU for the process (its scratch memory is reused by every index)."""
    with _lock:
        if gpu not in _resources:
            _resources[gpu] = faiss.StandardGpuResources()
        return _resources[gpu]


def search_copy(index: Any, gpu: int, faiss: Any) -> Any | None:
    """A GPU copy of a CPU index to search, or None when the GPU build cannot hold that type."""
    try:
        return faiss.index_cpu_to_gpu(resources(gpu, faiss), gpu, index)
    except (RuntimeError, AttributeError):
        return None


def flat_ip(dim: int, gpu: int, faiss: Any) -> Any:
    """An exact inner-product index on the GPU: the k-means assignment index of an IVF build."""
    config = faiss.GpuIndexFlatConfig()
    config.device = gpu
    return faiss.GpuIndexFlatIP(resources(gpu, faiss), dim, config)


def assignment_index(dim: int, device: str | None, faiss: Any) -> Any | None:
    """The GPU index an IVF build's k-means and list assignment use where `device` gives FAISS a GPU, else None
    (FAISS then trains and assigns with the CPU quantizer, as always)."""
    number = gpu_number(device, faiss)
    return None if number is None else flat_ip(dim, number, faiss)
