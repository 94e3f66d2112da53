"""Contrastive training of a CLIP-style model on (image, caption) pairs, as in pre-training (FLYP).

With class labels, images of one class in a batch share a caption and are not negatives of each other:
the targets are label-aware (uniform over every pair with the same class), not the identity matrix.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from .models import Encoder


@dataclass
class TrainConfig:
    epochs: int = 5
    batch_size: int = 64
    lr: float = 1e-4
    weight_decay: float = 0.1
    warmup_steps: int = 10
    grad_clip: float = 1.0
    accumulate: int = 1
    seed: int = 0
    lock_image: bool = False
    lock_text: bool = False
    unlocked_layers: int = 0
    hflip: bool = True


@dataclass
class TrainHistory:
    losses: list[float] = field(default_factory=list)
    images_per_second: float = 0.0
    seconds: float = 0.0
    steps: int = 0


def contrastive_loss(img: "torch.Tensor", txt: "torch.Tensor", logit_scale: "torch.Tensor",
                     class_ids: "torch.Tensor | None") -> "torch.Tensor":
    import torch
    import torch.nn.functional as F

    logits = logit_scale * img @ txt.t()
    if class_ids is None:
        targets = torch.arange(len(img), device=img.device)
        return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.t(), targets)) / 2
    same = (class_ids[:, None] == class_ids[None, :]).float()
    targets = same / same.sum(dim=1, keepdim=True)
    return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.t(), targets.t())) / 2


def _lock(params: Sequence["torch.nn.Parameter"], blocks: Sequence["torch.nn.Module"], unlocked_last: int) -> None:
    for p in params:
        p.requires_grad_(False)
    for block in list(blocks)[-unlocked_last:] if unlocked_last else []:
        for p in block.parameters():
            p.requires_grad_(True)


def apply_locks(model: "torch.nn.Module", cfg: TrainConfig) -> None:
    """--lock-image / --lock-text freeze a tower, leaving its last `unlocked_layers` blocks trainable."""
    visual = getattr(model, "visual", None)
    if cfg.lock_image and visual is not None:
        blocks = getattr(getattr(visual, "transformer", None), "resblocks", [])
        _lock(list(visual.parameters()), blocks, cfg.unlocked_layers)
    if cfg.lock_text:
        visual_ids = {id(p) for p in visual.parameters()} if visual is not None else set()
        text_params = [p for name, p in model.named_parameters() if id(p) not in visual_ids and name != "logit_scale"]
        blocks = getattr(getattr(model, "transformer", None), "resblocks", [])
        _lock(text_params, blocks, cfg.unlocked_layers)


def train_contrastive(encoder: "Encoder", images: np.ndarray, captions: Sequence[str],
                      class_ids: Sequence[int] | None, cfg: TrainConfig,
                      on_step: Callable[[int, int, float, float, float], None] | None = None,
                      on_epoch: Callable[[int], None] | None = None) -> TrainHistory:
    """Train `encoder.model` in place. `images` are NHWC uint8 at the model's input size.

    AdamW + cosine schedule with linear warmup, gradient clipping, fp32 master weights with autocast on
    CUDA, optional gradient accumulation. `on_step(step, total, loss, lr, img_per_s)` reports progress.
    """
    import torch

    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    model = encoder.model
    device = encoder.device
    model.train()
    apply_locks(model, cfg)
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, 0.98), eps=1e-6)
    n = len(images)
    bs = min(cfg.batch_size, n)
    steps_per_epoch = max(1, n // bs)
    total_steps = max(1, steps_per_epoch * cfg.epochs // cfg.accumulate)
    warmup = min(cfg.warmup_steps, total_steps // 2)

    def lr_at(step: int) -> float:
        if step < warmup:
            return cfg.lr * (step + 1) / warmup
        progress = (step - warmup) / max(1, total_steps - warmup)
        return 0.5 * cfg.lr * (1 + math.cos(math.pi * progress))

    tokens_all = encoder.tokenizer(list(captions))
    cls = torch.as_tensor(np.asarray(class_ids), dtype=torch.long) if class_ids is not None else None
    history = TrainHistory()
    use_amp = device.type == "cuda"
    # bf16 needs no loss scaling; on GPUs without it, fp16 autocast with a GradScaler (weights stay fp32)
    amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)
    start = time.perf_counter()
    seen = 0
    step = 0
    opt.zero_grad(set_to_none=True)
    for epoch in range(cfg.epochs):
        order = rng.permutation(n)
        for b in range(steps_per_epoch):
            idx = order[b * bs:(b + 1) * bs]
            batch = images[idx]
            if cfg.hflip:
                flip = rng.random(len(idx)) < 0.5
                batch = batch.copy()
                batch[flip] = batch[flip][:, :, ::-1]
            x = encoder.images_to_tensor(np.ascontiguousarray(batch))
            t = tokens_all[idx].to(device)
            c = cls[idx].to(device) if cls is not None else None
            with torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp):
                img = torch.nn.functional.normalize(model.encode_image(x), dim=-1)
                txt = torch.nn.functional.normalize(model.encode_text(t), dim=-1)
                loss = contrastive_loss(img.float(), txt.float(), model.logit_scale.exp().clamp(max=100), c)
            scaler.scale(loss / cfg.accumulate).backward()
            seen += len(idx)
            if (b + 1) % cfg.accumulate == 0:
                for g in opt.param_groups:
                    g["lr"] = lr_at(step)
                if cfg.grad_clip:
                    scaler.unscale_(opt)
                    torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
                scaler.step(opt)
                scaler.update()
                opt.zero_grad(set_to_none=True)
                step += 1
            history.losses.append(float(loss.detach()))
            if on_step:
                elapsed = time.perf_counter() - start
                on_step(step, total_steps, history.losses[-1], lr_at(max(step - 1, 0)), seen / max(elapsed, 1e-9))
        if on_epoch:
            model.eval()
            on_epoch(epoch)
            model.train()
    model.eval()
    history.seconds = time.perf_counter() - start
    history.images_per_second = seen / max(history.seconds, 1e-9)
    history.steps = step
    return history
