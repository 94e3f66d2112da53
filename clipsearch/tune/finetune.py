"""Adapt a model to a labelled domain set and measure it honestly.

The set is split train / validation / test (stratified, seeded). Validation alone picks the epoch and the WiSE-FT
blend α (a grid that includes 0 — the base itself — and 1) on validation accuracy (recall@5 for captions),
ties broken by the smooth calibrated validation loss; the base is a candidate, so the shipped model is never
worse than its base there. A set too small for a validation split of SMALL_SPLIT images is cross-validated
instead (`crossval.py`): every non-test image validates once, then one run on all of them ships. The test
split only reports: base → fine-tuned → shipped blend, with the number of images, Wilson intervals and a paired
bootstrap interval of the gain. A checkpoint after each epoch lets an interrupted run resume exactly.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from clipsearch.encoders.spec import DEFAULT_MODEL
from clipsearch.errors import ClipsearchError
from clipsearch.fsutil import atomic_write_text
from clipsearch.media.images import decode_paths
from clipsearch.tune import datasets
from clipsearch.tune.checkpoint import Checkpoint, data_digest
from clipsearch.tune.config import TrainConfig, model_family, resolve_config, settings_dict
from clipsearch.tune.datasets import LabelledSet
from clipsearch.tune.runs import ALPHA_GRID, SMALL_SPLIT, FinetuneRun, choose
from clipsearch.tune.stats import paired_difference, wilson
from clipsearch.tune.training import OnStep

DEFAULT_FOLDS = 5  # cross-validation folds when a validation split would be smaller than SMALL_SPLIT


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
    folds: int = 1  # > 1: epoch and α were chosen by k-fold cross-validation over the non-test images
    resumed: str = ""  # where an interrupted run was resumed from
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


def _align_classes(train: LabelledSet, other: LabelledSet, param: str) -> LabelledSet:
    if train.has_classes != other.has_classes:
        raise ClipsearchError(f"the {param} set must be the same kind of set as the training data "
                              "(classes or captions)", param=param)
    if not train.has_classes:
        return other
    index = {name: i for i, name in enumerate(train.classes)}
    unknown = sorted(set(other.classes) - set(index))
    if unknown:
        raise ClipsearchError(f"the {param} set has classes the training set lacks: {', '.join(unknown)}", param=param)
    items = [datasets.Item(it.path, index[other.classes[label]])
             for it, label in zip(other.items, other.labels(), strict=True)]
    return LabelledSet(items, train.classes, other.source)


def _decode(encoder: Any, data: LabelledSet,
            skipped: list[tuple[str, str]]) -> tuple[LabelledSet, np.ndarray]:
    """The readable part of `data` and its pixels; the unreadable files join `skipped`."""
    pixels, kept, failed = decode_paths(encoder, [it.path for it in data.items])
    skipped += failed
    return data.subset(kept), pixels


def finetune(data_path: str | Path, out: str | Path, *, base_model: str = DEFAULT_MODEL,
             val_path: str | Path | None = None, test_path: str | Path | None = None,
             val_fraction: float = 0.2, test_fraction: float = 0.2,
             templates: Sequence[str] | None = None, config: TrainConfig | None = None,
             alpha: float | None = None, device: str | None = None, folds: int | None = None,
             resume: bool = False, restart: bool = False, checkpoint_every_s: float = 10.0,
             on_step: OnStep | None = None,
             on_stage: Callable[[str], None] | None = None) -> FinetuneReport:
    """Fine-tune `base_model` on `data_path` and write the shipped model (base, fine-tuned or a blend) to `out`.

    `alpha` None chooses the blend on validation from ALPHA_GRID; a number fixes it (the base still wins when
    the blend scores below it on validation). `config` fields left None are chosen by `resolve_config`.
    `folds` None cross-validates (DEFAULT_FOLDS) when the validation split would hold fewer than SMALL_SPLIT
    images; 1 always uses one split; k > 1 always cross-validates. A checkpoint is written to `out` after each
    epoch (at most every `checkpoint_every_s`, and always at the end of a phase); `resume` continues it, and
    without `resume` an existing checkpoint is refused unless `restart` discards it."""
    from clipsearch.encoders.torch_needed import require_torch

    require_torch("fine-tuning")
    from clipsearch.encoders.torch_encoder import load_encoder, save_model_folder

    config = config or TrainConfig()
    templates = tuple(templates or ())  # none: each label's language's defaults (datasets.templates_for)
    if any("{}" not in t for t in templates):
        raise ClipsearchError("every template needs a {} where the label goes", 'e.g. "a photo of a {}."',
                              param="templates")
    if alpha is not None and not 0.0 <= alpha <= 1.0:
        raise ClipsearchError(f"alpha must be within [0, 1], got {alpha}", param="alpha")
    if folds is not None and folds < 1:
        raise ClipsearchError(f"folds must be at least 1, got {folds}", param="folds")
    if val_path and folds is not None and folds > 1:
        raise ClipsearchError("a validation set and cross-validation folds exclude each other",
                              "drop `val` or `folds`", param="folds")
    datasets.check_fractions(val_fraction, test_fraction)
    if resume and restart:
        raise ClipsearchError("`resume` and `restart` exclude each other", param="resume")
    stage = on_stage or (lambda _msg: None)
    out = Path(out)

    data = datasets.load(data_path)
    test_set: LabelledSet | None
    if test_path:
        test_set, share = _align_classes(data, datasets.load(test_path), "test"), val_fraction
    else:
        data, test_set, share = datasets.split_off_test(data, val_fraction, test_fraction, config.seed)
    val_set = _align_classes(data, datasets.load(val_path), "val") if val_path else None

    stage(f"loading {base_model}")
    encoder = load_encoder(base_model, device)
    n_test = len(test_set.items) if test_set else 0
    n_val = len(val_set.items) if val_set else 0
    stage(f"decoding {len(data.items) + n_val} training and validation and {n_test} test images")
    skipped: list[tuple[str, str]] = []
    pool, pool_px = _decode(encoder, data, skipped)
    given_val = _decode(encoder, val_set, skipped) if val_set is not None else None
    tested = _decode(encoder, test_set, skipped) if test_set is not None else None
    if tested is not None and not tested[0].items:
        tested = None
    test = tested[0] if tested is not None else None
    if len(pool.items) < 2:
        raise ClipsearchError("too few readable images to fine-tune", f"{len(skipped)} could not be read")
    if given_val is not None:
        (train, train_px), (val, val_px) = (pool, pool_px), given_val
    else:
        train, val = datasets.split(pool, share, config.seed)
        row_of = {id(it): i for i, it in enumerate(pool.items)}
        train_px = pool_px[[row_of[id(it)] for it in train.items]]
        val_px = pool_px[[row_of[id(it)] for it in val.items]]
    if len(train.items) < 2 or not val.items:
        raise ClipsearchError("too few readable images to fine-tune", f"{len(skipped)} could not be read")
    if folds is not None and folds > 1 and test is None:
        raise ClipsearchError("cross-validation reports on a test split, and there is none",
                              "give a `test` set or a `test_fraction` above 0, or `folds` 1", param="folds")
    small = test is not None and len(val.items) < SMALL_SPLIT  # without a test split the folds could not report
    k = 1 if val_path else folds if folds is not None else DEFAULT_FOLDS if small else 1
    k = min(k, len(pool.items))
    if k > 1:  # said before the first of them starts: k folds, then the run that ships
        stage(f"{k + 1} trainings: {k} cross-validation folds choose the epoch and the blend, then one on all "
              f"{len(pool.items)} non-test images")

    family = model_family(encoder.spec)
    n_train = len(train.items) if k == 1 else len(pool.items) - len(pool.items) // k
    cfg = resolve_config(config, family, n_train)
    report = FinetuneReport(out=str(out.resolve()), base_model=encoder.spec.text, alpha=0.0,
                            train_images=len(train.items) if k == 1 else len(pool.items),
                            val_images=len(val.items) if k == 1 else len(pool.items),
                            test_images=len(test.items) if test else 0, family=family, skipped=skipped,
                            classes=list(pool.classes), settings=settings_dict(cfg, n_train), folds=k)
    report.settings["folds"] = k
    key = report.key_metric
    fingerprint = {"base model": encoder.spec.text,
                   "data": data_digest(train, val, test) if k == 1 else data_digest(pool, None, test),
                   "templates": list(templates), "alpha": alpha, "folds": k,
                   **{f"setting {name}": value for name, value in report.settings.items()}}
    checkpoint = Checkpoint(out, fingerprint, every_s=checkpoint_every_s)
    resumed = None
    if resume:
        resumed = checkpoint.load()
        report.resumed = f"{resumed['phase']}, after epoch {resumed['train']['epoch']}"
        stage(f"resuming {report.resumed}")
    elif checkpoint.exists():
        if not restart:
            raise ClipsearchError(f"{out} holds the checkpoint of an interrupted fine-tune "
                                  f"({checkpoint.describe()})",
                                  "continue it with `resume`, or discard it with `restart`")
        checkpoint.remove()

    _warn_small(report, val if k == 1 else pool, test, k)
    run = FinetuneRun(encoder, cfg, templates, checkpoint, resumed, on_step)
    if k == 1:
        tuned, history = _single_split(run, report, train, train_px, val, val_px, cfg, alpha, stage)
    else:
        tuned, history = _cross_validated(run, report, pool, pool_px, cfg, k, alpha, stage)
    report.train_seconds = run.seconds
    report.images_per_second = history.images_per_second
    report.stopped_early = history.stopped_early
    report.settings.update(epochs_run=history.epochs_run, cached_image_features=history.cached_image_features,
                           cached_text=history.cached_text, grad_checkpointing_towers=history.checkpointed_towers)
    report.shipped = "base" if report.alpha == 0.0 else "fine-tuned" if report.alpha == 1.0 else "blended"
    if alpha is not None and report.alpha != alpha:
        report.warnings.append(f"alpha {alpha} scored below the base on validation: shipping the base model")

    stage("measuring base, fine-tuned and shipped on the test split" if test else "measuring on validation")
    part, part_px = tested if tested is not None else (val, val_px) if k == 1 else (pool, pool_px)
    hits: dict[str, np.ndarray] = {}
    for name, weight in (("base", 0.0), ("finetuned", 1.0), ("blended", report.alpha)):
        run.load_blend(tuned, weight)
        metrics, hits[name] = run.scorer(part, part_px)
        setattr(report, name, metrics)
        lo, hi = wilson(float(hits[name].sum()), len(hits[name]))
        report.intervals[name] = [lo, hi]
    report.gain = paired_difference(hits["base"], hits["blended"], seed=cfg.seed)
    if report.shipped != "base" and report.gain["low"] <= 0.0 <= report.gain["high"]:
        report.warnings.append(
            f"the {report.split} split ({len(part.items)} images) cannot tell the shipped model from the base: "
            f"{key} gain {report.gain['difference']:+.3f}, "
            f"95% CI {report.gain['low']:+.3f}..{report.gain['high']:+.3f}")

    run.load_blend(tuned, report.alpha)
    save_model_folder(encoder, out, extra={
        "classes": report.classes, "templates": list(templates), "alpha": report.alpha, "shipped": report.shipped,
        "metrics": {"split": report.split, "base": report.base, "finetuned": report.finetuned,
                    "blended": report.blended},
    })
    atomic_write_text(out / "metrics.json", json.dumps({**report.to_dict(), "losses": history.losses}, indent=2))
    checkpoint.remove()
    return report


def _warn_small(report: FinetuneReport, val: LabelledSet, test: LabelledSet | None, k: int) -> None:
    what = "validation split" if k == 1 else f"{k}-fold cross-validation"
    for name, part in ((what, val), ("test split", test)):
        if part is not None and len(part.items) < SMALL_SPLIT:
            report.warnings.append(f"the {name} has {len(part.items)} images: too few to tell small differences; "
                                   "add images or give larger `val`/`test` sets")
    if test is None:
        report.split = "validation"
        report.warnings.append("no test split: the numbers below are on the validation images that chose the epoch "
                               "and the blend, so they flatter the fine-tune")


def _single_split(run: FinetuneRun, report: FinetuneReport, train: LabelledSet, train_px: np.ndarray,
                  val: LabelledSet, val_px: np.ndarray, cfg: TrainConfig, alpha: float | None,
                  stage: Callable[[str], None]) -> tuple[dict, Any]:
    """Train once; validation picks the epoch (early stopping) and then the blend. Returns the tuned weights."""
    key = report.key_metric
    stage("evaluating the base model")
    run.load(run.base_partial)
    base_val, _ = run.scorer(val, val_px)
    record: dict[str, Any] = {"epochs": [], "best": None, "best_epoch": 0, "since": 0, "best_weights": None}

    def on_epoch(epoch: int) -> bool:
        metrics, _ = run.scorer(val, val_px)
        record["epochs"].append({"epoch": epoch + 1, **metrics})
        if record["best"] is None or choose([record["best"], metrics], key) is metrics:
            record.update(best=metrics, best_weights=run.weights(), best_epoch=epoch + 1, since=0)
        else:
            record["since"] += 1
        return cfg.patience > 0 and record["since"] >= cfg.patience

    history = run.train_phase("training", train, train_px, cfg, on_epoch, record)
    report.epochs = record["epochs"]
    report.best_epoch = int(record["best_epoch"])
    tuned = record["best_weights"]

    stage("choosing the blend on validation")
    for a in ALPHA_GRID if alpha is None else (0.0, alpha):
        if a in (0.0, 1.0):
            metrics = base_val if a == 0.0 else record["best"]
        else:
            run.load_blend(tuned, a)
            metrics, _ = run.scorer(val, val_px)
        report.alpha_curve.append({"alpha": a, **metrics})
    report.alpha = float(choose(report.alpha_curve, key)["alpha"])  # α 0 — the base — comes first
    by_alpha = {row["alpha"]: {k: v for k, v in row.items() if k != "alpha"} for row in report.alpha_curve}
    report.validation = {"base": by_alpha[0.0], "finetuned": record["best"], "blended": by_alpha[report.alpha]}
    return tuned, history


def _cross_validated(run: FinetuneRun, report: FinetuneReport, pool: LabelledSet, pool_px: np.ndarray,
                     cfg: TrainConfig, k: int, alpha: float | None, stage: Callable[[str], None]) -> tuple[dict, Any]:
    """k folds choose (epoch, α); one run on every non-test image then trains to the chosen epoch."""
    from clipsearch.tune.crossval import cross_validate

    alphas = ALPHA_GRID if alpha is None else (0.0, alpha)  # a fixed blend still has to beat the base
    selection = cross_validate(run, pool, pool_px, k, cfg, report.key_metric, alphas, stage)
    report.epochs, report.alpha_curve = selection.epochs, selection.alpha_curve
    report.validation = selection.validation
    report.alpha, report.best_epoch = selection.alpha, selection.epoch
    stage(f"training on all {len(pool.items)} images for {selection.epoch} epochs")
    history = run.train_phase("final", pool, pool_px, cfg, lambda epoch: epoch + 1 >= selection.epoch, {})
    return run.weights(), history
