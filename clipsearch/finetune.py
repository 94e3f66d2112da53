"""Adapt a model to a labelled domain set and measure it honestly.

The set is split train / validation / test (stratified, seeded). Validation alone picks the epoch and the WiSE-FT
blend α (a grid that includes 0 — the base itself — and 1) on validation accuracy (recall@5 for captions),
ties broken by the smooth calibrated validation loss; the base is a candidate, so the shipped model is never
worse than its base there. The test split only reports: base → fine-tuned →
shipped blend, with the number of images, Wilson intervals and a paired bootstrap interval of the gain.
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
from .evaluate import class_embeddings, embedding_metrics
from .images import decode_paths
from .fsutil import atomic_write_text
from .models import DEFAULT_MODEL
from .stats import paired_difference, wilson
from .training import (
    ImageSide, TrainConfig, apply_locks, can_cache_image_features, model_family, resolve_config, settings_dict,
    text_is_frozen, train_contrastive,
)

if TYPE_CHECKING:  # pragma: no cover
    import torch

ALPHA_GRID = (0.0, 0.25, 0.5, 0.75, 1.0)
SMALL_SPLIT = 30  # below this many images a split gets a warning


@dataclass
class FinetuneReport:
    out: str
    base_model: str
    alpha: float  # the blend shipped: 0 = the base itself, 1 = the fine-tuned weights
    train_images: int
    val_images: int
    test_images: int = 0
    family: str = ""
    shipped: str = ""  # "base", "fine-tuned" or "blended"
    split: str = "test"  # which split base/finetuned/blended were measured on ("validation" when there is no test)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    classes: list[str] = field(default_factory=list)
    base: dict[str, float] = field(default_factory=dict)  # on the test split
    finetuned: dict[str, float] = field(default_factory=dict)
    blended: dict[str, float] = field(default_factory=dict)  # the shipped model
    validation: dict[str, dict[str, float]] = field(default_factory=dict)  # base / fine-tuned / blended
    intervals: dict[str, list[float]] = field(default_factory=dict)  # Wilson 95% of the key metric on the test split
    gain: dict[str, float] = field(default_factory=dict)  # shipped − base on the test split, paired bootstrap 95%
    best_epoch: int = 0
    epochs: list[dict[str, float]] = field(default_factory=list)  # validation after each epoch
    alpha_curve: list[dict[str, float]] = field(default_factory=list)  # validation per α at the best epoch
    settings: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    stopped_early: bool = False
    train_seconds: float = 0.0
    images_per_second: float = 0.0

    @property
    def key_metric(self) -> str:
        return "top1" if self.classes else "text_to_image_r5"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["skipped"] = [{"path": p, "error": e} for p, e in self.skipped]
        d["key_metric"] = self.key_metric
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


def choose(candidates: Sequence[dict[str, float]], key_metric: str) -> dict[str, float]:
    """The best candidate on validation: highest `key_metric`, then lowest calibrated loss; on a full tie the
    first (list the base first and it wins ties, so a fine-tune must beat it to ship)."""
    return min(enumerate(candidates), key=lambda ic: (-ic[1][key_metric], round(ic[1]["loss"], 9), ic[0]))[1]


def _state(model: "torch.nn.Module") -> dict[str, "torch.Tensor"]:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def _align_classes(train: LabelledSet, other: LabelledSet, param: str) -> LabelledSet:
    if train.has_classes != other.has_classes:
        raise ClipsearchError(f"the {param} set must be the same kind of set as the training data (classes or captions)",
                              param=param)
    if not train.has_classes:
        return other
    index = {name: i for i, name in enumerate(train.classes)}
    unknown = sorted(set(other.classes) - set(index))
    if unknown:
        raise ClipsearchError(f"the {param} set has classes the training set lacks: {', '.join(unknown)}", param=param)
    items = [datasets.Item(it.path, index[other.classes[it.label]]) for it in other.items]
    return LabelledSet(items, train.classes, other.source)


def _captions(data: LabelledSet, templates: Sequence[str], seed: int) -> tuple[list[str], list[int]]:
    """Captions and the ids that decide which pairs are positives (same class, or identical caption)."""
    if data.has_classes:
        rng = np.random.default_rng(seed)
        caps = [templates[int(rng.integers(len(templates)))].format(data.classes[it.label]) for it in data.items]
        return caps, [int(it.label) for it in data.items]
    caps = [it.caption or "" for it in data.items]
    ids: dict[str, int] = {}
    return caps, [ids.setdefault(c, len(ids)) for c in caps]


def _splits(data_path, val_path, test_path, val_fraction: float, test_fraction: float,
            seed: int) -> tuple[LabelledSet, LabelledSet, LabelledSet | None]:
    data = datasets.load(data_path)
    test = _align_classes(data, datasets.load(test_path), "test") if test_path else None
    if val_path:
        val = _align_classes(data, datasets.load(val_path), "val")
        if test is None and test_fraction > 0:
            data, test = datasets.split(data, test_fraction, seed)
        return data, val, test
    if test is not None:
        train, val = datasets.split(data, val_fraction, seed)
        return train, val, test
    return datasets.split_three(data, val_fraction, test_fraction, seed)


class _Scorer:
    """Scores the encoder's current weights on a split; frozen parts (trunk features, text) are computed once."""

    def __init__(self, encoder: Any, side: ImageSide, templates: Sequence[str], text_frozen: bool) -> None:
        self.encoder, self.side, self.templates, self.text_frozen = encoder, side, templates, text_frozen
        self._text: dict[int, np.ndarray] = {}

    def _text_emb(self, data: LabelledSet) -> np.ndarray:
        if self.text_frozen and id(data) in self._text:
            return self._text[id(data)]
        if data.has_classes:
            emb = class_embeddings(self.encoder, data.classes, self.templates)
        else:
            caps = [it.caption or "" for it in data.items]
            emb = np.concatenate([self.encoder.encode_texts(caps[i:i + 256]) for i in range(0, len(caps), 256)])
        self._text[id(data)] = emb
        return emb

    def __call__(self, data: LabelledSet, pixels: np.ndarray) -> tuple[dict[str, float], np.ndarray]:
        return embedding_metrics(self.side.embed(pixels), data, self._text_emb(data))


