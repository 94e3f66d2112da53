"""What training calls on a model beyond `torch.nn.Module`, written down as types.

open_clip's CLIP and the offline model provide these methods by duck typing, and torch types every attribute
it does not know as `Tensor | Module`, so a call such as `model.encode_image(x)` on a plain `nn.Module` does
not type-check. The trainer keeps the model as an `nn.Module` for what torch provides (parameters, modes) and
views it through these protocols for the rest; the views change nothing at run time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, cast

if TYPE_CHECKING:  # pragma: no cover
    import torch


class ContrastiveModel(Protocol):
    """A CLIP-style model: two towers and a learned temperature (log of the logit scale)."""

    logit_scale: torch.Tensor

    def encode_image(self, image: torch.Tensor) -> torch.Tensor: ...

    def encode_text(self, text: torch.Tensor) -> torch.Tensor: ...


class HeadModel(ContrastiveModel, Protocol):
    """A model whose image tower is a trunk and light heads (offline-mini): the trunk's features can be cached."""

    def image_features(self, image: torch.Tensor) -> torch.Tensor: ...

    def image_head(self, features: torch.Tensor, normalize: bool = False) -> torch.Tensor: ...


def contrastive(model: torch.nn.Module) -> ContrastiveModel:
    """`model` viewed as a CLIP-style model (every model clipsearch trains is one)."""
    return cast("ContrastiveModel", model)


def with_heads(model: torch.nn.Module) -> HeadModel:
    """`model` viewed as trunk and heads; only for models `locks.can_cache_image_features` accepted."""
    return cast("HeadModel", model)
