"""A training run's settings, and the defaults chosen for what the caller leaves unset.

Kept apart from the loop because the whole fine-tune reads them before anything trains: the CLI builds a
`TrainConfig` from its flags, `finetune` resolves it once from the model family and the data size (and
fingerprints the result in its checkpoint), and the loop only ever sees a resolved config. A pretrained CLIP
trains both towers at 1e-5; offline-mini trains its light heads (ImageNet classifier and class matrix) at 1e-3
with the trunk and text tower frozen, so the trunk's features are computed once; a random-init model trains
everything at 1e-3. Enough epochs run for `min_steps` optimizer steps; warm-up is a fraction of them. The
batching arithmetic lives here too, since the settings report and the loop must count steps the same way.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

from clipsearch.errors import ClipsearchError


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

    @property
    def augmenting(self) -> bool:
        """Whether a crop or colour change alters the image tower's input (a flip alone can be cached)."""
        return self.random_crop > 0 or self.color_jitter > 0


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
    epochs = out.epochs
    if epochs is None:
        per_epoch = max(1, spe // max(1, out.accumulate))
        epochs = int(min(out.max_epochs, max(1, math.ceil(out.min_steps / per_epoch))))
        out = replace(out, epochs=epochs)
    if out.patience == 0:
        out = replace(out, patience=max(3, epochs // 4))
    if out.accumulate < 1:
        raise ClipsearchError("accumulate must be at least 1", param="accumulate")
    return out


def settings_dict(cfg: TrainConfig, n_train: int) -> dict[str, Any]:
    """The resolved settings as the report (and the checkpoint's fingerprint) records them, with step counts."""
    d = asdict(cfg)
    spe = steps_per_epoch(n_train, cfg.batch_size)
    d["steps_per_epoch"] = math.ceil(spe / cfg.accumulate)
    d["total_steps"] = d["steps_per_epoch"] * int(cfg.epochs or 1)
    d["warmup_steps"] = warmup_steps(cfg, d["total_steps"])
    return d


def warmup_steps(cfg: TrainConfig, total_steps: int) -> int:
    """Linear warm-up steps: `warmup_steps`, else `warmup_fraction` of the run; never over half of it."""
    w = cfg.warmup_steps if cfg.warmup_steps is not None else int(round(cfg.warmup_fraction * total_steps))
    return max(0, min(w, total_steps // 2))
