"""The training loop's options: cached-feature accumulation, gradient checkpointing, augmentation."""

from __future__ import annotations

import numpy as np

from clipsearch.encoders.torch_encoder import load_encoder
from clipsearch.tune.augment import augment
from clipsearch.tune.config import TrainConfig, resolve_config
from clipsearch.tune.training import train_contrastive

CAPTIONS = [f"a {c}" for c in "abcd" * 8]
CLASS_IDS = [0, 1, 2, 3] * 8


def _images(n: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 64, 64, 3), dtype=np.uint8)


def _train(**options) -> tuple[dict, object]:
    """clipsearch-tiny trained 2 epochs on 32 images (flips off, so batching is the only difference)."""
    enc = load_encoder("clipsearch-tiny", device="cpu")
    cfg = resolve_config(TrainConfig(**{"epochs": 2, "hflip": False, "warmup_steps": 0, **options}), "random-init", 32)
    history = train_contrastive(enc, _images(), CAPTIONS, CLASS_IDS, cfg)
    return {k: v.detach().clone().float() for k, v in enc.model.state_dict().items()}, history


def _max_diff(a: dict, b: dict) -> float:
    return max(float((a[k] - b[k]).abs().max()) for k in a)


def _mean_diff(a: dict, b: dict) -> float:
    """Mean absolute difference over every weight (Adam magnifies rounding in the few near-zero gradients, so
    the maximum says little after several steps)."""
    import torch

    return float(torch.cat([(a[k] - b[k]).abs().flatten() for k in a]).mean())


def test_accumulated_micro_batches_train_like_one_large_batch() -> None:
    """Batch 4 × 4 accumulated must step exactly as batch 16: every pair of the 16 is a negative (GradCache).
    Micro-batch losses (4 negatives each) would move weights by about the learning rate, not by rounding."""
    large, h_large = _train(batch_size=16, freeze_bn=True)
    micro, h_micro = _train(batch_size=4, accumulate=4, freeze_bn=True)
    untrained = load_encoder("clipsearch-tiny", device="cpu").model.state_dict()
    base = {k: v.detach().clone().float() for k, v in untrained.items()}
    assert h_large.steps == h_micro.steps == 4
    assert np.allclose(h_large.losses, h_micro.losses, atol=1e-5)  # the loss of the whole 16-image batch
    assert _mean_diff(large, base) > 1e-4  # it trained
    assert _mean_diff(large, micro) < 1e-7  # measured 8e-9
    alone, _ = _train(batch_size=4, freeze_bn=True)
    assert _mean_diff(large, alone) > 1e-4  # measured 5e-4: batches of 4 without accumulation do differ


def test_gradient_checkpointing_recomputes_blocks_and_changes_nothing_else() -> None:
    """Each checkpointed block runs twice a step (forward, then again in backward); weights and updating
    BatchNorm statistics end exactly as without it."""

    enc = load_encoder("clipsearch-tiny", device="cpu")
    calls = {"image": 0, "text": 0}
    # pre-hooks on the first layer inside a wrapped block: the recomputation runs it again (a post-hook may
    # not fire, since recomputation stops as soon as the tensors backward needs are back)
    def count(side: str):
        return lambda *a: calls.__setitem__(side, calls[side] + 1)

    enc.model.visual.layer2[0].conv1.register_forward_pre_hook(count("image"))
    enc.model.transformer.resblocks[0].ln_1.register_forward_pre_hook(count("text"))
    cfg = resolve_config(TrainConfig(epochs=1, batch_size=16, hflip=False, freeze_bn=False, grad_checkpointing=True),
                         "random-init", 32)
    history = train_contrastive(enc, _images(), CAPTIONS, CLASS_IDS, cfg)
    assert history.checkpointed_towers == ["image", "text"]
    assert calls == {"image": 4, "text": 4}  # 2 steps, each block forward + recompute
    checkpointed = {k: v.detach().clone().float() for k, v in enc.model.state_dict().items()}
    plain, _ = _train(batch_size=16, freeze_bn=False, epochs=1)
    assert _max_diff(plain, checkpointed) < 1e-6  # BatchNorm running stats included: each batch counted once
    assert not any("forward" in vars(m) for m in enc.model.modules())  # unwrapped after training