def finetune(data_path: str | Path, out: str | Path, *, base_model: str = DEFAULT_MODEL, val_path: str | Path | None = None,
             test_path: str | Path | None = None, val_fraction: float = 0.2, test_fraction: float = 0.2,
             templates: Sequence[str] | None = None, config: TrainConfig | None = None,
             alpha: float | None = None, device: str | None = None,
             on_step: Callable[[int, int, float, float, float], None] | None = None,
             on_stage: Callable[[str], None] | None = None) -> FinetuneReport:
    """Fine-tune `base_model` on `data_path` and write the shipped model (base, fine-tuned or a blend) to `out`.

    `alpha` None chooses the blend on validation from ALPHA_GRID; a number fixes it (the base still wins when
    the blend scores below it on validation). `config` fields left None are chosen by `resolve_config`."""
    from .models import load_encoder, save_model_folder

    config = config or TrainConfig()
    templates = tuple(templates or DEFAULT_TEMPLATES)
    if any("{}" not in t for t in templates):
        raise ClipsearchError("every template needs a {} where the label goes", 'e.g. "a photo of a {}."', param="templates")
    if alpha is not None and not 0.0 <= alpha <= 1.0:
        raise ClipsearchError(f"alpha must be within [0, 1], got {alpha}", param="alpha")
    stage = on_stage or (lambda _msg: None)
    train, val, test = _splits(data_path, val_path, test_path, val_fraction, test_fraction, config.seed)

    stage(f"loading {base_model}")
    encoder = load_encoder(base_model, device)
    n_test = len(test.items) if test else 0
    stage(f"decoding {len(train.items)} training, {len(val.items)} validation and {n_test} test images")
    train_px, kept, skipped = decode_paths(encoder, [it.path for it in train.items])
    train = train.subset(kept)
    val_px, kept, more = decode_paths(encoder, [it.path for it in val.items])
    val = val.subset(kept)
    skipped += more
    test_px = None
    if test is not None:
        test_px, kept, more = decode_paths(encoder, [it.path for it in test.items])
        test = test.subset(kept)
        skipped += more
        if not test.items:
            test = None
    if len(train.items) < 2 or not val.items:
        raise ClipsearchError("too few readable images to fine-tune", f"{len(skipped)} could not be read")

    family = model_family(encoder.spec)
    cfg = resolve_config(config, family, len(train.items))
    report = FinetuneReport(out=str(Path(out).resolve()), base_model=encoder.spec.text, alpha=0.0,
                            train_images=len(train.items), val_images=len(val.items),
                            test_images=len(test.items) if test else 0, family=family, skipped=skipped,
                            classes=list(train.classes), settings=settings_dict(cfg, len(train.items)))
    key = report.key_metric
    for name, part in (("validation", val), ("test", test)):
        if part is not None and len(part.items) < SMALL_SPLIT:
            report.warnings.append(f"the {name} split has {len(part.items)} images: too few to tell small differences; "
                                   "add images or give larger --val/--test sets")
    if test is None:
        report.split = "validation"
        report.warnings.append("no test split: the numbers below are on the validation split that chose the epoch "
                               "and the blend, so they flatter the fine-tune")

    apply_locks(encoder.model, cfg)
    side = ImageSide(encoder, can_cache_image_features(encoder.model) and not (cfg.random_crop or cfg.color_jitter))
    scorer = _Scorer(encoder, side, templates, text_is_frozen(encoder.model))
    stage("evaluating the base model")
    base_val, _ = scorer(val, val_px)
    base_state = _state(encoder.model)
    best: dict[str, Any] = {"metrics": None, "state": None, "epoch": 0, "since": 0}

    def on_epoch(epoch: int) -> bool:
        metrics, _ = scorer(val, val_px)
        report.epochs.append({"epoch": epoch + 1, **metrics})
        current = best["metrics"]
        if current is None or choose([current, metrics], key) is metrics:
            best.update(metrics=metrics, state=_state(encoder.model), epoch=epoch + 1, since=0)
        else:
            best["since"] += 1
        return cfg.patience > 0 and best["since"] >= cfg.patience

    captions, pair_ids = _captions(train, templates, cfg.seed)
    history = train_contrastive(encoder, train_px, captions, pair_ids, cfg, on_step=on_step, on_epoch=on_epoch,
                                image_side=side)
    report.train_seconds = history.seconds
    report.images_per_second = history.images_per_second
    report.best_epoch = int(best["epoch"])
    report.stopped_early = history.stopped_early
    report.settings.update(epochs_run=history.epochs_run, cached_image_features=history.cached_image_features,
                           cached_text=history.cached_text)

    stage("choosing the blend on validation")
    tuned_state = best["state"]
    alphas = ALPHA_GRID if alpha is None else (0.0, alpha)
    states: dict[float, dict] = {0.0: base_state, 1.0: tuned_state}
    for a in alphas:
        if a in (0.0, 1.0):
            metrics = base_val if a == 0.0 else best["metrics"]
        else:
            encoder.model.load_state_dict(blend_states(base_state, tuned_state, a))
            metrics, _ = scorer(val, val_px)
        report.alpha_curve.append({"alpha": a, **metrics})
    chosen = choose(report.alpha_curve, key)  # α 0 — the base — comes first
    report.alpha = float(chosen["alpha"])
    report.shipped = "base" if report.alpha == 0.0 else "fine-tuned" if report.alpha == 1.0 else "blended"
    if alpha is not None and report.alpha != alpha:
        report.warnings.append(f"alpha {alpha} scored below the base on validation: shipping the base model")
    shipped_state = states.get(report.alpha) or blend_states(base_state, tuned_state, report.alpha)
    by_alpha = {row["alpha"]: {k: v for k, v in row.items() if k != "alpha"} for row in report.alpha_curve}
    report.validation = {"base": by_alpha[0.0], "finetuned": best["metrics"], "blended": by_alpha[report.alpha]}

    stage("measuring base, fine-tuned and shipped on the test split" if test else "measuring on validation")
    part, part_px = (test, test_px) if test is not None else (val, val_px)
    hits: dict[str, np.ndarray] = {}
    for name, state in (("base", base_state), ("finetuned", tuned_state), ("blended", shipped_state)):
        encoder.model.load_state_dict(state)
        metrics, hits[name] = scorer(part, part_px)
        setattr(report, name, metrics)
        lo, hi = wilson(float(hits[name].sum()), len(hits[name]))
        report.intervals[name] = [lo, hi]
    report.gain = paired_difference(hits["base"], hits["blended"], seed=cfg.seed)
    if report.shipped != "base" and report.gain["low"] <= 0.0 <= report.gain["high"]:
        report.warnings.append(
            f"the {report.split} split ({len(part.items)} images) cannot tell the shipped model from the base: "
            f"{key} gain {report.gain['difference']:+.3f}, 95% CI {report.gain['low']:+.3f}..{report.gain['high']:+.3f}")

    encoder.model.load_state_dict(shipped_state)
    out = Path(out)
    save_model_folder(encoder, out, extra={
        "classes": report.classes, "templates": list(templates), "alpha": report.alpha, "shipped": report.shipped,
        "metrics": {"split": report.split, "base": report.base, "finetuned": report.finetuned,
                    "blended": report.blended},
    })
    atomic_write_text(out / "metrics.json", json.dumps({**report.to_dict(), "losses": history.losses}, indent=2))
    return report
