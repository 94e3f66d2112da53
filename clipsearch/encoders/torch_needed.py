"""PyTorch is an extra (`clipsearch[torch]`): what needs it, and the one-line error where it is missing.

The core (`clipsearch[cpu]` or `[gpu]`) indexes, queries, serves and finds duplicates with ONNX Runtime and the
NumPy text tower once a model's export is in the cache. torch, torchvision, open_clip, timm and transformers are
needed to make an export (an open_clip checkpoint, a model folder, the offline model's first use), for the torch
backend and for fine-tuning. Those paths call `require_torch` first; the CLI also turns any other import of these
modules that fails into the same message.
"""

from __future__ import annotations

import importlib

from clipsearch.errors import ClipsearchError

TORCH_MODULES = ("torch", "torchvision", "open_clip", "timm", "transformers")
INSTALL_HINT = 'install PyTorch and open_clip with: pip install "clipsearch[torch]"'


class TorchMissingError(ClipsearchError):
    """A command needs the [torch] extra, which is not installed."""

    def __init__(self, purpose: str, module: str | None = None) -> None:
        missing = f" ({module} is not installed)" if module else ""
        super().__init__(f"{purpose} needs PyTorch{missing}", INSTALL_HINT)


def is_torch_module(name: str | None) -> bool:
    """Whether an import of `name` belongs to the [torch] extra."""
    return bool(name) and str(name).partition(".")[0] in TORCH_MODULES


def require_torch(purpose: str) -> None:
    """Import torch and open_clip (the caller is about to use them), or raise TorchMissingError for `purpose`."""
    for module in ("torch", "open_clip"):
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise TorchMissingError(purpose, exc.name or module) from None
