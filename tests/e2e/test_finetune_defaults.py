"""Fine-tuning's defaults on real images, its split, its choice of epoch and blend, BatchNorm and batching.

The real-image set is scikit-learn's handwritten digits (8×8 scans, upscaled to 64 px RGB): photos of a domain
offline-mini never trained on, where its zero-shot accuracy is near chance.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from clipsearch.encoders.torch_encoder import load_encoder
from clipsearch.media import synthetic
from clipsearch.tune import datasets
from clipsearch.tune.config import TrainConfig, epoch_batches, resolve_config, steps_per_epoch
from clipsearch.tune.locks import apply_locks
from clipsearch.tune.runs import choose
from clipsearch.tune.training import train_contrastive
from tests.conftest import cli_json


def test_offline_mini_defaults_improve_real_digits(runner, tmp_path: Path) -> None:
    """CLI defaults, no flags: the test split must gain clearly more than its own noise (the paired bootstrap
    interval of the gain stays above +0.15), and the shipped model is never below the base on validation."""
    data = synthetic.make_digits(tmp_path / "digits", per_class=15)
    report = cli_json(runner, "finetune", data, "--out", tmp_path / "model", "--model", "offline-mini")
    print({k: report[k] for k in ("base", "finetuned", "blended", "gain", "alpha", "best_epoch", "settings")})
    assert (report["train_images"], report["val_images"], report["test_images"]) == (90, 30, 30)
    assert report["split"] == "test" and report["family"] == "offline-mini"
    s = report["settings"]
    assert s["lr"] == 1e-3 and s["lock_text"] and s["cached_image_features"]  # the family's defaults, not the CLI's
    # 90 images at batch 32 are 3 steps an epoch: 150 steps would take 50 epochs, capped at 40
    assert s["steps_per_epoch"] == 3 and s["epochs"] == 40 and s["warmup_steps"] == 12
    val = report["validation"]
    assert val["blended"]["top1"] >= val["base"]["top1"]
    assert report["base"]["top1"] <= 0.3  # zero-shot knows little of digits
    assert report["gain"]["low"] >= 0.15 and report["blended"]["top1"] - report["base"]["top1"] >= 0.25
    log = json.loads((tmp_path / "model" / "metrics.json").read_text())
    assert len(log["losses"]) == s["steps_per_epoch"] * s["epochs_run"]
    assert [e["epoch"] for e in log["epochs"]] == list(range(1, s["epochs_run"] + 1))
    assert {row["alpha"] for row in log["alpha_curve"]} == {0.0, 0.25, 0.5, 0.75, 1.0}
    again = cli_json(runner, "eval", tmp_path / "digits", "--model", tmp_path / "model")
    assert again["top1"] > 0.4  # the saved model is the adapted one


def test_split_is_stratified_disjoint_and_seeded(tmp_path: Path) -> None:
    data = datasets.load(synthetic.make_digits(tmp_path / "d", per_class=10))
    train, val, test = datasets.split_three(data, 0.2, 0.2, seed=3)
    paths = [{it.path for it in part.items} for part in (train, val, test)]
    assert sum(map(len, paths)) == 100 and not (paths[0] & paths[1] or paths[0] & paths[2] or paths[1] & paths[2])
    for part, n in ((train, 6), (val, 2), (test, 2)):
        assert np.bincount([it.label for it in part.items], minlength=10).tolist() == [n] * 10
    again = datasets.split_three(data, 0.2, 0.2, seed=3)
    assert [it.path for it in again[2].items] == [it.path for it in test.items]
    with pytest.raises(Exception, match="too little to train"):
        datasets.split_three(data, 0.5, 0.45, seed=0)


def _row(top1: float, loss: float, alpha: float) -> dict[str, float]:
    return {"alpha": alpha, "top1": top1, "loss": loss}


def test_choose_keeps_the_base_when_fine_tuning_hurts() -> None:
    base = _row(0.40, 2.0, 0.0)
    worse = [base, _row(0.35, 1.0, 0.25), _row(0.30, 0.5, 0.5), _row(0.20, 0.4, 1.0)]
    assert choose(worse, "top1") is base  # lower losses do not buy a lower accuracy
    tie = [base, _row(0.40, 2.0, 0.5)]
    assert choose(tie, "top1") is base  # a fine-tune must beat the base, not match it
    better = [base, _row(0.45, 1.5, 0.25), _row(0.50, 1.9, 0.5), _row(0.50, 1.2, 0.75), _row(0.48, 1.0, 1.0)]
    assert choose(better, "top1")["alpha"] == 0.75  # best accuracy, the smooth loss breaks the tie


def _random_images(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 64, 64, 3), dtype=np.uint8)


def _bn_stats(model) -> list[np.ndarray]:
    import torch

    return [m.running_mean.clone().numpy() for m in model.modules()
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]


@pytest.mark.parametrize("freeze", [True, False])
def test_batchnorm_statistics_stay_frozen_by_request(freeze: bool) -> None:
    enc = load_encoder("clipsearch-tiny", device="cpu")  # its image tower is a ResNet with BatchNorm
    before = _bn_stats(enc.model)
    weights = enc.model.visual.conv1.weight.detach().clone()
    cfg = resolve_config(TrainConfig(epochs=1, batch_size=8, freeze_bn=freeze), "clip-pretrained", 16)
    train_contrastive(enc, _random_images(16), [f"a {c}" for c in "ab" * 8], [0, 1] * 8, cfg)
    after = _bn_stats(enc.model)
    assert len(before) > 3
    assert not np.allclose(weights.numpy(), enc.model.visual.conv1.weight.detach().numpy())  # it trained
    assert all(np.array_equal(a, b) for a, b in zip(before, after, strict=False)) == freeze


def test_every_row_is_used_each_epoch() -> None:
    for n, bs in ((154, 64), (10, 4), (9, 4), (5, 8), (64, 64)):
        batches = epoch_batches(np.arange(n), bs)
        assert sorted(np.concatenate(batches).tolist()) == list(range(n))
        assert len(batches) == steps_per_epoch(n, bs) and min(map(len, batches)) >= 2
    assert [len(b) for b in epoch_batches(np.arange(154), 64)] == [64, 64, 26]  # the remainder is a batch
    assert [len(b) for b in epoch_batches(np.arange(9), 4)] == [4, 5]  # a lone last row joins the one before
    enc = load_encoder("clipsearch-tiny", device="cpu")
    cfg = resolve_config(TrainConfig(epochs=2, batch_size=4, accumulate=2), "random-init", 10)
    history = train_contrastive(enc, _random_images(10), [f"a {c}" for c in "ab" * 5], [0, 1] * 5, cfg)
    assert len(history.losses) == history.steps == 4  # 3 batches an epoch; the odd one is stepped, not carried


def test_defaults_adapt_to_family_and_size() -> None:
    small = resolve_config(TrainConfig(), "clip-pretrained", 40)
    assert small.lr == 1e-5 and small.freeze_bn and small.epochs == 40  # 2 steps an epoch: capped at max_epochs
    big = resolve_config(TrainConfig(), "clip-pretrained", 3200)
    assert big.epochs == 2  # 100 steps an epoch
    assert resolve_config(TrainConfig(), "random-init", 100).freeze_bn is False
    mini = resolve_config(TrainConfig(), "offline-mini", 100)
    assert mini.lr == 1e-3 and mini.lock_text and mini.lock_image and mini.unlocked_layers == 2
    assert resolve_config(TrainConfig(lr=5e-4, epochs=3), "offline-mini", 100).lr == 5e-4  # given values stay


def test_offline_mini_locks_reach_the_right_parameters() -> None:
    enc = load_encoder("offline-mini", device="cpu")
    model = enc.model
    apply_locks(model, resolve_config(TrainConfig(lock_image=False, lock_text=True), "offline-mini", 100))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert "class_embeddings" in trainable and "visual.conv_stem.weight" in trainable  # image side untouched
    assert not any(n.startswith("text.") for n in trainable)
    apply_locks(model, resolve_config(TrainConfig(), "offline-mini", 100))  # the family's default
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"visual.classifier.weight", "visual.classifier.bias", "class_embeddings", "logit_scale"}
    apply_locks(model, resolve_config(TrainConfig(unlocked_layers=3), "offline-mini", 100))
    assert model.visual.conv_head.weight.requires_grad and not model.visual.blocks[-1][0].conv_pw.weight.requires_grad


def test_cli_defaults_come_from_the_library(runner, tmp_path: Path) -> None:
    synthetic.make_dataset(tmp_path / "shapes", per_class=5, seed=2, class_folders=True)
    report = cli_json(runner, "finetune", tmp_path / "shapes", "--out", tmp_path / "m", "--model", "clipsearch-tiny",
                      "--min-steps", "6", "--test-fraction", "0.2")
    s = report["settings"]
    assert s["lr"] == 1e-3 and s["freeze_bn"] is False and s["warmup_fraction"] == 0.1  # random-init family
    assert report["family"] == "random-init" and report["test_images"] == 12
    assert any("too few" in w for w in report["warnings"])  # 12 test images cannot tell small differences
    tiny = next(r for r in cli_json(runner, "models") if r["spec"] == "clipsearch-tiny")
    assert tiny["untrained"] is True
    scores = cli_json(runner, "eval", tmp_path / "shapes", "--model", "clipsearch-tiny")
    assert scores["untrained"] is True
    assert cli_json(runner, "eval", tmp_path / "shapes", "--model", tmp_path / "m")["untrained"] is False