def test_offline_model_towers_can_checkpoint() -> None:
    from clipsearch.tune.grad_checkpoint import set_grad_checkpointing

    enc = load_encoder("offline-mini", device="cpu")
    assert set_grad_checkpointing(enc.model, True) == ["image", "text"]
    assert set_grad_checkpointing(enc.model, False) == []


def test_augmentations_are_seeded_and_change_what_they_should() -> None:
    batch = _images(8)
    plain = TrainConfig(hflip=False)
    assert np.array_equal(augment(batch, plain, np.random.default_rng(0)), batch)
    crop = TrainConfig(hflip=False, random_crop=0.5)
    a = augment(batch, crop, np.random.default_rng(1))
    assert a.shape == batch.shape and not np.array_equal(a, batch)
    assert np.array_equal(a, augment(batch, crop, np.random.default_rng(1)))  # seeded
    ramp = np.broadcast_to((np.arange(64, dtype=np.uint8) * 4)[None, None, :, None], (2, 64, 64, 3)).copy()
    zoomed = augment(ramp, TrainConfig(hflip=False, random_crop=0.3), np.random.default_rng(2))
    assert np.ptp(zoomed[:, 32, :, 0], axis=1).min() < np.ptp(ramp[:, 32, :, 0], axis=1).min()  # a crop, enlarged
    jitter = augment(batch, TrainConfig(hflip=False, color_jitter=0.4), np.random.default_rng(3))
    means = jitter.reshape(8, -1).mean(axis=1) - batch.reshape(8, -1).astype(float).mean(axis=1)
    assert np.abs(means).max() > 5  # brightness moved
    grey = np.full((1, 8, 8, 3), 128, np.uint8)
    assert np.array_equal(augment(grey, TrainConfig(hflip=False, random_crop=0.5), np.random.default_rng(4)), grey)


def test_cli_trains_with_crop_jitter_accumulation_and_checkpointing(runner, tmp_path) -> None:
    from clipsearch.media import synthetic
    from tests.conftest import cli_json

    synthetic.make_dataset(tmp_path / "shapes", per_class=4, seed=1, class_folders=True)
    report = cli_json(runner, "finetune", tmp_path / "shapes", "--out", tmp_path / "model",
                      "--model", "clipsearch-tiny", "--epochs", "2", "--batch-size", "8", "--accumulate", "2",
                      "--random-crop", "0.6", "--color-jitter", "0.3", "--grad-checkpointing", "--folds", "1")
    s = report["settings"]
    assert (s["random_crop"], s["color_jitter"], s["accumulate"]) == (0.6, 0.3, 2)
    assert s["grad_checkpointing_towers"] == ["image", "text"] and s["epochs_run"] == 2
    assert (tmp_path / "model" / "metrics.json").exists() and not (tmp_path / "model" / "checkpoint.pt").exists()


def test_offline_mini_with_augmentation_does_not_use_the_feature_cache(runner, tmp_path) -> None:
    """Crops and colour change the trunk's input, so the cached trunk features would be wrong: the cache is off."""
    from clipsearch.media import synthetic
    from tests.conftest import cli_json

    synthetic.make_dataset(tmp_path / "shapes", per_class=5, seed=1, class_folders=True)
    report = cli_json(runner, "finetune", tmp_path / "shapes", "--out", tmp_path / "model", "--model", "offline-mini",
                      "--epochs", "1", "--color-jitter", "0.3", "--folds", "1")
    assert report["settings"]["cached_image_features"] is False
    plain = cli_json(runner, "finetune", tmp_path / "shapes", "--out", tmp_path / "model2", "--model", "offline-mini",
                     "--epochs", "1", "--folds", "1")
    assert plain["settings"]["cached_image_features"] is True
