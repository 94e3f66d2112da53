"""Activation (gradient) checkpointing for the towers of any model clipsearch trains.

A wrapped block keeps only its input in the forward pass and recomputes its activations during the backward
pass: activation memory falls from every block's to about one block's, for roughly one more forward pass of
compute. The blocks are wrapped in place (state-dict keys do not change), so one mechanism covers open_clip's
ViTs and ModifiedResNets (whose own switch does nothing), timm trunks and the offline model's MiniLM. The
recomputation restores BatchNorm running statistics, so a block with updating BatchNorm counts each batch once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import torch

_WRAPPED = "_clipsearch_checkpointed"


def _wrap(module: torch.nn.Module) -> None:
    import torch
    from torch.utils.checkpoint import checkpoint

    original = module.forward
    norms = [m for m in module.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]

    def forward(*args: Any, **kwargs: Any) -> Any:
        if not (module.training and torch.is_grad_enabled()):
            return original(*args, **kwargs)
        calls = [0]

        def run(*a: Any, **kw: Any) -> Any:
            calls[0] += 1
            if calls[0] == 1 or not norms:
                return original(*a, **kw)
            saved = [(b, b.clone()) for m in norms for b in (m.running_mean, m.running_var, m.num_batches_tracked)
                     if b is not None]  # the recomputation must not count this batch twice
            try:
                return original(*a, **kw)
            finally:  # also when torch stops the recomputation early, as soon as it has what backward needs
                with torch.no_grad():
                    for buffer, copy in saved:
                        buffer.copy_(copy)

        return checkpoint(run, *args, use_reentrant=False, **kwargs)

    module.forward = forward
    setattr(module, _WRAPPED, True)


def _unwrap(module: torch.nn.Module) -> None:
    if getattr(module, _WRAPPED, False):
        del module.forward
        delattr(module, _WRAPPED)


def tower_blocks(model: torch.nn.Module) -> dict[str, list[torch.nn.Module]]:
    """The repeated blocks of each tower (only towers whose architecture is known)."""
    out: dict[str, list[Any]] = {}
    own = getattr(model, "checkpoint_blocks", None)
    if own is not None:  # the offline model says what its blocks are
        return dict(own())
    visual = getattr(model, "visual", None)
    if visual is not None:
        if hasattr(getattr(visual, "transformer", None), "resblocks"):  # ViT
            out["image"] = list(visual.transformer.resblocks)
        elif all(hasattr(visual, f"layer{i}") for i in range(1, 5)):  # ModifiedResNet
            out["image"] = [getattr(visual, f"layer{i}") for i in range(1, 5)]
        elif hasattr(getattr(visual, "trunk", None), "blocks"):  # timm towers
            out["image"] = list(visual.trunk.blocks)
    blocks = getattr(getattr(model, "transformer", None), "resblocks", None)
    if blocks is None:
        blocks = getattr(getattr(getattr(model, "text", None), "transformer", None), "resblocks", None)
    if blocks is not None:
        out["text"] = list(blocks)
    return out


def set_grad_checkpointing(model: torch.nn.Module, enable: bool) -> list[str]:
    """Wrap (or unwrap) every known tower's blocks; returns the towers now checkpointed."""
    towers = tower_blocks(model)
    for blocks in towers.values():
        for block in blocks:
            if not enable:
                _unwrap(block)
            elif not getattr(block, _WRAPPED, False):
                _wrap(block)
    return sorted(towers) if enable else []
