"""Contrastive training of a CLIP-style model on (image, caption) pairs, as in pre-training (FLYP).

With class labels, images of one class in a batch share a caption and are not negatives of each other:
the targets are label-aware (uniform over every pair with the same class), not the identity matrix.

Defaults adapt to the model family and the data size (`resolve_config`): a pretrained CLIP trains both towers
at 1e-5; offline-mini trains its light heads (ImageNet classifier and class matrix) at 1e-3 with the trunk and
text tower frozen, so the trunk's features are computed once; a random-init model trains everything at 1e-3.
Enough epochs run for `min_steps` optimizer steps, warm-up is a fraction of them.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from clipsearch.errors import ClipsearchError

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from clipsearch.encoders.torch_encoder import Encoder


@dataclass
class TrainConfig:
    """None means "chosen by `resolve_config` from the model family and the data size"."""

    epochs: int | None = None  # None: enough for min_steps, at most max_epochs
    batch_size: int = 32
    lr: float | None = None
    weight_decay: float = 0.1
    warmup_fraction: float = 0.1
    warmup_steps: int | None = None  # overrides warmup_fraction
    min_steps: int = 150
    max_epochs: int = 40
    patience: int = 0  # early stopping: epochs without a better validation score (0: auto, -1: off)
    grad_clip: float = 1.0
    accumulate: int = 1
    seed: int = 0
    lock_image: bool | None = None
    lock_text: bool | None = None
    unlocked_layers: int | None = None  # with lock_image: the image tower's last N layer groups still train
    unlocked_text_layers: int | None = None  # with lock_text: the text tower's last N layers still train
    freeze_bn: bool | None = None  # keep BatchNorm running statistics as pretrained
    hflip: bool | None = None
    random_crop: float = 0.0  # random resized crop: smallest area kept (0 = off; e.g. 0.6)
    color_jitter: float = 0.0  # brightness/contrast/saturation jitter strength (0 = off; e.g. 0.3)
    grad_checkpointing: bool = False  # recompute tower activations in the backward pass: less memory, ~15% slower


FAMILY_DEFAULTS: dict[str, dict[str, Any]] = {
    "clip-pretrained": {"lr": 1e-5, "lock_image": False, "lock_text": False, "unlocked_layers": 0,
                        "unlocked_text_layers": 0, "freeze_bn": True, "hflip": True},
    # the light heads on cached trunk features; augmenting would run the trunk every step, so it is off
    "offline-mini": {"lr": 1e-3, "lock_image": True, "lock_text": True, "unlocked_layers": 2,
                     "unlocked_text_layers": 0, "freeze_bn": True, "hflip": False},
    "random-init": {"lr": 1e-3, "lock_image": False, "lock_text": False, "unlocked_layers": 0,
                    "unlocked_text_layers": 0, "freeze_bn": False, "hflip": True},
}


def model_family(spec: Any) -> str:
    """"offline-mini", "random-init" (a shipped config, or a fine-tune of one) or "clip-pretrained"."""
    from clipsearch.encoders.spec import parse_spec

    for _ in range(8):  # a folder names its base; follow the chain
        if spec.kind == "offline" or spec.extra.get("model_cfg", {}).get("family") == "offline-mini":
            return "offline-mini"
        if spec.kind != "folder":
            return "random-init" if spec.pretrained is None else "clip-pretrained"
        base = spec.extra.get("base")
        if not base:
            break
        try:
            spec = parse_spec(str(base))
        except ClipsearchError:
            break
    return "clip-pretrained"


def steps_per_epoch(n: int, batch_size: int) -> int:
    """Batches in an epoch: the remainder is a batch of its own, or joins the last one when it is a single row."""
    bs = max(2, min(batch_size, n))
    full, rest = divmod(n, bs)
    return max(1, full + (1 if rest > 1 or full == 0 else 0))


def epoch_batches(order: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Every row once: full batches, then the remainder (a lone last row joins the previous batch)."""
    n = len(order)
    k = steps_per_epoch(n, batch_size)
    bs = max(2, min(batch_size, n))
    bounds = [i * bs for i in range(k)] + [n]
    return [order[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=False)]


