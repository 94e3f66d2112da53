"""Cross-validated choice of the epoch and the blend, for sets too small for a validation split.

The non-test images are dealt into k stratified folds. Each fold trains from the base on the other k−1 and
scores, after every epoch, the fine-tuned weights and their WiSE-FT blends on its own images. Pooled over the
folds, every non-test image has validated once, so the choice of (epoch, α) rests on all of them rather than on
a split of a few dozen; the base (α 0) is a candidate and wins ties. The run that ships then trains on all the
non-test images with the same settings and stops at the chosen epoch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from clipsearch.tune.config import TrainConfig
from clipsearch.tune.datasets import LabelledSet, class_groups
from clipsearch.tune.runs import FinetuneRun, choose


def fold_indices(data: LabelledSet, k: int, seed: int) -> list[np.ndarray]:
    """k disjoint folds covering `data`: each class shuffled (seeded) and dealt round-robin, continuing where
    the previous class stopped, so folds differ in size by at most one and every class is spread evenly."""
    rng = np.random.default_rng(seed)
    groups = class_groups(data)
    folds: list[list[int]] = [[] for _ in range(k)]
    dealt = 0
    for key in sorted(groups, key=lambda g: -1 if g is None else g):
        for member in rng.permutation(groups[key]):
            folds[dealt % k].append(int(member))
            dealt += 1
    return [np.asarray(sorted(f), dtype=np.int64) for f in folds]


def pooled(rows: list[dict[str, float]]) -> dict[str, float]:
    """Metrics over the union of the folds' images: each fold weighted by its number of images."""
    n = np.asarray([r["images"] for r in rows], dtype=np.float64)
    out = {k: float(np.dot(n, [r[k] for r in rows]) / n.sum()) for k in rows[0] if k != "images"}
    out["images"] = float(n.sum())
    return out


@dataclass
class Selection:
    epoch: int  # how many epochs the shipped run trains
    alpha: float
    folds: int
    validation: dict[str, dict[str, float]]  # pooled out-of-fold: base, fine-tuned, blended
    epochs: list[dict[str, float]] = field(default_factory=list)  # pooled α = 1 after each epoch
    alpha_curve: list[dict[str, float]] = field(default_factory=list)  # pooled, at the chosen epoch


def cross_validate(run: FinetuneRun, pool: LabelledSet, pool_px: np.ndarray, k: int, cfg: TrainConfig,
                   key: str, alphas: Sequence[float], stage: Callable[[str], None]) -> Selection:
    """Train the k folds (resuming any the checkpoint holds) and choose (epoch, α among `alphas`) on their
    pooled scores."""
    folds = fold_indices(pool, k, cfg.seed)
    everyone = np.arange(len(pool.items))
    results = []
    for f, val_rows in enumerate(folds):
        name = f"fold {f + 1} of {k}"
        if name in run.checkpoint.done:
            results.append(run.checkpoint.done[name])
            continue
        train_rows = np.setdiff1d(everyone, val_rows)
        train, val = pool.subset(train_rows), pool.subset(val_rows)
        train_px = run.side.share(pool_px, train_rows, flips=bool(cfg.hflip))
        val_px = run.side.share(pool_px, val_rows)
        run.load(run.base_partial)
        base, _ = run.scorer(val, val_px)
        record: dict[str, Any] = {"curve": []}

        def on_epoch(epoch: int, val: LabelledSet = val, val_px: np.ndarray = val_px,
                     record: dict[str, Any] = record) -> bool:
            tuned = run.weights()
            row = {"1.0": run.scorer(val, val_px)[0]}
            for a in sorted(set(alphas) - {0.0, 1.0}):
                run.load_blend(tuned, a)
                row[str(a)] = run.scorer(val, val_px)[0]
            run.load(tuned)
            record["curve"].append(row)
            return False

        stage(f"cross-validation, {name}: training on {len(train.items)}, validating on {len(val.items)}")
        run.train_phase(name, train, train_px, cfg, on_epoch, record)
        result = {"base": base, "curve": record["curve"]}
        run.checkpoint.finish_phase(name, result)
        results.append(result)
    return _select(results, k, key, alphas)


def _select(results: list[dict[str, Any]], k: int, key: str, alphas: Sequence[float]) -> Selection:
    base = pooled([r["base"] for r in results])
    n_epochs = min(len(r["curve"]) for r in results)
    candidates = [{"alpha": 0.0, "epoch": 0, **base}]  # the base first: it wins ties
    for e in range(n_epochs):
        for a in sorted((set(alphas) - {0.0}) | {1.0}):
            candidates.append({"alpha": a, "epoch": e + 1, **pooled([r["curve"][e][str(a)] for r in results])})
    chosen = choose([c for c in candidates if c["alpha"] in alphas or c["epoch"] == 0], key)
    best_tuned = choose([c for c in candidates if c["alpha"] == 1.0], key)
    epoch = int(chosen["epoch"]) if chosen["alpha"] > 0 else int(best_tuned["epoch"])
    at_epoch = [c for c in candidates if c["epoch"] == epoch]
    tuned = next(c for c in at_epoch if c["alpha"] == 1.0)

    def strip(c: dict[str, float]) -> dict[str, float]:
        return {m: v for m, v in c.items() if m not in ("alpha", "epoch")}

    return Selection(
        epoch=epoch, alpha=float(chosen["alpha"]), folds=k,
        validation={"base": strip(candidates[0]), "finetuned": strip(tuned), "blended": strip(chosen)},
        epochs=[{"epoch": c["epoch"], **strip(c)} for c in candidates if c["alpha"] == 1.0],
        alpha_curve=[{"alpha": 0.0, **strip(candidates[0])}]
        + [{"alpha": c["alpha"], **strip(c)} for c in at_epoch])
