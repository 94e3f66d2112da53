"""A tiny Chinese-CLIP where a download would leave the real one: a Hugging Face hub cache.

The repository `OFA-Sys/chinese-clip-vit-base-patch16` is laid out as the hub client writes it (blobs named by
their SHA-256, snapshots/<revision>/<file> linking to them, refs/main naming the revision), holding a
ChineseCLIPModel of the real architecture at toy sizes (2 layers, width 32, 32-pixel images), the real Chinese
WordPiece vocabulary (from the cn_clip wheel) and an image processor config. Loading it goes through the same
code as the published model (transformers' from_pretrained with the hub offline).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from tests import hub_cache

REPO = "OFA-Sys/chinese-clip-vit-base-patch16"
SPEC = "chinese-clip:ViT-B-16"
IMAGE_SIZE = 32
COLORS_ZH = {"red": "红色", "green": "绿色", "blue": "蓝色", "yellow": "黄色"}
SHAPES_ZH = {"circle": "圆形", "square": "正方形", "triangle": "三角形"}
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]


def caption_zh(color: str, shape: str) -> str:
    """('red', 'circle') → '红色的圆形'."""
    return f"{COLORS_ZH[color]}的{SHAPES_ZH[shape]}"


def cn_clip_vocab() -> Path:
    """The Chinese-CLIP vocabulary shipped in the cn_clip wheel (found without importing cn_clip)."""
    spec = importlib.util.find_spec("cn_clip")
    assert spec is not None and spec.submodule_search_locations, "pip install cn-clip (the test extra)"
    vocab = Path(list(spec.submodule_search_locations)[0]) / "clip" / "vocab.txt"
    assert vocab.is_file(), vocab
    return vocab


def tiny_model(seed: int = 0) -> Any:
    import torch
    from transformers import ChineseCLIPConfig, ChineseCLIPModel

    config = ChineseCLIPConfig(
        text_config={"vocab_size": 21128, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
                     "intermediate_size": 64, "max_position_embeddings": 64, "hidden_act": "gelu"},
        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
                       "image_size": IMAGE_SIZE, "patch_size": 8, "projection_dim": 32},
        projection_dim=32)
    torch.manual_seed(seed)
    return ChineseCLIPModel(config).eval()


def write_repo(cache: Path, model: Any, revision: str) -> Path:
    """Write `model` with the tokenizer and processor files as `REPO` at `revision` (refs/main → it)."""
    with tempfile.TemporaryDirectory() as tmp:
        files = Path(tmp)
        model.save_pretrained(str(files))
        shutil.copyfile(cn_clip_vocab(), files / "vocab.txt")  # the files OFA-Sys publish for the tokenizer
        (files / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "BertTokenizer",
                                                                 "do_lower_case": True, "model_max_length": 52}))
        (files / "special_tokens_map.json").write_text(json.dumps({
            "unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]", "cls_token": "[CLS]",
            "mask_token": "[MASK]"}))
        (files / "preprocessor_config.json").write_text(json.dumps({
            "image_processor_type": "ChineseCLIPImageProcessor", "do_resize": True,
            "size": {"height": IMAGE_SIZE, "width": IMAGE_SIZE}, "do_center_crop": True,
            "crop_size": {"height": IMAGE_SIZE, "width": IMAGE_SIZE}, "resample": 3, "do_normalize": True,
            "image_mean": CLIP_MEAN, "image_std": CLIP_STD, "do_convert_rgb": True}))
        return hub_cache.write_repo(cache, REPO, files, revision)


def hub_env(cache: Path) -> dict[str, str]:
    """The environment a subprocess needs to see this cache, offline."""
    return {**os.environ, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}


def use_cache(monkeypatch: Any, cache: Path) -> None:
    """Point this process (huggingface_hub reads its constants at call time) and its children at `cache`."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def chinese_class_folders(data: Path, source: Path) -> Path:
    """`source`'s colour_shape_*.png copied into one folder per Chinese class name (红色的圆形/…), for eval and
    classify with Chinese classes."""
    import shutil as _shutil

    for src in sorted(source.glob("*.png")):
        color, shape = src.stem.split("_")[:2]
        target = data / caption_zh(color, shape)
        target.mkdir(parents=True, exist_ok=True)
        _shutil.copyfile(src, target / src.name)
    return data


def red_photos_with_a_copy(photos: Path, source: Path) -> Path:
    """Six of `source`'s red shapes in `photos`, plus `copy.png`: a byte-for-byte copy of red_circle_000.png
    (the one duplicate a dupes run must find whatever the model)."""
    import shutil as _shutil

    photos.mkdir()
    for src in sorted(source.glob("red_*.png"))[:6]:
        _shutil.copyfile(src, photos / src.name)
    _shutil.copyfile(photos / "red_circle_000.png", photos / "copy.png")
    return photos
