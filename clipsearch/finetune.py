"""Adapt a model to a labelled domain set and prove it helped: evaluate before/after on the same held-out
split, keep the best epoch, blend with the base in weight space (WiSE-FT), and save a model folder.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from . import datasets
from .datasets import DEFAULT_TEMPLATES, LabelledSet
from .errors import ClipsearchError
from .evaluate import evaluate
from .images import decode_paths
from .fsutil import atomic_write_text
from .models import DEFAULT_MODEL
from .training import TrainConfig, train_contrastive

if TYPE_CHECKING:  # pragma: no cover
    import torch


@dataclass
class FinetuneReport:
    out: str
    base_model: str
    alpha: float
    train_images: int
    val_images: int
    skipped: list[tuple[str, str]] = field(default_factory=list)
    classes: list[str] = field(default_factory=list)
    base: dict[str, float] = field(default_factory=dict)
    finetuned: dict[str, float] = field(default_factory=dict)
    blended: dict[str, float] = field(default_factory=dict)
    best_epoch: int = 0
    epochs: list[dict[str, float]] = field(default_factory=list)
    train_seconds: float = 0.0
    images_per_second: float = 0.0

    @property
    def key_metric(self) -> str:
        return "top1" if self.classes else "text_to_image_r1"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["skipped"] = [{"path": p, "error": e} for p, e in self.skipped]
        return d


def blend_states(base: dict[str, "torch.Tensor"], tuned: dict[str, "torch.Tensor"], alpha: float) -> dict[str, "torch.Tensor"]:
    """WiSE-FT: θ = (1−α)·θ_base + α·θ_tuned for float tensors (counters are taken from the tuned model)."""
    if not 0.0 <= alpha <= 1.0:
        raise ClipsearchError(f"alpha must be within [0, 1], got {alpha}", param="alpha")
    if base.keys() != tuned.keys():
        raise ClipsearchError("cannot blend models of different architectures")
    out = {}
    for name, t in tuned.items():
        b = base[name]
        out[name] = ((1.0 - alpha) * b + alpha * t).to(t.dtype) if t.is_floating_point() else t.clone()
    return out


def _state(model: "torch.nn.Module") -> dict[str, "torch.Tensor"]:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def _align_classes(train: LabelledSet, val: LabelledSet) -> LabelledSet:
    if train.has_classes != val.has_classes:
        raise ClipsearchError("the validation set must be the same kind of set as the training data (classes or captions)", param="val")
    if not train.has_classes:
        return val
    index = {name: i for i, name in enumerate(train.classes)}
    unknown = sorted(set(val.classes) - set(index))
    if unknown:
        raise ClipsearchError(f"the validation set has classes the training set lacks: {', '.join(unknown)}", param="val")
    items = [datasets.Item(it.path, index[val.classes[it.label]]) for it in val.items]
    return LabelledSet(items, train.classes, val.source)


def _captions(data: LabelledSet, templates: Sequence[str], seed: int) -> tuple[list[str], list[int]]:
    """Captions and the ids that decide which pairs are positives (same class, or identical caption)."""
    if data.has_classes:
        rng = np.random.default_rng(seed)
        caps = [templates[int(rng.integers(len(templates)))].format(data.classes[it.label]) for it in data.items]
        return caps, [int(it.label) for it in data.items]
    caps = [it.caption or "" for it in data.items]
    ids: dict[str, int] = {}
    return caps, [ids.setdefault(c, len(ids)) for c in caps]


def finetune(data_path: str | Path, out: str | Path, *, base_model: str = DEFAULT_MODEL, val_path: str | Path | None = None,
             val_fraction: float = 0.2, templates: Sequence[str] | None = None, config: TrainConfig | None = None,
             alpha: float = 0.5, device: str | None = None,
             on_step: Callable[[int, int, float, float, float], None] | None = None,
             on_stage: Callable[[str], None] | None = None) -> FinetuneReport:

    from .models import load_encoder, save_model_folder

    config = config or TrainConfig()
    templates = tuple(templates or DEFAULT_TEMPLATES)
    if any("{}" not in t for t in templates):
        raise ClipsearchError("every template needs a {} where the label goes", 'e.g. "a photo of a {}."', param="templates")
    if not 0.0 <= alpha <= 1.0:
        raise ClipsearchError(f"alpha must be within [0, 1], got {alpha}", param="alpha")
    stage = on_stage or (lambda _msg: None)
    data = datasets.load(data_path)
    if val_path:
        train, val = data, _align_classes(data, datasets.load(val_path))
    else:
        train, val = datasets.split(data, val_fraction, config.seed)

    stage(f"loading {base_model}")
    encoder = load_encoder(base_model, device)
    stage(f"decoding {len(train.items)} training and {len(val.items)} held-out images")
    train_px, kept, skipped = decode_paths(encoder, [it.path for it in train.items])
    train = train.subset(kept)
    val_px, kept, val_skipped = decode_paths(encoder, [it.path for it in val.items])
    val = val.subset(kept)
    skipped += val_skipped
    if len(train.items) < 2 or not val.items:
        raise ClipsearchError("too few readable images to fine-tune", f"{len(skipped)} could not be read")

    report = FinetuneReport(out=str(Path(out).resolve()), base_model=encoder.spec.text, alpha=alpha,
                            train_images=len(train.items), val_images=len(val.items), skipped=skipped,
                            classes=list(train.classes))
    stage("evaluating the base model")
    report.base = evaluate(encoder, val, templates, pixels=val_px)
    base_state = _state(encoder.model)
    best = {"score": -1.0, "state": base_state, "epoch": 0}

    def on_epoch(epoch: int) -> None:
        metrics = evaluate(encoder, val, templates, pixels=val_px)
        report.epochs.append({"epoch": epoch + 1, **metrics})
        if metrics[report.key_metric] > best["score"]:
            best.update(score=metrics[report.key_metric], state=_state(encoder.model), epoch=epoch + 1)

    captions, pair_ids = _captions(train, templates, config.seed)
    history = train_contrastive(encoder, train_px, captions, pair_ids, config, on_step=on_step, on_epoch=on_epoch)
    report.train_seconds = history.seconds
    report.images_per_second = history.images_per_second
    report.best_epoch = int(best["epoch"])

    stage("evaluating the fine-tuned and blended models")
    tuned_state = best["state"]
    encoder.model.load_state_dict(tuned_state)
    report.finetuned = evaluate(encoder, val, templates, pixels=val_px)
    encoder.model.load_state_dict(blend_states(base_state, tuned_state, alpha))
    report.blended = evaluate(encoder, val, templates, pixels=val_px)

    out = Path(out)
    save_model_folder(encoder, out, extra={
        "classes": report.classes, "templates": list(templates), "alpha": alpha,
        "metrics": {"base": report.base, "finetuned": report.finetuned, "blended": report.blended},
    })
    atomic_write_text(out / "metrics.json", json.dumps(report.to_dict(), indent=2))
    return report
