"""What an index run reports (`RunSummary`): its counts, timings, where it encoded, what failed."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class RunSummary:
    scanned: int = 0
    added: int = 0
    updated: int = 0
    moved: int = 0
    removed: int = 0
    unchanged: int = 0
    failed: int = 0
    not_images: int = 0
    encoded: int = 0
    hashed: int = 0  # images given perceptual hashes without being re-encoded (indexed before hashes were kept)
    metadata_read: int = 0  # files whose photo metadata was read from their headers alone (nothing encoded)
    verified: int = 0
    aliases: int = 0
    thumbnails: int = 0
    waiting: int = 0  # a re-embed: images of vanished roots kept, re-encoded when their folder is back
    seconds: float = 0.0
    encode_seconds: float = 0.0
    model_seconds: float = 0.0
    backend: str = ""  # where the run's embeddings were made (`encoders.base.runs_on`); "" without encoding
    device: str = ""
    precision: str = ""
    text_read: int = 0  # images (and video frames) whose text was read this run (`text_stage`)
    text_found: int = 0  # of those, the ones holding some text
    text_seconds: float = 0.0  # the text stage's busy time (it runs beside encoding)
    failures: list[tuple[str, str]] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)
    vanished_roots: list[str] = field(default_factory=list)

    @property
    def images_per_second(self) -> float:
        return self.encoded / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in self.__dict__.items() if k not in ("failures", "problems")}
        d["images_per_second"] = round(self.images_per_second, 2)
        d["failures"] = [{"path": p, "error": e} for p, e in self.failures]
        d["problems"] = [{"path": p, "error": e} for p, e in self.problems]
        return d

    def counts(self) -> dict[str, Any]:
        keys = ("scanned", "added", "updated", "moved", "removed", "unchanged", "failed", "seconds")
        return {k: getattr(self, k) for k in keys}
