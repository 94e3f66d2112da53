"""The ONNX Runtime image encoder: what indexing and image queries run once a model has been exported.

No torch, no open_clip: the export cache (written once per model by `onnx_export`, torch needed there)
holds the image tower as an ONNX graph that maps uint8 NHWC pixels to L2-normalised embeddings, the model's
description (what a store's manifest records) and the NumPy text tower. Loading is reading a JSON file and
creating one `InferenceSession`.

Cache layout, one folder per model (`ModelSpec.cache_key`: the key, and a model folder's manifest) under
`settings().cache_dir / "onnx"`:

    <sha256(key)[:24]>/meta.json         key, model description, export check (min cosine), opset, logit scale
                       image.onnx        fp32 image tower (preprocessing and normalisation inside)
                       image.int8.onnx   dynamic int8 quantisation of it (made on first use, no torch)
                       text_encoder/     the text tower: tokenizer, NumPy weights (`numpy_text`) and its ONNX
                                         graph (`onnx_text_tower`), fp32 + int8; shared by every store of the model
                       refused.json      instead of the above: why this model stays on torch
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from clipsearch.encoders.base import CPU_DEFAULT_PRECISION, PRECISIONS
from clipsearch.errors import ClipsearchError

if TYPE_CHECKING:  # pragma: no cover
    from clipsearch.encoders.model_spec import ModelSpec

EXPORT_FORMAT = 1
OPSET = 17
META_FILE = "meta.json"
FAILED_FILE = "refused.json"
IMAGE_FP32 = "image.onnx"
IMAGE_INT8 = "image.int8.onnx"
TEXT_DIR = "text_encoder"
# int8 quantises the matrix products (MatMul/Gemm: a ViT's attention and MLP); convolutions stay fp32
INT8_OPS = ["MatMul", "Gemm"]
_int8_lock = threading.Lock()


def export_root(cache_root: Path | None = None) -> Path:
    if cache_root is not None:
        return Path(cache_root)
    from clipsearch.config import settings

    return settings().cache_dir / "onnx"


def export_dir(key: str, cache_root: Path | None = None) -> Path:
    return export_root(cache_root) / hashlib.sha256(key.encode()).hexdigest()[:24]


@dataclass
class Export:
    """A verified export in the cache."""
    folder: Path
    meta: dict[str, Any]

    @property
    def model(self) -> dict[str, Any]:
        return self.meta["model"]

    @property
    def text_dir(self) -> Path | None:
        return self.folder / TEXT_DIR if self.meta.get("text_tower") else None

    @classmethod
    def at(cls, folder: Path) -> Export:
        export = _read_export(Path(folder))
        if export is None:
            raise ClipsearchError(f"the model export in {folder} is incomplete", "delete that folder and run again")
        return export

    def record(self, name: str, value: Any) -> Any:
        """Add `name` to meta.json (an older export learning a newer field); a read-only cache keeps it in memory."""
        from clipsearch.fsutil import atomic_write_text

        self.meta[name] = value
        try:
            atomic_write_text(self.folder / META_FILE, json.dumps(self.meta, indent=2))
        except OSError:
            pass
        return value

    def image_path(self, precision: str) -> Path:
        return self.folder / IMAGE_FP32 if precision == "fp32" else write_int8(self.folder)


def find_export(key: str, cache_root: Path | None = None) -> Export | None:
    """The cached export for a model key, if there is a complete one."""
    return _read_export(export_dir(key, cache_root), key)


def _read_export(folder: Path, key: str | None = None) -> Export | None:
    try:
        meta = json.loads((folder / META_FILE).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict) or meta.get("format") != EXPORT_FORMAT or (key and meta.get("key") != key) \
            or not isinstance(meta.get("model"), dict) or not (folder / IMAGE_FP32).is_file():
        return None
    return Export(folder, meta)


def refusal(key: str, cache_root: Path | None = None) -> str | None:
    """Why an earlier export of this model was refused (it then stays on torch), or None."""
    try:
        data = json.loads((export_dir(key, cache_root) / FAILED_FILE).read_text())
    except (OSError, ValueError):
        return None
    return str(data.get("reason", "unknown")) if isinstance(data, dict) and data.get("key") == key else None


def install_export(tmp: Path, folder: Path) -> None:
    """Move a finished export into place; a concurrent exporter that got there first wins."""
    try:
        os.replace(tmp, folder)  # fails when `folder` exists and is not empty
    except OSError:
        if (folder / META_FILE).is_file():
            shutil.rmtree(tmp, ignore_errors=True)
            return
        old = folder.with_name(folder.name + f".old{os.getpid()}")
        os.replace(folder, old)  # e.g. a folder holding only an older refusal
        os.replace(tmp, folder)
        shutil.rmtree(old, ignore_errors=True)
    (folder / FAILED_FILE).unlink(missing_ok=True)


def write_int8(folder: Path) -> Path:
    """Dynamic int8 quantisation of the fp32 image tower (weights int8 per channel, activations uint8 per
    batch), written beside it once; needs onnxruntime's quantisation tools (and onnx), not torch."""
    return quantize_once(folder / IMAGE_FP32, folder / IMAGE_INT8)