def resolve_config(cfg: TrainConfig, family: str, n_train: int) -> TrainConfig:
    """Fill every None from the family's defaults and the data size."""
    fam = FAMILY_DEFAULTS[family]
    out = replace(cfg, **{k: v for k, v in fam.items() if getattr(cfg, k) is None})
    if cfg.unlocked_layers is None and (cfg.lock_image is False) and family == "offline-mini":
        out = replace(out, unlocked_layers=0)
    spe = steps_per_epoch(n_train, out.batch_size)
    if out.epochs is None:
        per_epoch = max(1, spe // max(1, out.accumulate))
        out = replace(out, epochs=int(min(out.max_epochs, max(1, math.ceil(out.min_steps / per_epoch)))))
    if out.patience == 0:
        out = replace(out, patience=max(3, out.epochs // 4))
    if out.accumulate < 1:
        raise ClipsearchError("accumulate must be at least 1", param="accumulate")
    return out


def settings_dict(cfg: TrainConfig, n_train: int) -> dict[str, Any]:
    d = asdict(cfg)
    spe = steps_per_epoch(n_train, cfg.batch_size)
    d["steps_per_epoch"] = math.ceil(spe / cfg.accumulate)
    d["total_steps"] = d["steps_per_epoch"] * int(cfg.epochs or 1)
    d["warmup_steps"] = warmup_steps(cfg, d["total_steps"])
    return d


def warmup_steps(cfg: TrainConfig, total_steps: int) -> int:
    w = cfg.warmup_steps if cfg.warmup_steps is not None else int(round(cfg.warmup_fraction * total_steps))
    return max(0, min(w, total_steps // 2))


@dataclass
class TrainState:
    """Everything besides the weights that an interrupted run needs to continue exactly where it stopped:
    the optimizer's moments, the random streams, the step count and the losses so far."""

    epoch: int  # epochs completed
    step: int
    seen: int
    losses: list[float]
    optimizer: dict[str, Any]
    scaler: dict[str, Any]
    numpy_rng: dict[str, Any]
    torch_rng: Any
    seconds: float
    stopped: bool = False  # early stopping ended the run after `epoch` epochs


@dataclass
class TrainHistory:
    losses: list[float] = field(default_factory=list)
    images_per_second: float = 0.0
    seconds: float = 0.0
    steps: int = 0
    epochs_run: int = 0
    stopped_early: bool = False
    cached_image_features: bool = False
    cached_text: bool = False
    checkpointed_towers: list[str] = field(default_factory=list)


def contrastive_loss(img: torch.Tensor, txt: torch.Tensor, logit_scale: torch.Tensor,
                     class_ids: torch.Tensor | None) -> torch.Tensor:
    import torch
    import torch.nn.functional as F

    logits = logit_scale * img @ txt.t()
    if class_ids is None:
        targets = torch.arange(len(img), device=img.device)
        return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.t(), targets)) / 2
    same = (class_ids[:, None] == class_ids[None, :]).float()
    targets = same / same.sum(dim=1, keepdim=True)
    return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.t(), targets.t())) / 2


def image_parameter_names(model: torch.nn.Module) -> set[str]:
    if hasattr(model, "image_parameter_names"):
        return set(model.image_parameter_names())
    return {n for n, _ in model.named_parameters() if n.startswith("visual.")}


def layer_groups(model: torch.nn.Module, side: str) -> list[list[Any]] | None:
    """The tower's trainable units from input to output (None when this architecture is not known): its blocks
    (as gradient checkpointing finds them), then what follows them in the image tower."""
    from clipsearch.tune.grad_checkpoint import tower_blocks

    if hasattr(model, "layer_groups"):
        return model.layer_groups(side)
    blocks = tower_blocks(model).get(side)
    if blocks is None:
        return None
    groups = [list(b.parameters()) for b in blocks]
    v = getattr(model, "visual", None)
    if side == "image" and hasattr(getattr(v, "transformer", None), "resblocks"):  # ViT: ln_post and proj
        groups.append([p for name, p in v.named_parameters() if not name.startswith(
            ("transformer.", "conv1", "class_embedding", "positional_embedding", "ln_pre"))])
    elif side == "image" and hasattr(v, "attnpool"):  # ModifiedResNet
        groups.append(list(v.attnpool.parameters()))
    return groups


def apply_locks(model: torch.nn.Module, cfg: TrainConfig) -> None:
    """lock_image / lock_text freeze a tower, leaving its last `unlocked_layers` groups trainable; the image side
    is what the model says it is (offline-mini's class matrix belongs to it), the text side is the rest."""
    image_names = image_parameter_names(model)
    named = dict(model.named_parameters())
    for p in named.values():
        p.requires_grad_(True)
    for side, locked in (("image", cfg.lock_image), ("text", cfg.lock_text)):
        if not locked:
            continue
        for name, p in named.items():
            if name != "logit_scale" and (name in image_names) == (side == "image"):
                p.requires_grad_(False)
        n = int((cfg.unlocked_layers if side == "image" else cfg.unlocked_text_layers) or 0)
        if n:
            groups = layer_groups(model, side)
            if groups is None:
                param = "unlocked_layers" if side == "image" else "unlocked_text_layers"
                raise ClipsearchError(f"{param} is not supported for this model's {side} tower",
                                      f"lock the {side} tower fully, or do not lock it", param=param)
            for group in groups[-n:]:
                for p in group:
                    p.requires_grad_(True)
    if not any(p.requires_grad for p in named.values()):
        raise ClipsearchError("every parameter is locked: nothing would train", "unlock a tower or some layers",
                              param="lock_image")


def freeze_batchnorm(model: torch.nn.Module) -> int:
    """Put every BatchNorm in eval mode so tiny batches do not rewrite its running statistics (open_clip's
    --lock-image-freeze-bn-stats); its affine weights still train. Returns how many were frozen."""
    import torch

    count = 0
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.eval()
            count += 1
    return count


def _set_train_mode(model: torch.nn.Module, cfg: TrainConfig) -> None:
    model.train()
    if cfg.freeze_bn:
        freeze_batchnorm(model)


def can_cache_image_features(model: torch.nn.Module) -> bool:
    """True when only the light heads train: then the trunk's features are computed once, not every step."""
    if not (hasattr(model, "image_features") and hasattr(model, "head_parameter_names")):
        return False
    head = set(model.head_parameter_names())
    image = image_parameter_names(model)
    return not any(p.requires_grad for n, p in model.named_parameters() if n in image and n not in head)


def image_side_for(encoder: Encoder, cfg: TrainConfig) -> ImageSide:
    """Cached trunk features when only the light heads train and no crop or colour changes the trunk's input."""
    augmenting = cfg.random_crop > 0 or cfg.color_jitter > 0
    return ImageSide(encoder, can_cache_image_features(encoder.model) and not augmenting)


def text_is_frozen(model: torch.nn.Module) -> bool:
    image = image_parameter_names(model)
    return not any(p.requires_grad for n, p in model.named_parameters() if n not in image and n != "logit_scale")


def augment(batch: np.ndarray, cfg: TrainConfig, rng: np.random.Generator) -> np.ndarray:
    """Flip, random resized crop and colour jitter on NHWC uint8 (each only when enabled)."""
    batch = batch.copy()
    n, h, w, _ = batch.shape
    if cfg.hflip:
        flip = rng.random(n) < 0.5
        batch[flip] = batch[flip][:, :, ::-1]
    if cfg.random_crop > 0:
        from PIL import Image

        for i in range(n):
            area = rng.uniform(cfg.random_crop, 1.0)
            ratio = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
            ch = min(h, max(2, int(round(h * math.sqrt(area / ratio)))))
            cw = min(w, max(2, int(round(w * math.sqrt(area * ratio)))))
            y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
            crop = Image.fromarray(np.ascontiguousarray(batch[i, y:y + ch, x:x + cw]))
            batch[i] = np.asarray(crop.resize((w, h), Image.BICUBIC))
    if cfg.color_jitter > 0:
        s = cfg.color_jitter
        f = batch.astype(np.float32)
        bright = rng.uniform(1 - s, 1 + s, (n, 1, 1, 1))
        contrast = rng.uniform(1 - s, 1 + s, (n, 1, 1, 1))
        sat = rng.uniform(1 - s, 1 + s, (n, 1, 1, 1))
        f = f * bright
        mean = f.mean(axis=(1, 2, 3), keepdims=True)
        f = (f - mean) * contrast + mean
        gray = f.mean(axis=3, keepdims=True)
        f = (f - gray) * sat + gray
        batch = np.clip(f, 0, 255).astype(np.uint8)
    return batch


class ImageSide:
    """Embeds images for training and evaluation: from pixels, or — when only the light heads train — from the
    frozen trunk's features, computed once per image (and once more for its mirror image when flips are on)."""

    def __init__(self, encoder: Encoder, cached: bool) -> None:
        self.encoder = encoder
        self.cached = cached
        self._features: dict[int, Any] = {}

    def features(self, pixels: np.ndarray, flipped: bool = False) -> torch.Tensor:
        import torch

        key = (id(pixels), flipped)
        if key not in self._features:
            model = self.encoder.model
            was = model.training
            model.eval()
            chunks = []
            with torch.inference_mode():
                for i in range(0, len(pixels), 32):
                    part = pixels[i:i + 32][:, :, ::-1] if flipped else pixels[i:i + 32]
                    chunks.append(model.image_features(self.encoder.images_to_tensor(np.ascontiguousarray(part))))
            model.train(was)
            self._features[key] = (pixels, torch.cat(chunks).clone())  # keep the array alive: its id is the key
        return self._features[key][1]

    def share(self, pool: np.ndarray, rows: np.ndarray, flips: bool = False) -> np.ndarray:
        """`pool[rows]`, its trunk features taken from the pool's (cross-validation folds reuse one pass)."""
        part = pool[rows]
        if self.cached:
            for flipped in (False, True) if flips else (False,):
                self._features[(id(part), flipped)] = (part, self.features(pool, flipped)[rows])
        return part

    def embed(self, pixels: np.ndarray) -> np.ndarray:
        """L2-normalised float32 embeddings of `pixels` under the model's current weights (eval mode)."""
        import torch

        if not self.cached:
            from clipsearch.tune.evaluate import embed_images

            return embed_images(self.encoder, pixels)
        feats = self.features(pixels)
        model = self.encoder.model
        with torch.inference_mode():
            out = model.image_head(feats, normalize=True).float()
        return out.cpu().numpy()


def train_contrastive(encoder: Encoder, images: np.ndarray, captions: Sequence[str],
                      class_ids: Sequence[int] | None, cfg: TrainConfig,
                      on_step: Callable[[int, int, float, float, float], None] | None = None,
                      on_epoch: Callable[[int], bool | None] | None = None,
                      image_side: ImageSide | None = None, resume: TrainState | None = None,
                      on_checkpoint: Callable[[TrainState], None] | None = None) -> TrainHistory:
    """Train `encoder.model` in place. `images` are NHWC uint8 at the model's input size; `cfg` is resolved.

    AdamW + cosine schedule with linear warm-up, gradient clipping, fp32 master weights with autocast on
    CUDA. `accumulate` > 1 makes each optimizer step see `accumulate` micro-batches as one contrastive batch,
    every pair a negative of every other (cached-feature accumulation, as GradCache and open_clip's
    --accum-freq): features of all micro-batches are computed without gradients, then each micro-batch is
    recomputed with gradients against the others' cached features. The summed gradient equals the large
    batch's (the temperature's gradient is taken once), at the cost of one more forward pass; only BatchNorm
    that updates its statistics sees micro-batches. A pending partial group is stepped at an epoch's end.

    `on_step(step, total, loss, lr, img_per_s)` reports progress; `on_epoch(epoch)` returning True stops
    training (early stopping); `on_checkpoint(state)` runs after every epoch with what `resume` needs to
    continue exactly (the caller saves the weights beside it).
    """
    import torch

    from clipsearch.tune.grad_checkpoint import set_grad_checkpointing

    if cfg.epochs is None or cfg.lr is None:
        raise ClipsearchError("train_contrastive needs a resolved config (see resolve_config)", param="config")
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    model = encoder.model
    device = encoder.device
    apply_locks(model, cfg)
    _set_train_mode(model, cfg)
    side = image_side or image_side_for(encoder, cfg)
    augmenting = cfg.random_crop > 0 or cfg.color_jitter > 0
    if side.cached and augmenting:
        side = ImageSide(encoder, False)  # a cache handed in: crops and colour change the trunk's input
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, 0.98), eps=1e-6)
    n = len(images)
    per_epoch = math.ceil(steps_per_epoch(n, cfg.batch_size) / cfg.accumulate)
    total_steps = max(1, per_epoch * cfg.epochs)
    warmup = warmup_steps(cfg, total_steps)

    def lr_at(step: int) -> float:
        if step < warmup:
            return cfg.lr * (step + 1) / warmup
        progress = (step - warmup) / max(1, total_steps - warmup)
        return 0.5 * cfg.lr * (1 + math.cos(math.pi * progress))

    unique_caps = sorted(set(captions))
    cap_index = {c: i for i, c in enumerate(unique_caps)}
    cap_ids = np.asarray([cap_index[c] for c in captions])
    tokens_all = encoder.tokenizer(unique_caps)
    frozen_text = None
    if text_is_frozen(model):
        model.eval()
        with torch.inference_mode():
            frozen_text = torch.cat([model.encode_text(tokens_all[i:i + 128].to(device))
                                     for i in range(0, len(unique_caps), 128)]).float().clone()
            frozen_text = torch.nn.functional.normalize(frozen_text, dim=-1)
        _set_train_mode(model, cfg)
    cls = torch.as_tensor(np.asarray(class_ids), dtype=torch.long) if class_ids is not None else None
    history = TrainHistory(cached_image_features=side.cached, cached_text=frozen_text is not None)
    if side.cached:
        plain = side.features(images)
        mirrored = side.features(images, flipped=True) if cfg.hflip else None
    if cfg.grad_checkpointing:
        history.checkpointed_towers = set_grad_checkpointing(model, True)
        if not history.checkpointed_towers:
            raise ClipsearchError("gradient checkpointing is not supported for this model's towers",
                                  "train without `grad_checkpointing`", param="grad_checkpointing")
    use_amp = device.type == "cuda"
    # bf16 needs no loss scaling; on GPUs without it, fp16 autocast with a GradScaler (weights stay fp32)
    amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)
    step, seen, start_epoch, spent = 0, 0, 0, 0.0
    if resume is not None:
        opt.load_state_dict(resume.optimizer)
        scaler.load_state_dict(resume.scaler)
        rng.bit_generator.state = resume.numpy_rng
        torch.set_rng_state(resume.torch_rng)
        step, seen, start_epoch, spent = resume.step, resume.seen, resume.epoch, resume.seconds
        history.losses = list(resume.losses)
        history.epochs_run = resume.epoch
        history.stopped_early = resume.stopped and resume.epoch < cfg.epochs
    start = time.perf_counter() - spent

    def prepare(idx: np.ndarray) -> Any:
        """The micro-batch's input, with its random augmentation drawn once (both passes see the same)."""
        if side.cached:
            feats = plain[idx]
            if mirrored is not None:
                flip = torch.as_tensor(rng.random(len(idx)) < 0.5)
                feats = torch.where(flip[:, None], mirrored[idx], feats)
            return feats.to(device)
        batch = augment(images[idx], cfg, rng) if (cfg.hflip or augmenting) else images[idx]
        return encoder.images_to_tensor(np.ascontiguousarray(batch))

    def encode(idx: np.ndarray, inputs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised image and caption embeddings of a micro-batch."""
        normalize = torch.nn.functional.normalize
        with torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp):
            img = model.image_head(inputs) if side.cached else model.encode_image(inputs)
            ids = cap_ids[idx]
            if frozen_text is None:  # each distinct caption of the batch goes through the text tower once
                uniq, inverse = np.unique(ids, return_inverse=True)
                distinct = model.encode_text(tokens_all[uniq].to(device))
        if frozen_text is not None:
            txt = frozen_text[torch.as_tensor(ids)]
        else:
            txt = normalize(distinct.float(), dim=-1)[torch.as_tensor(inverse)]  # normalised once per caption
        return normalize(img.float(), dim=-1), txt

    def loss_of(img: torch.Tensor, txt: torch.Tensor, idx: np.ndarray, scale: torch.Tensor) -> torch.Tensor:
        c = cls[idx].to(device) if cls is not None else None
        return contrastive_loss(img, txt, scale, c)

    def backward_group(group: list[np.ndarray]) -> float:
        """Gradients of one contrastive batch made of `group`'s micro-batches; returns its loss."""
        inputs = [prepare(idx) for idx in group]
        if len(group) == 1:
            img, txt = encode(group[0], inputs[0])
            loss = loss_of(img, txt, group[0], model.logit_scale.exp().clamp(max=100))
            scaler.scale(loss).backward()
            return float(loss.detach())
        with torch.no_grad():
            cached = [encode(idx, x) for idx, x in zip(group, inputs, strict=False)]
        everyone = np.concatenate(group)
        loss_value = 0.0
        for j, (idx, x) in enumerate(zip(group, inputs, strict=False)):
            img_j, txt_j = encode(idx, x)
            img = torch.cat([c[0] for c in cached[:j]] + [img_j] + [c[0] for c in cached[j + 1:]])
            txt = torch.cat([c[1] for c in cached[:j]] + [txt_j] + [c[1] for c in cached[j + 1:]])
            scale = model.logit_scale.exp().clamp(max=100)
            loss = loss_of(img, txt, everyone, scale if j == 0 else scale.detach())
            scaler.scale(loss).backward()
            loss_value = float(loss.detach())
        return loss_value

    def optimizer_step() -> None:
        nonlocal step
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        if cfg.grad_clip:
            scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        scaler.step(opt)
        scaler.update()
        opt.zero_grad(set_to_none=True)
        step += 1

    opt.zero_grad(set_to_none=True)
    try:
        last_epoch = start_epoch if resume is not None and resume.stopped else cfg.epochs
        for epoch in range(start_epoch, last_epoch):
            batches = epoch_batches(rng.permutation(n), cfg.batch_size)
            for g in range(0, len(batches), cfg.accumulate):
                group = batches[g:g + cfg.accumulate]
                history.losses.append(backward_group(group))
                optimizer_step()
                seen += sum(len(idx) for idx in group)
                if on_step:
                    elapsed = time.perf_counter() - start
                    on_step(step, total_steps, history.losses[-1], lr_at(step - 1), seen / max(elapsed, 1e-9))
            history.epochs_run = epoch + 1
            stop = False
            if on_epoch:
                model.eval()
                stop = bool(on_epoch(epoch))
                _set_train_mode(model, cfg)
            history.stopped_early = stop and epoch + 1 < cfg.epochs
            if on_checkpoint:
                on_checkpoint(TrainState(epoch=epoch + 1, step=step, seen=seen, losses=list(history.losses),
                                         optimizer=opt.state_dict(), scaler=scaler.state_dict(),
                                         numpy_rng=rng.bit_generator.state, torch_rng=torch.get_rng_state(),
                                         seconds=time.perf_counter() - start, stopped=stop))
            if stop:
                break
    finally:
        if cfg.grad_checkpointing:
            set_grad_checkpointing(model, False)
        model.eval()
        for p in model.parameters():
            p.requires_grad_(True)
    history.seconds = time.perf_counter() - start
    history.images_per_second = seen / max(history.seconds, 1e-9)
    history.steps = step
    return history
