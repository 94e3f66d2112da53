"""The checkpoint of a fine-tune in progress: what `finetune --resume` continues from.

One file, `checkpoint.pt` in the output folder, replaced atomically after an epoch: the weights that train
(and every buffer), the optimizer, the random streams, the records of the phase in progress (epochs scored,
the best epoch's weights) and the results of finished phases (cross-validation folds). A fingerprint of the
base model, the data and the resolved settings guards it: a resume with anything different is refused with the
field that differs, since continuing would silently mix two runs. The file is removed once the model is saved.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clipsearch.errors import ClipsearchError
from clipsearch.fsutil import atomic_write

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from clipsearch.tune.datasets import LabelledSet
    from clipsearch.tune.training import TrainState

CHECKPOINT_NAME = "checkpoint.pt"
FORMAT = 1


def data_digest(*parts: LabelledSet | None) -> str:
    """A digest of which images, labels and captions each split holds (their order included)."""
    h = hashlib.sha256()
    for part in parts:
        rows = [] if part is None else [[str(it.path), it.label, it.caption] for it in part.items]
        classes = [] if part is None else list(part.classes)
        h.update(json.dumps([rows, classes]).encode())
    return h.hexdigest()


def trained_keys(model: torch.nn.Module) -> list[str]:
    """State-dict keys that can change while training: parameters that train and every buffer."""
    keys = {n for n, p in model.named_parameters() if p.requires_grad}
    keys |= {n for n, _ in model.named_buffers()}
    return [k for k in model.state_dict() if k in keys]


class Checkpoint:
    """Reads and writes `folder/checkpoint.pt` for one run, identified by its fingerprint."""

    def __init__(self, folder: Path, fingerprint: dict[str, Any], every_s: float = 10.0) -> None:
        self.path = Path(folder) / CHECKPOINT_NAME
        self.fingerprint = fingerprint
        self.every_s = every_s
        self.done: dict[str, Any] = {}  # results of finished phases
        self._last = time.monotonic()

    def exists(self) -> bool:
        return self.path.exists()

    def describe(self) -> str:
        saved = self.load(check=False)
        train = saved.get("train") or {}
        return f"phase {saved.get('phase')}, {train.get('epoch', 0)} epochs done"

    def load(self, check: bool = True) -> dict[str, Any]:
        import torch

        try:
            saved = torch.load(self.path, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise ClipsearchError(f"no checkpoint to resume in {self.path.parent}",
                                  "start the fine-tune without `resume`", param="resume") from None
        except Exception as exc:  # a damaged file must never be trusted
            raise ClipsearchError(f"the checkpoint {self.path} cannot be read ({type(exc).__name__})",
                                  "start over with `restart`", param="resume") from None
        if not isinstance(saved, dict) or saved.get("format") != FORMAT:
            raise ClipsearchError(f"{self.path} is not a clipsearch fine-tuning checkpoint of this version",
                                  "start over with `restart`", param="resume")
        if check:
            theirs = saved.get("fingerprint", {})
            for key in sorted(set(theirs) | set(self.fingerprint)):
                if theirs.get(key) != self.fingerprint.get(key):
                    what = "the data or its split" if key == "data" else key.replace("_", " ")
                    raise ClipsearchError(
                        f"the checkpoint in {self.path.parent} was made with a different {what}: "
                        f"{_short(theirs.get(key))} there, {_short(self.fingerprint.get(key))} now",
                        "give the same data and options as the interrupted run, or start over with `restart`",
                        param="resume")
            self.done = dict(saved.get("done", {}))
        return saved

    def due(self, final: bool) -> bool:
        return final or time.monotonic() - self._last >= self.every_s

    def save(self, phase: str, train: TrainState, weights: dict[str, torch.Tensor], record: dict[str, Any]) -> None:
        import torch

        state = {f.name: getattr(train, f.name) for f in fields(train)}  # asdict would deep-copy the optimizer
        payload = {"format": FORMAT, "fingerprint": self.fingerprint, "done": self.done, "phase": phase,
                   "train": state, "weights": weights, "record": record}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(self.path, lambda tmp: torch.save(payload, tmp))
        self._last = time.monotonic()

    def finish_phase(self, phase: str, result: Any) -> None:
        """Record a finished phase's result; it is written with the next phase's first checkpoint."""
        self.done[phase] = result

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, default=str) if not isinstance(value, str) else value
    return text if len(text) <= 60 else text[:57] + "..."