def quantize_once(source: Path, target: Path) -> Path:
    """`target`: the int8 copy of the graph `source` (MatMul/Gemm weights int8 per channel), made once and
    atomically (a temporary file renamed into place), so concurrent processes never read half a graph."""
    if target.is_file():
        return target
    with _int8_lock:
        if target.is_file():
            return target
        import logging

        from onnxruntime.quantization import QuantType, quantize_dynamic

        tmp = target.with_name(f"{target.stem}.tmp{os.getpid()}.onnx")
        logging.disable(logging.WARNING)  # the quantiser logs advice on pre-processing at INFO/WARNING
        try:
            quantize_dynamic(source, tmp, weight_type=QuantType.QInt8, per_channel=True,
                             op_types_to_quantize=INT8_OPS)
            os.replace(tmp, target)
        finally:
            logging.disable(logging.NOTSET)
            tmp.unlink(missing_ok=True)
    return target


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def cuda_runtime() -> bool:
    """Whether this onnxruntime can run on a GPU (the onnxruntime-gpu build)."""
    import onnxruntime as ort

    return "CUDAExecutionProvider" in ort.get_available_providers()


def gpu_present() -> bool:
    """An NVIDIA GPU is visible (checked without importing any GPU library)."""
    return os.path.exists("/dev/nvidiactl")


def unavailable(device: str | None, explicit: bool = False) -> str | None:
    """Why ONNX Runtime cannot serve `device` here (None when it can). By default (`explicit` False) a machine
    with a GPU but the CPU build of onnxruntime keeps torch, which can use the GPU."""
    import importlib.util

    if importlib.util.find_spec("onnxruntime") is None:
        return "onnxruntime is not installed"
    wants_gpu = device.startswith("cuda") if device else (not explicit and gpu_present())
    if wants_gpu and not cuda_runtime():
        return "this onnxruntime has no CUDA support (its GPU build is the package onnxruntime-gpu)"
    return None


def default_precision(device: str | None) -> str:
    """The precision of a new store's embeddings: CPU_DEFAULT_PRECISION on a CPU, fp32 on a GPU."""
    on_gpu = device.startswith("cuda") if device else (cuda_runtime() and gpu_present())
    return "fp32" if on_gpu else CPU_DEFAULT_PRECISION


def providers(device: str | None) -> list[Any]:
    """CUDA when asked for (or by default when the GPU build is installed), else the CPU."""
    if device is not None and not device.startswith(("cuda", "cpu")):
        raise ClipsearchError(f"device {device!r} is not cpu or cuda", "pass cpu or cuda", param="device")
    if (device.startswith("cuda") if device else gpu_present()) and cuda_runtime():
        index = int(device.partition(":")[2] or 0) if device else 0
        return [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"]
    if device is not None and device.startswith("cuda"):
        raise ClipsearchError("this onnxruntime has no CUDA support",
                              "install onnxruntime-gpu, or use the torch backend on the GPU", param="device")
    return ["CPUExecutionProvider"]


def session(path: Path, provider_list: list[Any], threads: int | None = None) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads or cores()
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # decoding threads share the cores: a spinning idle worker would take their time
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), sess_options=opts, providers=provider_list)


class OnnxImageEncoder:
    """The image tower in ONNX Runtime, with the torch `Encoder`'s interface for indexing and queries:
    image_size, resize_mode, embed_dim, default_batch_size, encode_images, encode_texts, describe()."""

    backend = "onnx"

    def __init__(self, spec: ModelSpec, export: Export, precision: str = "fp32", device: str | None = None,
                 threads: int | None = None) -> None:
        if precision not in PRECISIONS:
            raise ClipsearchError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}")
        desc = export.model
        self.spec = spec
        self.export = export
        self.precision = precision
        self.image_size = int(desc["image_size"])
        self.resize_mode = str(desc.get("resize_mode", "shortest"))
        self.embed_dim = int(desc["embed_dim"])
        self.mean = tuple(desc.get("mean", ()))
        self.std = tuple(desc.get("std", ()))
        plist = providers(device)
        self.on_gpu = plist[0] != "CPUExecutionProvider"
        self.session = session(export.image_path(precision), plist, threads)
        # a published export's graph (`published`) takes normalised float NCHW, some one image at a time
        graph_input = export.meta.get("input")
        self._float_input = graph_input if isinstance(graph_input, dict) else None
        self._device = device

    @property
    def default_batch_size(self) -> int:
        return 128 if self.on_gpu else 32

    @property
    def device_name(self) -> str:
        """"cuda:N" when the session runs on CUDAExecutionProvider, else "cpu"."""
        if not self.on_gpu:
            return "cpu"
        return f"cuda:{int(self._device.partition(':')[2] or 0) if self._device else 0}"

    def describe(self) -> dict[str, Any]:
        return {**self.export.model, "precision": self.precision}

    def encode_images(self, batch_uint8: np.ndarray) -> np.ndarray:
        if self._float_input is not None:
            return self._encode_float(batch_uint8, self._float_input)
        return self.session.run(None, {"pixels": np.ascontiguousarray(batch_uint8, dtype=np.uint8)})[0]

    def _encode_float(self, batch_uint8: np.ndarray, graph_input: dict[str, Any]) -> np.ndarray:
        """uint8 NHWC → (x/255 - mean)/std as NCHW in the graph's float type, in the graph's fixed batch size
        where it has one; L2-normalised (rclip's graph returns raw features)."""
        scale = 1.0 / (255.0 * np.asarray(self.std, np.float32))
        shift = np.asarray(self.mean, np.float32) / np.asarray(self.std, np.float32)
        x = (batch_uint8.astype(np.float32) * scale - shift).transpose(0, 3, 1, 2)
        x = np.ascontiguousarray(x, dtype=np.float16 if graph_input.get("dtype") == "float16" else np.float32)
        step = int(graph_input.get("batch") or 0) or max(len(x), 1)
        out = np.concatenate([np.asarray(self.session.run(None, {graph_input["name"]: x[i:i + step]})[0],
                                         dtype=np.float32).reshape(len(x[i:i + step]), -1)
                              for i in range(0, len(x), step)])
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
