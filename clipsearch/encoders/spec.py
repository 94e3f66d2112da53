"""Model specs, parsed and identified without torch: what a store records and compares.

Spec syntax, in the order it is tried:
  * a folder holding ``clipsearch-model.json`` (written by ``finetune`` or :func:`save_model_folder`);
  * ``ARCH:TAG`` – an open_clip architecture with a pretrained tag (downloaded by open_clip on first use)
    or with a checkpoint file path in place of the tag;
  * ``ARCH`` – the architecture with random weights (seeded, so every process builds the same model);
    useful for benchmarks and for the tiny configs this package ships;
  * ``chinese-clip:ARCH`` (ViT-B-16, ViT-L-14, ViT-L-14-336, ViT-H-14) or its Hugging Face id
    (``OFA-Sys/chinese-clip-vit-base-patch16``) – Chinese-CLIP from the hub's cache (`chinese_clip`);
  * ``immich:NAME`` / ``rclip:ViT-B-32-256`` (pinned as ``…@REVISION``), or a folder in immich's or rclip's layout
    – a published ONNX export, run on ONNX Runtime without torch (`published`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from clipsearch.encoders import offline_model
from clipsearch.encoders.model_spec import ModelSpec, file_fingerprint
from clipsearch.errors import ModelUnavailableError

DEFAULT_MODEL = "ViT-B-32:laion2b_s34b_b79k"
DEFAULT_MODEL_HF_HUB = "laion/CLIP-ViT-B-32-laion2B-s34B-b79K/"  # open_clip's pretrained cfg for DEFAULT_MODEL
FOLDER_MANIFEST = "clipsearch-model.json"
FOLDER_WEIGHTS = "weights.pt"
SHIPPED_CONFIG_DIR = Path(__file__).parent / "model_configs"
RANDOM_INIT_SEED = 0


def shipped_configs() -> list[str]:
    return sorted(p.stem for p in SHIPPED_CONFIG_DIR.glob("*.json"))


def parse_spec(text: str) -> ModelSpec:
    """Parse without importing torch; raises ModelUnavailableError with a hint for bad specs."""
    text = text.strip()
    if not text:
        raise ModelUnavailableError("empty model name", "see `clipsearch models` for the choices")
    if text == offline_model.NAME:
        return ModelSpec(text=text, kind="offline", arch=text, key=offline_model.KEY)
    chinese = _chinese_clip(text)
    if chinese is not None:
        return chinese
    from clipsearch.encoders import published

    hub = published.parse_hub(text)
    if hub is not None:
        return hub
    as_path = Path(text).expanduser()
    if as_path.is_dir():
        manifest_path = as_path / FOLDER_MANIFEST
        layout = None if manifest_path.is_file() else published.folder_layout(as_path)
        if layout is not None:
            return published.parse_folder(as_path, layout)
        if not manifest_path.is_file():
            raise ModelUnavailableError(
                f"{text} is a folder but not a clipsearch model (no {FOLDER_MANIFEST})",
                "pass a folder written by `clipsearch finetune` or one in immich's or rclip's ONNX layout, or "
                "ARCH:CHECKPOINT for a raw open_clip checkpoint",
            )
        try:
            meta = json.loads(manifest_path.read_text())
        except (OSError, ValueError) as exc:
            raise ModelUnavailableError(f"cannot read {manifest_path}: {exc}") from exc
        return ModelSpec(
            text=str(as_path.resolve()),
            kind="folder",
            arch=meta.get("arch", "custom"),
            folder=as_path.resolve(),
            key=f"folder:{meta.get('weights_sha256', '?')[:16]}",
            extra=meta,
        )
    if os.sep in text.partition(":")[0] or text.startswith((".", "~")):
        raise ModelUnavailableError(f"model folder not found: {text}",
                                    "pass an existing folder written by `clipsearch finetune`, or ARCH:TAG")
    arch, _sep, given_tag = text.partition(":")
    if not arch:
        raise ModelUnavailableError(f"bad model spec {text!r}", "use ARCH:TAG, e.g. ViT-B-32:laion2b_s34b_b79k")
    tag = given_tag or None
    if tag is not None and (os.sep in tag or Path(tag).expanduser().is_file()):
        ckpt = Path(tag).expanduser()
        if not ckpt.is_file():
            raise ModelUnavailableError(f"checkpoint file not found: {tag}")
        return ModelSpec(text=f"{arch}:{ckpt.resolve()}", kind="open_clip", arch=arch, pretrained=str(ckpt.resolve()),
                         key=f"{arch}:file:{file_fingerprint(ckpt)}")
    return ModelSpec(text=text, kind="open_clip", arch=arch, pretrained=tag, key=f"{arch}:{tag or 'random'}")


def is_untrained(spec: ModelSpec) -> bool:
    """An architecture with random weights (a shipped config without a checkpoint): its scores are chance."""
    return spec.kind == "open_clip" and spec.pretrained is None


def _chinese_clip(text: str) -> ModelSpec | None:
    """`chinese-clip:ARCH` or a Chinese-CLIP repository id → its spec (the text is canonical: chinese-clip:ARCH);
    None for any other text."""
    from clipsearch.encoders import chinese_clip as cc

    family, sep, arch = text.partition(":")
    if sep and family == cc.FAMILY:
        if arch in cc.CN_CLIP_ONLY:
            raise ModelUnavailableError(f"{text}: {cc.CN_CLIP_ONLY[arch]}",
                                        f"use one of {', '.join(f'{cc.FAMILY}:{a}' for a in cc.REPOS)}")
        if arch not in cc.REPOS:
            raise ModelUnavailableError(f"unknown Chinese-CLIP architecture {arch!r}",
                                        f"use one of {', '.join(f'{cc.FAMILY}:{a}' for a in cc.REPOS)}")
    else:
        found = cc.arch_of(text)
        if found is None:
            return None
        arch = found
    repo = cc.REPOS[arch]
    return ModelSpec(text=f"{cc.FAMILY}:{arch}", kind="chinese_clip", arch=arch, pretrained=repo,
                     key=f"{cc.FAMILY}:{repo}")


@dataclass(frozen=True)
class ModelNotice:
    """Which model a command fell back to, and the model to switch to later (a front end says how)."""
    message: str
    switch_to: str

    def __str__(self) -> str:
        return f"{self.message} Switch later by re-embedding with {self.switch_to}."


def choose_default_model() -> tuple[str, ModelNotice | None]:
    """CLIP when its weights are cached or downloadable, else the offline model (with a one-line notice)."""
    from clipsearch.encoders.weights import hub_reachable, weights_cached

    if weights_cached({"hf_hub": DEFAULT_MODEL_HF_HUB}) or hub_reachable():
        return DEFAULT_MODEL, None
    return offline_model.NAME, ModelNotice(
        f"{DEFAULT_MODEL} is not cached and the model hub is unreachable: using the offline model "
        f"{offline_model.NAME}.", DEFAULT_MODEL)
