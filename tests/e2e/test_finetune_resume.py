"""Checkpoints and --resume, and cross-validation for small sets.

An interrupted fine-tune resumed from its checkpoint must end bit for bit where an uninterrupted run ends: same
weights, same chosen epoch and blend, same losses. A resume that would mix two different runs is refused.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from clipsearch.encoders.torch_encoder import FOLDER_WEIGHTS
from clipsearch.media import synthetic
from clipsearch.tune import datasets
from clipsearch.tune.config import TrainConfig
from clipsearch.tune.crossval import fold_indices
from clipsearch.tune.finetune import finetune
from tests.conftest import cli, cli_json

CONFIG = dict(epochs=4, batch_size=16, lr=2e-3, warmup_steps=2, seed=0)


def _shapes(root: Path, per_class: int) -> Path:
    synthetic.make_dataset(root, per_class=per_class, seed=1, class_folders=True)
    return root


def _weights(folder: Path) -> dict:
    import torch

    return torch.load(folder / FOLDER_WEIGHTS, map_location="cpu", weights_only=True)


def _same_weights(a: Path, b: Path) -> bool:
    import torch

    wa, wb = _weights(a), _weights(b)
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def _interrupt_at(step: int):
    def on_step(s: int, *_args) -> None:
        if s == step:
            raise KeyboardInterrupt
    return on_step


def _log(folder: Path) -> dict:
    return json.loads((folder / "metrics.json").read_text())


def test_interrupted_fine_tune_resumes_to_the_same_model(runner, tmp_path: Path) -> None:
    data = _shapes(tmp_path / "shapes", per_class=6)
    kwargs = dict(base_model="clipsearch-tiny", templates=["a {}"], device="cpu", folds=1, checkpoint_every_s=0)
    ref = finetune(data, tmp_path / "ref", config=TrainConfig(**CONFIG), **kwargs)
    per_epoch = ref.settings["steps_per_epoch"]
    assert ref.settings["epochs_run"] == 4 and not (tmp_path / "ref" / "checkpoint.pt").exists()

    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):  # in the middle of epoch 3
        finetune(data, out, config=TrainConfig(**CONFIG), on_step=_interrupt_at(2 * per_epoch + 1), **kwargs)
    assert (out / "checkpoint.pt").exists() and not (out / FOLDER_WEIGHTS).exists()

    flags = ["--model", "clipsearch-tiny", "--template", "a {}", "--folds", "1", "--epochs", "4", "--batch-size",
             "16", "--lr", "2e-3", "--seed", "0"]
    refused = cli(runner, "finetune", data, "--out", out, *flags, ok=False)  # warmup differs from CONFIG too
    assert refused.exit_code == 1 and "--resume" in refused.stderr and "Traceback" not in refused.stderr
    other = cli(runner, "finetune", data, "--out", out, *flags, "--resume", "--lr", "1e-3", ok=False)
    assert other.exit_code == 1 and "different setting lr" in other.stderr, other.stderr

    resumed = finetune(data, out, config=TrainConfig(**CONFIG), resume=True, **kwargs)
    assert resumed.resumed == "training, after epoch 2"
    assert _same_weights(tmp_path / "ref", out)
    assert (resumed.alpha, resumed.best_epoch, resumed.blended) == (ref.alpha, ref.best_epoch, ref.blended)
    assert _log(out)["losses"] == _log(tmp_path / "ref")["losses"]
    assert _log(out)["epochs"] == _log(tmp_path / "ref")["epochs"]
    assert not (out / "checkpoint.pt").exists()  # removed once the model is saved

    gone = cli(runner, "finetune", data, "--out", out, *flags, "--resume", ok=False)
    assert gone.exit_code == 1 and "no checkpoint" in gone.stderr


def test_resume_through_the_cli_and_restart(runner, tmp_path: Path) -> None:
    data = _shapes(tmp_path / "shapes", per_class=4)
    flags = ["--model", "clipsearch-tiny", "--template", "a {}", "--folds", "1", "--epochs", "3", "--batch-size",
             "16", "--lr", "2e-3", "--seed", "0", "--warmup", "0.1"]
    ref = cli_json(runner, "finetune", data, "--out", tmp_path / "ref", *flags)
    out = tmp_path / "out"
    config = TrainConfig(epochs=3, batch_size=16, lr=2e-3, seed=0, warmup_fraction=0.1)
    with pytest.raises(KeyboardInterrupt):
        finetune(data, out, base_model="clipsearch-tiny", templates=["a {}"], device="cpu", folds=1, config=config,
                 checkpoint_every_s=0, on_step=_interrupt_at(ref["settings"]["steps_per_epoch"] + 1))
    resumed = cli_json(runner, "finetune", data, "--out", out, *flags, "--resume")
    assert resumed["resumed"] == "training, after epoch 1" and _same_weights(tmp_path / "ref", out)

    with pytest.raises(KeyboardInterrupt):
        finetune(data, out, base_model="clipsearch-tiny", templates=["a {}"], device="cpu", folds=1, config=config,
                 checkpoint_every_s=0, on_step=_interrupt_at(ref["settings"]["steps_per_epoch"] + 1))
    (out / "checkpoint.pt").write_bytes(b"damaged")
    damaged = cli(runner, "finetune", data, "--out", out, *flags, "--resume", ok=False)
    assert damaged.exit_code == 1 and "cannot be read" in damaged.stderr and "--restart" in damaged.stderr
    fresh = cli_json(runner, "finetune", data, "--out", out, *flags, "--restart")
    assert fresh["resumed"] == "" and _same_weights(tmp_path / "ref", out)


def test_folds_are_disjoint_stratified_and_seeded(tmp_path: Path) -> None:
    data = datasets.load(synthetic.make_digits(tmp_path / "d", per_class=7))
    folds = fold_indices(data, 5, seed=3)
    rows = np.concatenate(folds)
    assert sorted(rows.tolist()) == list(range(70))  # every image validates exactly once
    assert max(map(len, folds)) - min(map(len, folds)) <= 1
    for fold in folds:
        counts = np.bincount([data.items[i].label for i in fold], minlength=10)
        assert counts.max() - counts.min() <= 1  # each class spread evenly
    assert all(np.array_equal(a, b) for a, b in zip(folds, fold_indices(data, 5, seed=3), strict=False))
    assert not all(np.array_equal(a, b) for a, b in zip(folds, fold_indices(data, 5, seed=4), strict=False))


def test_small_sets_cross_validate_by_default(runner, tmp_path: Path) -> None:
    """80 digits: a validation split would hold 20 images, so 5 folds choose epoch and blend over all 60 non-test
    images; the shipped run trains on all 60 and stops at the chosen epoch; nothing ships below the base."""
    data = synthetic.make_digits(tmp_path / "digits", per_class=8)
    report = cli_json(runner, "finetune", data, "--out", tmp_path / "model", "--model", "offline-mini")
    print({k: report[k] for k in ("base", "finetuned", "blended", "gain", "alpha", "best_epoch", "validation")})
    assert report["folds"] == 5 and report["settings"]["folds"] == 5
    assert (report["train_images"], report["val_images"], report["test_images"]) == (60, 60, 20)
    assert report["validation"]["base"]["images"] == 60.0
    val = report["validation"]
    assert val["blended"]["top1"] >= val["base"]["top1"]
    assert report["settings"]["epochs_run"] == report["best_epoch"] >= 1
    assert [row["epoch"] for row in report["epochs"]] == list(range(1, report["settings"]["epochs"] + 1))
    assert {row["alpha"] for row in report["alpha_curve"]} == {0.0, 0.25, 0.5, 0.75, 1.0}
    assert report["blended"]["top1"] > report["base"]["top1"]  # digits are far from ImageNet: a clear gain
    assert not any("validation split has" in w for w in report["warnings"])
    one = cli_json(runner, "finetune", data, "--out", tmp_path / "one", "--model", "offline-mini", "--folds", "1")
    assert one["folds"] == 1 and one["val_images"] == 20
    assert any("validation split has 20 images" in w for w in one["warnings"])


def test_cross_validation_resumes_inside_a_fold(tmp_path: Path) -> None:
    data = _shapes(tmp_path / "shapes", per_class=4)
    config = dict(epochs=2, batch_size=16, lr=2e-3, warmup_steps=1, seed=0)
    kwargs = dict(base_model="clipsearch-tiny", templates=["a {}"], device="cpu", folds=3, checkpoint_every_s=0)
    ref = finetune(data, tmp_path / "ref", config=TrainConfig(**config), **kwargs)
    assert ref.folds == 3
    out = tmp_path / "out"
    steps = ref.settings["steps_per_epoch"]
    with pytest.raises(KeyboardInterrupt):  # fold 2, second epoch: fold 1 is finished
        _interrupted_in_fold(data, out, config, kwargs, fold=2, step=steps + 1)
    resumed = finetune(data, out, config=TrainConfig(**config), resume=True, **kwargs)
    assert resumed.resumed == "fold 2 of 3, after epoch 1"
    assert _same_weights(tmp_path / "ref", out)
    assert (resumed.alpha, resumed.best_epoch, resumed.validation) == (ref.alpha, ref.best_epoch, ref.validation)


def _interrupted_in_fold(data: Path, out: Path, config: dict, kwargs: dict, fold: int, step: int) -> None:
    """Run until `step` of the `fold`-th training phase, then interrupt."""
    phase = [0]

    def on_step(s: int, *_args) -> None:
        if s == 1:
            phase[0] += 1
        if phase[0] == fold and s == step:
            raise KeyboardInterrupt

    finetune(data, out, config=TrainConfig(**config), on_step=on_step, **kwargs)


def test_cross_validation_says_up_front_how_many_trainings_it_runs(tmp_path: Path) -> None:
    data = _shapes(tmp_path / "shapes", per_class=4)
    stages: list[str] = []
    report = finetune(data, tmp_path / "out", base_model="clipsearch-tiny", templates=["a {}"], device="cpu",
                      folds=2, config=TrainConfig(epochs=1, batch_size=16, lr=2e-3, warmup_steps=1, seed=0),
                      on_stage=stages.append)
    assert report.folds == 2
    said = [i for i, s in enumerate(stages) if s.startswith("3 trainings: 2 cross-validation folds")]
    assert said and said[0] < min(i for i, s in enumerate(stages) if "fold" in s and i != said[0])
