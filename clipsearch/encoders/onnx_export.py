"""Export a model's image tower to ONNX, once, into the export cache (torch needed here only).

The graph takes what the decoders make — a batch of uint8 NHWC pixels at the model's input size — and
returns L2-normalised embeddings: the float conversion, the mean/std normalisation, the NCHW transpose and
the final normalisation are inside it, so running the model is a single `session.run` (see
`onnx_encoder.OnnxImageEncoder`). The export is checked against torch on a few inputs before it is kept
(cosine >= `MIN_COSINE` on every row, at two batch sizes); a model that does not export, or exports to
something that disagrees, is refused, and the reason is cached so that the next run goes to torch at once.

The text tower goes into the same cache folder as NumPy arrays (`text_export`), so that a new store gets
its torch-free text tower by a copy, without loading the torch model.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from clipsearch.encoders.onnx_encoder import (
    EXPORT_FORMAT,
    FAILED_FILE,
    IMAGE_FP32,
    META_FILE,
    OPSET,
    TEXT_DIR,
    export_dir,
    install_export,
)
from clipsearch.fsutil import atomic_write_text

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from clipsearch.encoders.torch_encoder import Encoder

MIN_COSINE = 0.99999
VERIFY_BATCHES = (3, 1)  # a batch of 3 and a single image: the batch axis is dynamic


class ExportRefused(Exception):
    """The model cannot be exported, or its export disagrees with torch; the message says why."""


def _image_graph(encoder: Encoder) -> torch.nn.Module:
    import torch

    class ImageGraph(torch.nn.Module):
        mean: torch.Tensor
        std: torch.Tensor
        model: Any
        """uint8 NHWC → normalised NCHW → image tower → L2-normalised embedding."""

        def __init__(self, model: torch.nn.Module, mean: tuple, std: tuple) -> None:
            super().__init__()
            self.model = model
            # (x/255 - mean)/std == (x - 255·mean)/(255·std): one subtraction and one division on the batch
            self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1) * 255.0)
            self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1) * 255.0)

        def forward(self, pixels: torch.Tensor) -> torch.Tensor:
            x = (pixels.permute(0, 3, 1, 2).float() - self.mean) / self.std
            feats = self.model.encode_image(x).float()
            return feats / feats.norm(dim=-1, keepdim=True).clamp_min(1e-12)

    return ImageGraph(encoder.model, encoder.mean, encoder.std).eval()


def probe_pixels(size: int, n: int, seed: int = 0) -> np.ndarray:
    """Deterministic test inputs: a smooth colour ramp, then noise over it (real images lie between)."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 255, size, dtype=np.float32)
    out = []
    for i in range(n):
        base = np.stack([ramp[None, :].repeat(size, 0), ramp[:, None].repeat(size, 1),
                         np.full((size, size), 40.0 * (i + 1), np.float32)], axis=-1)
        noise = rng.normal(0, 12.0 * i, base.shape) if i else 0.0
        out.append(np.clip(base + noise, 0, 255).astype(np.uint8))
    return np.stack(out)


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(axis=1)


def _export_image(encoder: Encoder, path: Path) -> None:
    import torch

    graph = _image_graph(encoder).to("cpu")
    dummy = torch.from_numpy(probe_pixels(encoder.image_size, 2))
    fastpath = torch.backends.mha.get_fastpath_enabled()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer and exporter warnings about shapes the graph keeps dynamic
        torch.backends.mha.set_fastpath_enabled(False)  # the fused attention kernel has no ONNX form
        try:
            torch.onnx.export(graph, (dummy,), str(path), dynamo=False, opset_version=OPSET,
                              input_names=["pixels"], output_names=["embedding"],
                              dynamic_axes={"pixels": {0: "batch"}, "embedding": {0: "batch"}},
                              do_constant_folding=True, verbose=False)
        finally:
            torch.backends.mha.set_fastpath_enabled(fastpath)


def verify(encoder: Encoder, path: Path) -> float:
    """The lowest cosine between torch and ONNX Runtime embeddings over the probe inputs."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    worst = 1.0
    for n in VERIFY_BATCHES:
        pixels = probe_pixels(encoder.image_size, n, seed=n)
        ref = encoder.encode_images(pixels)
        got = sess.run(None, {"pixels": pixels})[0]
        if got.shape != ref.shape:
            raise ExportRefused(f"ONNX output shape {got.shape} != torch {ref.shape}")
        worst = min(worst, float(_cosines(ref, got).min()))
    return worst


def export(encoder: Encoder, cache_root: Path | None = None) -> Path:
    """Export `encoder` (a loaded torch model) into its cache folder; returns the folder.

    Raises ExportRefused (and records why, so later runs do not retry) when the model cannot be exported or
    the export disagrees with torch. A CPU copy of the model is exported; a CUDA encoder is left as it is.
    """
    import torch

    from clipsearch.encoders.text_export import export_text_tower
    from clipsearch.encoders.torch_encoder import cpu_encoder

    folder = export_dir(encoder.spec.cache_key, cache_root)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.with_name(f"{folder.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        encoder = cpu_encoder(encoder)  # export and verify on the CPU, in fp32: the graph is device-neutral
        try:
            _export_image(encoder, tmp / IMAGE_FP32)
        except Exception as exc:  # any exporter failure means: this model stays on torch
            first = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
            raise ExportRefused(f"the exporter failed: {first}") from exc
        cosine = verify(encoder, tmp / IMAGE_FP32)
        if cosine < MIN_COSINE:
            raise ExportRefused(f"ONNX and torch embeddings differ (cosine {cosine:.6f} < {MIN_COSINE})")
        text = export_text_tower(encoder, tmp / TEXT_DIR)
        text_graph = add_text_graph(encoder, tmp / TEXT_DIR) if text else "no text tower"
        meta = {"format": EXPORT_FORMAT, "key": encoder.spec.cache_key, "model": _description(encoder),
                "opset": OPSET, "min_cosine": cosine, "text_tower": text, "text_onnx": text_graph,
                "logit_scale": encoder.logit_scale,
                "torch": torch.__version__,
                "exported_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
        atomic_write_text(tmp / META_FILE, json.dumps(meta, indent=2))
    except ExportRefused as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        _record_refusal(folder, encoder.spec.cache_key, str(exc))
        raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    install_export(tmp, folder)
    return folder


def add_text_graph(encoder: Encoder, text_dir: Path) -> str:
    """The text tower's ONNX graph into `text_dir` (`onnx_text_export`): "ok", or why it was refused (the text
    then stays on NumPy)."""
    from clipsearch.encoders.onnx_text_export import TextExportRefused, export_text_onnx

    try:
        export_text_onnx(encoder, text_dir)
    except TextExportRefused as exc:
        return str(exc)
    return "ok"


def _description(encoder: Encoder) -> dict[str, Any]:
    desc = encoder.describe()
    desc.pop("precision", None)  # the export serves both precisions; the runtime says which it runs
    return desc


def _record_refusal(folder: Path, key: str, reason: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / FAILED_FILE, json.dumps({"key": key, "reason": reason}))

