"""Which of a model's parameters train, and which of its parts can therefore be computed once.

Locking a tower (open_clip's --lock-image / --lock-text) is what makes fine-tuning a small set sound: the frozen
parts keep their pretrained features and cannot overfit. This module owns that choice — tower locks, the layer
groups left unlocked at a tower's top, BatchNorm kept in eval mode — and the two questions the trainer asks
afterwards: is the image trunk frozen (its features can be cached) and is the text tower frozen (its caption
embeddings can be computed once). Every answer is read from `requires_grad`, so it holds for any model.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from clipsearch.errors import ClipsearchError

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from clipsearch.tune.config import TrainConfig


def image_parameter_names(model: torch.nn.Module) -> set[str]:
    """The image side's parameters: what the model says they are (offline-mini), else everything under visual."""
    names = getattr(model, "image_parameter_names", None)
    if names is not None:
        return set(names())
    return {n for n, _ in model.named_parameters() if n.startswith("visual.")}


def layer_groups(model: torch.nn.Module, side: str) -> list[list[Any]] | None:
    """The tower's trainable units from input to output (None when this architecture is not known): its blocks
    (as gradient checkpointing finds them), then what follows them in the image tower."""
    from clipsearch.tune.grad_checkpoint import tower_blocks

    own = getattr(model, "layer_groups", None)
    if own is not None:
        return own(side)
    blocks = tower_blocks(model).get(side)
    if blocks is None:
        return None
    groups = [list(b.parameters()) for b in blocks]
    v = getattr(model, "visual", None)
    if side == "image" and v is not None and hasattr(getattr(v, "transformer", None), "resblocks"):
        groups.append([p for name, p in v.named_parameters() if not name.startswith(  # ViT: ln_post and proj
            ("transformer.", "conv1", "class_embedding", "positional_embedding", "ln_pre"))])
    elif side == "image" and v is not None and hasattr(v, "attnpool"):  # ModifiedResNet
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


def set_train_mode(model: torch.nn.Module, cfg: TrainConfig) -> None:
    """Training mode, BatchNorm excepted when `freeze_bn` keeps its statistics."""
    model.train()
    if cfg.freeze_bn:
        freeze_batchnorm(model)


def can_cache_image_features(model: torch.nn.Module) -> bool:
    """True when only the light heads train: then the trunk's features are computed once, not every step."""
    head_names = getattr(model, "head_parameter_names", None)
    if head_names is None or not hasattr(model, "image_features"):
        return False
    head = set(head_names())
    image = image_parameter_names(model)
    return not any(p.requires_grad for n, p in model.named_parameters() if n in image and n not in head)


def text_is_frozen(model: torch.nn.Module) -> bool:
    """True when nothing on the text side trains: caption embeddings are then computed once per run."""
    image = image_parameter_names(model)
    return not any(p.requires_grad for n, p in model.named_parameters() if n not in image and n != "logit_scale")
