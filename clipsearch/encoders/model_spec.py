"""What a parsed model spec is (`ModelSpec`) and how a checkpoint file is fingerprinted: the value every part of
`encoders` passes around, kept apart from the parsing (`spec`) so the model sources that parse their own specs
(`published`, `chinese_clip`) need not import the parser that calls them."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class ModelSpec:
    """A parsed spec; `key` identifies the weights so a store can refuse mixed vectors."""

    text: str
    kind: str  # "open_clip", "folder", "offline", "chinese_clip" or "published"
    arch: str
    pretrained: str | None = None  # tag, checkpoint path, or None for random init
    folder: Path | None = None
    key: str = ""
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def cache_key(self) -> str:
        """What the ONNX export cache is keyed by: `key`, and for a model folder its whole manifest as well (the
        key names the weights only; a folder whose config was edited must not reuse an export of the old one)."""
        if self.kind != "folder":
            return self.key
        digest = hashlib.sha256(json.dumps(self.extra, sort_keys=True, default=str).encode()).hexdigest()[:16]
        return f"{self.key}:manifest:{digest}"


def file_fingerprint(path: Path) -> str:
    """Hash size + head + tail: identifies a checkpoint in milliseconds, even for GB-sized files."""
    h = hashlib.sha256()
    size = path.stat().st_size
    h.update(str(size).encode())
    with open(path, "rb") as f:
        h.update(f.read(1 << 20))
        if size > 1 << 20:
            f.seek(max(size - (1 << 20), 0))
            h.update(f.read(1 << 20))
    return h.hexdigest()[:16]
