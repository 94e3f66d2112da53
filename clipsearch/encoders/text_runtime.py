"""Which text tower embeds a model's query text, and the ONNX encoder that carries one beside its image tower.

A model's text tower lives once in the export cache (every store of the model shares it; an older store may
hold its own copy). Two runtimes read it: NumPy (no session to build: the cold CLI query) and ONNX Runtime
(~3x faster once loaded: a server or a library session). Both give torch's embedding to 1e-5, so the CLI and
the server rank alike whichever answers. torch is imported only to give an older tower its graph, once.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from clipsearch.encoders.onnx_encoder import OnnxImageEncoder
from clipsearch.errors import ClipsearchError

if TYPE_CHECKING:  # pragma: no cover
    from clipsearch.encoders.model_spec import ModelSpec


def _quiet(_message: str) -> None:
    pass


def _torch(spec: ModelSpec, device: str | None) -> Any:
    from clipsearch.encoders.torch_encoder import load_encoder

    return load_encoder(spec, device)


# --- the text tower --------------------------------------------------------------------------------------
TEXT_RUNTIMES = ("numpy", "onnx")
# Which runtime embeds query text, per kind of process (bench/text_tower.py measures both; README "The text
# tower"). Both give torch's embedding to 1e-5, so a CLI query and a server rank alike whichever runs.
COLD_TEXT_RUNTIME = "numpy"  # one query, then exit: no session to build, the weights are read as they are used
WARM_TEXT_RUNTIME = "onnx"  # a server or a library session: ONNX Runtime is ~3x faster a query once loaded
# the towers `onnx_text_export` makes a graph of (open_clip's CLIP text transformer; MiniLM and Chinese-CLIP's
# BERT); the multilingual Hugging Face towers ("hf") and published graphs ("onnx") load as NumpyTextEncoder.load says
GRAPH_FAMILIES = ("clip", "bert")


def text_tower_dir(spec: ModelSpec | None, key: str, store_copy: Path | None = None) -> Path | None:
    """The folder of model `key`'s text tower: the export cache's (`spec`'s, shared by every store of the model),
    else `store_copy` (a store written before the cache held it, which copied the tower into itself); None when
    neither holds this model's tower."""
    from clipsearch.encoders.numpy_text import stored_key
    from clipsearch.encoders.onnx_encoder import TEXT_DIR, export_dir

    candidates = [export_dir(spec.cache_key) / TEXT_DIR] if spec is not None else []
    candidates += [store_copy] if store_copy is not None else []
    return next((c for c in candidates if stored_key(c) == key), None)


def load_text_encoder(folder: Path, key: str, *, runtime: str | None = None, warm: bool = False,
                      threads: int | None = None, spec: ModelSpec | None = None,
                      stage: Callable[[str], None] = _quiet) -> Any:
    """The text encoder of model `key` from the text tower in `folder` (None when it holds another model's).

    `runtime`: "numpy" or "onnx"; None: CLIPSEARCH_TEXT_RUNTIME where set, else WARM_TEXT_RUNTIME for a `warm`
    process (a server) and COLD_TEXT_RUNTIME for another; where that runtime cannot run the tower, the other one
    answers (the same embeddings). ONNX Runtime needs the tower's graph: a tower exported before graphs were
    made gets one, once, where torch is installed and `spec` is given (a warm process only: a cold query never
    waits for torch). NumPy needs the tower's weights as arrays (a tower exported only as a graph has none)."""
    from clipsearch.config import settings
    from clipsearch.encoders import onnx_text_tower
    from clipsearch.encoders.numpy_text import NumpyTextEncoder

    wanted = runtime or settings().text_runtime or (WARM_TEXT_RUNTIME if warm else COLD_TEXT_RUNTIME)
    if wanted not in TEXT_RUNTIMES:
        raise ClipsearchError(f"text runtime must be one of {', '.join(TEXT_RUNTIMES)}, not {wanted!r}",
                              "set CLIPSEARCH_TEXT_RUNTIME to numpy or onnx, or unset it", param="text_runtime")
    for choice in (wanted, *(r for r in TEXT_RUNTIMES if r != wanted)):  # the other one where it cannot run
        if choice == "numpy":
            if _numpy_weights(folder):
                return NumpyTextEncoder.load(folder, key)
            continue
        import importlib.util

        if importlib.util.find_spec("onnxruntime") is None:
            continue
        if onnx_text_tower.read_record(folder, key) is None and warm and spec is not None \
                and _tower_config(folder).get("family", "clip") in GRAPH_FAMILIES:
            _add_text_graph(spec, folder, stage)
        encoder = onnx_text_tower.OnnxTextTower.load(folder, key, threads=threads)
        if encoder is not None:
            return encoder
    return NumpyTextEncoder.load(folder, key)  # what else it loads (None: nothing here is this model's)


def _tower_config(folder: Path) -> dict[str, Any]:
    import json

    try:
        config = json.loads((Path(folder) / "config.json").read_text())
    except (OSError, ValueError):
        return {}
    return config if isinstance(config, dict) else {}


def _numpy_weights(folder: Path) -> bool:
    """Whether the tower in `folder` has the NumPy runtime's weights (a tower made only as a graph has none)."""
    config = _tower_config(folder)
    return "blocks" in config or "layers" in config


def _add_text_graph(spec: ModelSpec, folder: Path, stage: Callable[[str], None]) -> None:
    """Give an existing text tower its ONNX graph (torch needed, once per model; a refusal is remembered)."""
    import importlib.util

    from clipsearch.encoders.onnx_text_tower import REFUSED

    if importlib.util.find_spec("torch") is None or (folder / REFUSED).exists():
        return
    from clipsearch.encoders.onnx_text_export import TextExportRefused, export_text_onnx

    try:
        model = _torch(spec, "cpu")
    except ClipsearchError:  # e.g. weights not cached offline: NumPy answers, the graph waits for another day
        return
    stage(f"exporting the text tower of {spec.text} to ONNX (once per model)")
    with contextlib.suppress(TextExportRefused):  # remembered in the folder; NumPy answers
        export_text_onnx(model, folder)


class OnnxEncoder(OnnxImageEncoder):
    """ONNX Runtime's image tower with the model's text tower beside it (the export's ONNX or NumPy tower, else
    the torch model's): a whole encoder for queries, classify and eval without torch once a model is exported.
    It lives here, not in onnx_encoder, because choosing the text tower is this module's job."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._text: Any = None

    def text_tower(self) -> Any:
        """The export's text tower (ONNX Runtime, else NumPy: `load_text_encoder`), else the torch model
        (loaded once, for its text tower)."""
        if self._text is None:
            folder = self.export.text_dir
            self._text = load_text_encoder(folder, self.spec.key, warm=True) if folder else None
            if self._text is None and self.spec.kind == "published":
                raise ClipsearchError(f"the text tower of {self.spec.text} in {folder} does not load",
                                      "delete that folder and run again")
            if self._text is None:
                from clipsearch.encoders.torch_encoder import load_encoder

                self._text = load_encoder(self.spec, self._device)
        return self._text

    def encode_texts(self, texts: Iterable[str], language: str | None = None) -> np.ndarray:
        """`language`: the texts' language code, for a tower told it (NLLB-CLIP); None: detected from each text."""
        if language is None:
            return self.text_tower().encode_texts(list(texts))
        return self.text_tower().encode_texts(list(texts), language=language)

    @property
    def logit_scale(self) -> float:
        """The temperature of the model's image-text logits (classify's probabilities), from the export's meta.
        An export from before meta.json kept it gets it from the torch model once, recorded there; a published
        export (no torch model behind it) uses 100, trained CLIP's (open_clip clamps the scale there)."""
        scale = self.export.meta.get("logit_scale")
        if scale is None and self.spec.kind == "published":
            return 100.0
        if scale is None:
            text = self._text if self._text is not None and hasattr(self._text, "model") else None
            if text is None:
                from clipsearch.encoders.torch_encoder import load_encoder

                text = load_encoder(self.spec, self._device)
            scale = self.export.record("logit_scale", text.logit_scale)
        return float(scale)
