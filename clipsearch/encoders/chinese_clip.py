"""Chinese-CLIP (OFA-Sys) through `transformers`' ChineseCLIPModel, loaded from the Hugging Face hub's cache.

Why transformers and not the `cn_clip` package: OFA-Sys publish the ViT models on the hub in transformers'
format (`OFA-Sys/chinese-clip-vit-base-patch16`, ...: config, weights, the BERT WordPiece vocabulary and the
image processor's settings), and `ChineseCLIPModel` loads them as published, with the hub's cache,
offline mode and revisions, like every other hub model clipsearch loads. `cn_clip` downloads its own
checkpoints from its own URLs and needs lmdb, six and tqdm at import; it adds RN50 (not on the hub in
transformers' format, so not offered here). Its wheel ships the same Chinese vocabulary (21128 WordPieces),
which the tests use to build a tokenizer offline.

The towers as CLIP sees them (checked against transformers' `get_image_features` / `get_text_features`):
  * image: ViT, pooled CLS → `visual_projection`; preprocessing squashes to the square input (the image
    processor resizes to height × width, then centre-crops the same size), bicubic, CLIP's mean and std;
  * text: a Chinese RoBERTa-wwm (BERT) over WordPiece tokens ([CLS] text [SEP], context length 52), the CLS
    token's last hidden state → `text_projection`.

`ChineseClip` wraps the model in open_clip's interface (encode_image, encode_text, logit_scale), so the
encoder, the ONNX export, the NumPy text tower and the fine-tune treat it like any CLIP model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clipsearch.errors import ModelUnavailableError

if TYPE_CHECKING:  # pragma: no cover
    import torch

FAMILY = "chinese-clip"
CONTEXT_LENGTH = 52
# ARCH → the Hugging Face repository OFA-Sys publish it in (transformers' format)
REPOS = {
    "ViT-B-16": "OFA-Sys/chinese-clip-vit-base-patch16",
    "ViT-L-14": "OFA-Sys/chinese-clip-vit-large-patch14",
    "ViT-L-14-336": "OFA-Sys/chinese-clip-vit-large-patch14-336px",
    "ViT-H-14": "OFA-Sys/chinese-clip-vit-huge-patch14",
}
CN_CLIP_ONLY = {"RN50": "OFA-Sys publish Chinese-CLIP RN50 only as a cn_clip checkpoint, not in transformers' format"}
TOKENIZER_DIR = "tokenizer"  # inside a model folder: the vocabulary travels with a fine-tune


def arch_of(repo: str) -> str | None:
    """The ARCH whose repository is `repo` (None for another repository)."""
    return next((arch for arch, r in REPOS.items() if r.lower() == repo.lower()), None)


def _model_class() -> Any:
    import torch
    from torch import nn

    class ChineseClip(nn.Module):
        """transformers' ChineseCLIPModel with open_clip's interface (see the module docstring)."""

        clip: Any  # ChineseCLIPModel: its towers are reached by name

        def __init__(self, clip: Any, pad_id: int = 0) -> None:
            super().__init__()
            self.clip = clip
            self.pad_id = pad_id
            self.embed_dim = int(clip.config.projection_dim)

        @property
        def logit_scale(self) -> torch.Tensor:
            return self.clip.logit_scale

        def encode_image(self, x: torch.Tensor, normalize: bool = False) -> torch.Tensor:
            pooled = self.clip.vision_model(pixel_values=x).pooler_output
            feats = self.clip.visual_projection(pooled)
            return nn.functional.normalize(feats, dim=-1) if normalize else feats

        def encode_text(self, tokens: torch.Tensor, normalize: bool = False) -> torch.Tensor:
            mask = (tokens != self.pad_id).long()
            hidden = self.clip.text_model(input_ids=tokens, attention_mask=mask,
                                          token_type_ids=torch.zeros_like(tokens)).last_hidden_state
            feats = self.clip.text_projection(hidden[:, 0, :])
            return nn.functional.normalize(feats, dim=-1) if normalize else feats

        def image_parameter_names(self) -> set[str]:
            return {n for n, _ in self.named_parameters() if n.startswith(("clip.vision_model.", "clip.visual_"))}

        def layer_groups(self, side: str) -> list[list[nn.Parameter]]:
            """Trainable units from input to output, for `unlocked_layers`."""
            if side == "text":
                t = self.clip.text_model
                return ([list(t.embeddings.parameters())] + [list(layer.parameters()) for layer in t.encoder.layer]
                        + [list(self.clip.text_projection.parameters())])
            v = self.clip.vision_model
            return ([list(v.embeddings.parameters()) + list(v.pre_layrnorm.parameters())]
                    + [list(layer.parameters()) for layer in v.encoder.layers]
                    + [list(v.post_layernorm.parameters()) + list(self.clip.visual_projection.parameters())])

        def checkpoint_blocks(self) -> dict[str, list[nn.Module]]:
            return {"image": list(self.clip.vision_model.encoder.layers),
                    "text": list(self.clip.text_model.encoder.layer)}

    return ChineseClip


class WordPieceTokenizer:
    """open_clip-style tokenizer: texts → LongTensor (n, 52) of WordPiece ids, [CLS] … [SEP], 0-padded."""

    def __init__(self, tok: Any, context_length: int = CONTEXT_LENGTH) -> None:
        self.tok = tok  # transformers' fast BERT tokenizer: its backend is the `tokenizers` WordPiece
        self.context_length = context_length

    def __call__(self, texts: Any, context_length: int | None = None) -> torch.Tensor:
        texts = [texts] if isinstance(texts, str) else list(texts)
        enc = self.tok(texts, padding="max_length", truncation=True, max_length=context_length or self.context_length,
                       return_tensors="pt")
        return enc["input_ids"]

    def save(self, folder: Path) -> None:
        self.tok.save_pretrained(str(folder))


def _quiet() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def _tokenizer(source: str | Path, local_only: bool) -> WordPieceTokenizer:
    from transformers import AutoTokenizer

    # the fast tokenizer: its backend is a `tokenizers` WordPiece, which the NumPy text tower saves and runs
    return WordPieceTokenizer(AutoTokenizer.from_pretrained(str(source), local_files_only=local_only, use_fast=True))


def preprocess_cfg(processor_config: dict[str, Any]) -> dict[str, Any]:
    """The image processor's settings as the encoder's preprocessing (a squash to the square input)."""
    size = processor_config.get("crop_size") or processor_config.get("size") or {"height": 224}
    side = int(size.get("height") or size.get("shortest_edge") or 224) if isinstance(size, dict) else int(size)
    return {"size": side, "mean": list(processor_config.get("image_mean", (0.48145466, 0.4578275, 0.40821073))),
            "std": list(processor_config.get("image_std", (0.26862954, 0.26130258, 0.27577711))),
            "resize_mode": "squash", "interpolation": "bicubic"}


def load(repo: str) -> tuple[Any, WordPieceTokenizer, dict[str, Any]]:
    """The model of `repo` from the hub's cache (or downloaded once, when the hub is reachable)."""
    from huggingface_hub import try_to_load_from_cache

    from clipsearch.encoders.weights import hub_offline, hub_reachable, quiet_logs

    cached = isinstance(try_to_load_from_cache(repo, "config.json"), str)
    if not cached and not hub_reachable():
        raise ModelUnavailableError(
            f"cannot get weights for {repo}: they are not in the Hugging Face cache and the hub is unreachable",
            "connect once so they download into the cache, or copy a cache that holds them (HF_HUB_CACHE)")
    from transformers import ChineseCLIPModel

    _quiet()
    try:
        with quiet_logs(), hub_offline(cached):
            model = ChineseCLIPModel.from_pretrained(repo, local_files_only=cached)
            tokenizer = _tokenizer(repo, cached)
            processor = try_to_load_from_cache(repo, "preprocessor_config.json")
            pp = json.loads(Path(processor).read_text()) if isinstance(processor, str) else {}
    except (OSError, ValueError, RuntimeError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModelUnavailableError(f"cannot load {repo}: {msg[:200]}",
                                    "check the network, or the repository's files in the Hugging Face cache") from exc
    return _model_class()(model), tokenizer, preprocess_cfg(pp)


def model_cfg(model: Any, repo: str) -> dict[str, Any]:
    """What a model folder records to rebuild the architecture without the hub."""
    return {"family": FAMILY, "repo": repo, "hf_config": model.clip.config.to_dict()}


def from_folder_state(state: dict, cfg: dict[str, Any], folder: Path) -> tuple[Any, WordPieceTokenizer]:
    """A fine-tuned Chinese-CLIP from its folder: the architecture from the recorded config, the vocabulary
    from the folder's copy (no hub)."""
    from transformers import ChineseCLIPConfig, ChineseCLIPModel

    _quiet()
    config = ChineseCLIPConfig.from_dict({k: v for k, v in cfg["hf_config"].items() if k != "transformers_version"})
    model = _model_class()(ChineseCLIPModel(config))
    model.load_state_dict(state)
    return model, _tokenizer(folder / TOKENIZER_DIR, True)
