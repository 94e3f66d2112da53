"""One step of contrastive training: a batch's loss and gradients, then the optimizer update.

Split from the loop the way open_clip_train's train.py keeps `train_one_epoch` apart from the loss, the scaler
and the scheduler: the loop (`training.py`) decides which rows make a step and when to report, checkpoint or
stop; this module decides what a step computes. `ContrastiveStep` turns a group of micro-batches into
gradients — drawing each micro-batch's augmentation once from the run's generator, embedding images and
captions (frozen parts computed once), taking the label-aware loss — and `Updater` applies them: AdamW, the
cosine schedule with linear warm-up, gradient clipping and, for fp16 autocast, the loss scaler.

With class labels, images of one class in a batch share a caption and are not negatives of each other: the
targets are uniform over every pair with the same class, not the identity matrix.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from clipsearch.tune.augment import augment
from clipsearch.tune.config import TrainConfig, warmup_steps
from clipsearch.tune.locks import set_train_mode, text_is_frozen
from clipsearch.tune.model_api import contrastive, with_heads

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from clipsearch.encoders.torch_encoder import Encoder
    from clipsearch.tune.image_side import ImageSide


def contrastive_loss(img: torch.Tensor, txt: torch.Tensor, logit_scale: torch.Tensor,
                     class_ids: torch.Tensor | None) -> torch.Tensor:
    """Symmetric cross-entropy of the image-caption similarities; same-class pairs share the target mass."""
    import torch
    import torch.nn.functional as F

    logits = logit_scale * img @ txt.t()
    if class_ids is None:
        targets = torch.arange(len(img), device=img.device)
        return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.t(), targets)) / 2
    same = (class_ids[:, None] == class_ids[None, :]).float()
    targets = same / same.sum(dim=1, keepdim=True)
    return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.t(), targets.t())) / 2


def cosine_lr(lr: float, warmup: int, total_steps: int) -> Callable[[int], float]:
    """The learning rate of each step: linear warm-up over `warmup` steps, then a cosine down to 0."""
    def lr_at(step: int) -> float:
        if step < warmup:
            return lr * (step + 1) / warmup
        progress = (step - warmup) / max(1, total_steps - warmup)
        return 0.5 * lr * (1 + math.cos(math.pi * progress))

    return lr_at


@dataclass
class Precision:
    """Autocast on CUDA — bf16 where the GPU has it (no loss scaling), else fp16 with a GradScaler — with fp32
    master weights; fp32 elsewhere."""

    device_type: str
    enabled: bool
    dtype: torch.dtype

    @classmethod
    def for_device(cls, device: torch.device) -> Precision:
        import torch

        use_amp = device.type == "cuda"
        dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
        return cls(device.type, use_amp, dtype)

    @property
    def scales_loss(self) -> bool:
        import torch

        return self.enabled and self.dtype == torch.float16

    def autocast(self) -> AbstractContextManager[Any]:
        import torch

        return torch.autocast(self.device_type, dtype=self.dtype, enabled=self.enabled)


class Updater:
    """Applies a step's gradients: AdamW (weight decay on matrices only), the cosine schedule, gradient
    clipping and the loss scaler (a no-op unless `precision` is fp16)."""

    def __init__(self, model: torch.nn.Module, cfg: TrainConfig, lr: float, total_steps: int,
                 precision: Precision) -> None:
        import torch

        self.params = [p for p in model.parameters() if p.requires_grad]
        decay = [p for p in self.params if p.ndim >= 2]
        no_decay = [p for p in self.params if p.ndim < 2]
        self.optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                                            {"params": no_decay, "weight_decay": 0.0}],
                                           lr=lr, betas=(0.9, 0.98), eps=1e-6)
        self.lr_at = cosine_lr(lr, warmup_steps(cfg, total_steps), total_steps)
        self.grad_clip = cfg.grad_clip
        self.scaler = torch.amp.GradScaler("cuda", enabled=precision.scales_loss)

    def step(self, step: int) -> None:
        """Optimizer step number `step` (from 0) on the gradients accumulated so far, which it then clears."""
        import torch

        for g in self.optimizer.param_groups:
            g["lr"] = self.lr_at(step)
        if self.grad_clip:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.params, self.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.zero_grad()

    def zero_grad(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)

    def state_dict(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """The optimizer's and the scaler's states."""
        return self.optimizer.state_dict(), self.scaler.state_dict()

    def load_state_dict(self, optimizer: dict[str, Any], scaler: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(optimizer)
        self.scaler.load_state_dict(scaler)


class ContrastiveStep:
    """The gradients of one contrastive batch made of micro-batches (rows of `images`).

    `accumulate` > 1 makes each optimizer step see several micro-batches as one contrastive batch, every pair a
    negative of every other (cached-feature accumulation, as GradCache and open_clip's --accum-freq): features
    of all micro-batches are computed without gradients, then each micro-batch is recomputed with gradients
    against the others' cached features. The summed gradient equals the large batch's (the temperature's
    gradient is taken once), at the cost of one more forward pass; only BatchNorm that updates its statistics
    sees micro-batches.
    """

    def __init__(self, encoder: Encoder, images: np.ndarray, captions: Sequence[str],
                 class_ids: Sequence[int] | None, cfg: TrainConfig, side: ImageSide, rng: np.random.Generator,
                 precision: Precision, scaler: torch.amp.GradScaler) -> None:
        import torch

        self.encoder, self.images, self.cfg, self.side, self.rng = encoder, images, cfg, side, rng
        self.precision, self.scaler = precision, scaler
        self.model = encoder.model
        self.device = encoder.device
        unique_caps = sorted(set(captions))
        cap_index = {c: i for i, c in enumerate(unique_caps)}
        self.cap_ids = np.asarray([cap_index[c] for c in captions])
        self.tokens = encoder.tokenize(unique_caps)  # NLLB-CLIP: each caption with its language code
        self.frozen_text: torch.Tensor | None = None  # every caption's embedding, when the text tower is frozen
        if text_is_frozen(self.model):
            self.model.eval()
            with torch.inference_mode():
                text = torch.cat([contrastive(self.model).encode_text(self.tokens[i:i + 128].to(self.device))
                                  for i in range(0, len(unique_caps), 128)]).float().clone()
                self.frozen_text = torch.nn.functional.normalize(text, dim=-1)
            set_train_mode(self.model, cfg)
        self.class_ids = torch.as_tensor(np.asarray(class_ids), dtype=torch.long) if class_ids is not None else None
        self.plain: torch.Tensor | None = None  # the trunk's features, when the image side is cached
        self.mirrored: torch.Tensor | None = None  # ... of the mirror images, when flips are on
        if side.cached:
            self.plain = side.features(images)
            self.mirrored = side.features(images, flipped=True) if cfg.hflip else None

    def inputs(self, idx: np.ndarray) -> torch.Tensor:
        """The micro-batch's input, with its random augmentation drawn once (both passes see the same)."""
        import torch

        if self.plain is not None:
            feats = self.plain[idx]
            if self.mirrored is not None:
                flip = torch.as_tensor(self.rng.random(len(idx)) < 0.5)
                feats = torch.where(flip[:, None], self.mirrored[idx], feats)
            return feats.to(self.device)
        cfg = self.cfg
        batch = augment(self.images[idx], cfg, self.rng) if (cfg.hflip or cfg.augmenting) else self.images[idx]
        return self.encoder.images_to_tensor(np.ascontiguousarray(batch))

    def encode(self, idx: np.ndarray, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised image and caption embeddings of a micro-batch."""
        import torch

        normalize = torch.nn.functional.normalize
        clip, frozen = contrastive(self.model), self.frozen_text
        with self.precision.autocast():
            img = with_heads(self.model).image_head(inputs) if self.side.cached else clip.encode_image(inputs)
            ids = self.cap_ids[idx]
            if frozen is None:  # each distinct caption of the batch goes through the text tower once
                uniq, inverse = np.unique(ids, return_inverse=True)
                distinct = clip.encode_text(self.tokens[uniq].to(self.device))
        if frozen is not None:
            txt = frozen[torch.as_tensor(ids)]
        else:
            txt = normalize(distinct.float(), dim=-1)[torch.as_tensor(inverse)]  # normalised once per caption
        return normalize(img.float(), dim=-1), txt

    def loss(self, img: torch.Tensor, txt: torch.Tensor, idx: np.ndarray, scale: torch.Tensor) -> torch.Tensor:
        c = self.class_ids[idx].to(self.device) if self.class_ids is not None else None
        return contrastive_loss(img, txt, scale, c)

    def temperature(self) -> torch.Tensor:
        """The logit scale, capped at 100 as in CLIP."""
        return contrastive(self.model).logit_scale.exp().clamp(max=100)

    def backward(self, group: list[np.ndarray]) -> float:
        """Gradients of one contrastive batch made of `group`'s micro-batches; returns its loss."""
        import torch

        inputs = [self.inputs(idx) for idx in group]
        if len(group) == 1:
            img, txt = self.encode(group[0], inputs[0])
            loss = self.loss(img, txt, group[0], self.temperature())
            self.scaler.scale(loss).backward()
            return float(loss.detach())
        with torch.no_grad():
            cached = [self.encode(idx, x) for idx, x in zip(group, inputs, strict=False)]
        everyone = np.concatenate(group)
        loss_value = 0.0
        for j, (idx, x) in enumerate(zip(group, inputs, strict=False)):
            img_j, txt_j = self.encode(idx, x)
            img = torch.cat([c[0] for c in cached[:j]] + [img_j] + [c[0] for c in cached[j + 1:]])
            txt = torch.cat([c[1] for c in cached[:j]] + [txt_j] + [c[1] for c in cached[j + 1:]])
            scale = self.temperature()
            loss = self.loss(img, txt, everyone, scale if j == 0 else scale.detach())
            self.scaler.scale(loss).backward()
            loss_value = float(loss.detach())
        return loss_value
