"""A model's towers exported exactly as immich and rclip publish theirs, in a Hugging Face hub cache (torch needed).

immich (`immich-app/NAME`): config.json (open_clip's model config), visual/model.onnx ("image": float32 NCHW with a
fixed batch of one, normalised output), visual/preprocess_cfg.json, textual/model.onnx ("text": int32 ids of a
fixed [1, context] shape, padded with the pad token) and the Hugging Face CLIP tokenizer's files (tokenizer.json,
tokenizer_config.json, special_tokens_map.json, vocab.json, merges.txt) as `save_pretrained` writes them; plus an
fp16 variant folder that a download must skip. rclip (`yurijmikhalevich/rclip-models`):
ViT-B-32-256-datacomp_s34b_b86k/visual.onnx and textual.onnx ("input", dynamic batch, raw features; int64 ids
zero-padded) and tokenizer/bpe_simple_vocab_16e6.txt.gz at the root. The repository is laid out as the hub client
writes it (blobs by SHA-256, snapshots/<revision>/... linking to them, refs/main naming the revision).
"""

from __future__ import annotations

import gzip
import json
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

from tests.hub_cache import write_repo

RCLIP_REPO = "yurijmikhalevich/rclip-models"
RCLIP_SUB = "ViT-B-32-256-datacomp_s34b_b86k"


def _export(module: Any, args: tuple, path: Path, inputs: list[str], dynamic: bool) -> None:
    import torch

    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(module, args, str(path), dynamo=False, opset_version=17, input_names=inputs,
                              output_names=["embedding"],
                              dynamic_axes={inputs[0]: {0: "batch"}, "embedding": {0: "batch"}} if dynamic else None)
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)


def _towers(model: Any, normalize: bool) -> tuple[Any, Any]:
    import torch

    class Visual(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, image: torch.Tensor) -> torch.Tensor:
            return self.model.encode_image(image, normalize=normalize)

    class Textual(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, text: torch.Tensor) -> torch.Tensor:
            return self.model.encode_text(text, normalize=normalize)

    return Visual().eval(), Textual().eval()


def clip_bpe_files(folder: Path, context_length: int) -> None:
    """The Hugging Face CLIP tokenizer's files (what immich's repositories hold), made from open_clip's BPE."""
    from open_clip.tokenizer import bytes_to_unicode, default_bpe
    from transformers import CLIPTokenizerFast

    merges = gzip.open(default_bpe()).read().decode("utf-8").split("\n")[1:49152 - 256 - 2 + 1]
    vocab = list(bytes_to_unicode().values())
    vocab = vocab + [v + "</w>" for v in vocab] + ["".join(m.split()) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    tok = CLIPTokenizerFast(vocab={t: i for i, t in enumerate(vocab)}, merges=[tuple(m.split()) for m in merges],
                            model_max_length=context_length, pad_token="<|endoftext|>")
    tok.save_pretrained(str(folder))


def immich_files(encoder: Any, folder: Path) -> None:
    """`encoder`'s (a loaded open_clip model) towers in immich's layout under `folder`."""
    import torch

    from clipsearch.encoders.torch_encoder import model_config

    model = encoder.model.float().eval()
    cfg = model_config(encoder.spec.arch) if encoder.spec.kind != "folder" else encoder.spec.extra["model_cfg"]
    context = int(cfg["text_cfg"].get("context_length", 77))
    size = encoder.image_size
    (folder / "visual").mkdir(parents=True)
    (folder / "textual").mkdir()
    (folder / "config.json").write_text(json.dumps(cfg))
    (folder / "visual" / "preprocess_cfg.json").write_text(json.dumps({
        "size": [size, size], "mode": "RGB", "mean": list(encoder.mean), "std": list(encoder.std),
        "interpolation": "bicubic", "resize_mode": encoder.resize_mode, "fill_color": 0}))
    visual, textual = _towers(model, normalize=True)
    _export(visual, (torch.randn(1, 3, size, size),), folder / "visual" / "model.onnx", ["image"], dynamic=False)
    _export(textual, (torch.ones(1, context, dtype=torch.int32),), folder / "textual" / "model.onnx", ["text"],
            dynamic=False)
    clip_bpe_files(folder / "textual", context)
    (folder / "visual" / "fp16").mkdir()
    (folder / "visual" / "fp16" / "model.armnn").write_bytes(b"not for ONNX Runtime")  # never downloaded


def rclip_files(encoder: Any, folder: Path) -> None:
    """`encoder`'s towers in rclip's layout under `folder` (the repository's root)."""
    import torch
    from open_clip.tokenizer import default_bpe

    model = encoder.model.float().eval()
    context = int(model.positional_embedding.shape[0])
    sub = folder / RCLIP_SUB
    sub.mkdir(parents=True)
    visual, textual = _towers(model, normalize=False)
    size = encoder.image_size
    _export(visual, (torch.randn(2, 3, size, size),), sub / "visual.onnx", ["input"], dynamic=True)
    _export(textual, (torch.ones(2, context, dtype=torch.int64),), sub / "textual.onnx", ["input"], dynamic=True)
    (folder / "tokenizer").mkdir()
    shutil.copyfile(default_bpe(), folder / "tokenizer" / "bpe_simple_vocab_16e6.txt.gz")


def write_immich(cache: Path, encoder: Any, name: str, revision: str) -> Path:
    with tempfile.TemporaryDirectory() as tmp:
        immich_files(encoder, Path(tmp))
        return write_repo(cache, f"immich-app/{name}", Path(tmp), revision)


def write_rclip(cache: Path, encoder: Any, revision: str) -> Path:
    with tempfile.TemporaryDirectory() as tmp:
        rclip_files(encoder, Path(tmp))
        return write_repo(cache, RCLIP_REPO, Path(tmp), revision)


def hub_env(cache: Path) -> dict[str, str]:
    return {"HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
