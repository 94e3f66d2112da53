"""The one place an image encoder is chosen and loaded: spec + backend + precision (+ device) → encoder.

A store (for indexing and image queries) and a Ray actor (for encoding elsewhere) must load the same encoder
for the same request, so both come here. The rules:

- backend "onnx" or None (the default): ONNX Runtime from the export cache; a model with no export yet is
  exported once, with torch (`onnx_export`), and a refusal is cached. Where ONNX Runtime cannot serve the
  model (not installed, no CUDA build for a GPU, the export refused), an explicit "onnx" is an error and the
  default falls back to torch with a notice.
- backend "torch": PyTorch (open_clip), fp32.
- int8 runs only on ONNX Runtime. For embeddings that are stored (`stored`) asking torch for int8 is a clear
  error; a query vector (`stored=False`) may come from fp32 torch, which ranks an int8 store alike.

Nothing here prints or knows the store: stage and notice messages go to the callbacks the caller passes.
torch, onnxruntime and open_clip are imported only when they are needed.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

from clipsearch.errors import ClipsearchError

if TYPE_CHECKING:  # pragma: no cover
    from clipsearch.encoders.model_spec import ModelSpec
    from clipsearch.encoders.onnx_encoder import Export
    from clipsearch.encoders.text_runtime import OnnxEncoder
    from clipsearch.encoders.torch_encoder import Encoder

    LoadedEncoder: TypeAlias = "Encoder | OnnxEncoder"

BACKENDS = ("onnx", "torch")


def _quiet(_message: str) -> None:
    pass


def check_backend(backend: str | None) -> None:
    """Refuse a backend that is not one of BACKENDS (None: the default)."""
    if backend is not None and backend not in BACKENDS:
        raise ClipsearchError(f"backend must be one of {', '.join(BACKENDS)}, not {backend!r}",
                              "onnx runs ONNX Runtime (the default where the model exports), torch runs PyTorch",
                              param="backend")


def load_image_encoder(spec: ModelSpec, *, backend: str | None = None, precision: str | None = None,
                       device: str | None = None, stored: bool = True, threads: int | None = None,
                       export_dir: Path | None = None,
                       missing_export: Callable[[], ClipsearchError] | None = None,
                       stage: Callable[[str], None] = _quiet,
                       notice: Callable[[str], None] = _quiet) -> LoadedEncoder:
    """The image encoder for `spec` on `backend` at `precision` (fp32 | int8; None: the device's default).

    `stored`: the embeddings are kept (an index run), so the precision must be exactly the one asked for.
    `export_dir`: a second place to find the model's export (e.g. the driver's cache on a shared filesystem).
    `missing_export`: where no export may be made here (a Ray worker), the error for a model that has none.
    `stage` gets what is happening ("exporting ..."), `notice` what the user should know (a torch fallback).
    """
    check_backend(backend)
    if spec.kind == "published":
        return _published(spec, backend, precision, device, threads, export_dir, stage)
    if backend == "torch":
        if precision == "int8" and stored:
            raise ClipsearchError("int8 runs on the onnx backend", "index with backend onnx, or without int8",
                                  param="int8")
        return _torch(spec, device)  # a query vector in fp32 ranks an int8 store alike
    from clipsearch.encoders import onnx_encoder as ox

    export: Export | None = None
    torch_encoder: Encoder | None = None
    why_not = ox.unavailable(device, explicit=backend == "onnx")
    if why_not is None:
        export = _cached_export(spec.cache_key, export_dir)
        if export is None:
            why_not = ox.refusal(spec.cache_key)
            if why_not is None and missing_export is not None:
                raise missing_export()
            if why_not is None:
                from clipsearch.encoders.onnx_export import ExportRefused, export as export_model
                from clipsearch.encoders.torch_needed import require_torch

                require_torch(f"model {spec.text} has no ONNX export in this machine's cache; making one")
                torch_encoder = _torch(spec, device)
                stage(f"exporting {spec.text} to ONNX (once per model)")
                try:
                    export = ox.Export.at(export_model(torch_encoder))
                except ExportRefused as exc:
                    why_not = str(exc)
            if why_not is not None:
                why_not = f"model {spec.text} has no ONNX export: {why_not}"
    if export is None:
        if backend == "onnx":
            raise ClipsearchError(f"backend onnx cannot run {spec.text}: {why_not}", "use backend torch",
                                  param="backend")
        if precision == "int8" and stored:
            raise ClipsearchError(f"int8 runs on the onnx backend, and {why_not}", "index without int8",
                                  param="int8")
        notice(f"{why_not}; using torch")
        return torch_encoder or _torch(spec, device)
    from clipsearch.encoders.text_runtime import OnnxEncoder

    return OnnxEncoder(spec, export, precision or ox.default_precision(device), device, threads)


def _published(spec: ModelSpec, backend: str | None, precision: str | None, device: str | None,
               threads: int | None, export_dir: Path | None, stage: Callable[[str], None]) -> OnnxEncoder:
    """A published ONNX export (`published`): ONNX Runtime only; its export-cache entry made once, without torch."""
    from clipsearch.encoders import onnx_encoder as ox

    if backend == "torch":
        raise ClipsearchError(f"{spec.text} is a published ONNX export: it runs on the onnx backend",
                              "leave out backend torch", param="backend")
    why_not = ox.unavailable(device, explicit=True)
    if why_not is not None:
        raise ClipsearchError(f"{spec.text} runs on ONNX Runtime, and {why_not}",
                              'install clipsearch[cpu] (or [gpu] for onnxruntime-gpu)', param="backend")
    export = _cached_export(spec.cache_key, export_dir)
    if export is None:
        from clipsearch.encoders.published import install

        stage(f"setting up {spec.text} (once per model)")
        export = install(spec)
    from clipsearch.encoders.text_runtime import OnnxEncoder

    return OnnxEncoder(spec, export, precision or ox.default_precision(device), device, threads)


def _torch(spec: ModelSpec, device: str | None) -> Encoder:
    from clipsearch.encoders.torch_encoder import load_encoder

    return load_encoder(spec, device)


def _cached_export(key: str, export_dir: Path | None) -> Export | None:
    """The export for `key` in this machine's cache, else in `export_dir` when that holds this model's."""
    from clipsearch.encoders import onnx_encoder as ox

    export = ox.find_export(key)
    if export is None and export_dir is not None and os.path.isdir(export_dir):
        candidate = ox.Export.at(Path(export_dir))
        export = candidate if candidate.meta.get("key") == key else None
    return export
