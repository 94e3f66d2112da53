"""A fine-tune on CUDA — autocast (bf16, or fp16 with the loss scaler), cached-feature accumulation (GradCache)
and gradient checkpointing together — ends where the same run on the CPU ends, within autocast's rounding."""

from __future__ import annotations

import numpy as np
import pytest

CAPTIONS = [f"a {c}" for c in "abcd" * 8]
CLASS_IDS = [0, 1, 2, 3] * 8


def _train(device: str) -> tuple[dict, object, dict, float]:
    """clipsearch-tiny (seeded init) trained 2 epochs on 32 images: micro-batches of 8, 2 accumulated a step.
    Returns the weights after and before, the history and the loss scaler's final scale."""
    from clipsearch.encoders.torch_encoder import load_encoder
    from clipsearch.tune.config import TrainConfig, resolve_config
    from clipsearch.tune.training import Trainer

    enc = load_encoder("clipsearch-tiny", device=device)
    base = {k: v.detach().cpu().clone().float() for k, v in enc.model.state_dict().items()}
    images = np.random.default_rng(0).integers(0, 256, (32, 64, 64, 3), dtype=np.uint8)
    cfg = resolve_config(TrainConfig(epochs=2, batch_size=8, accumulate=2, grad_checkpointing=True, hflip=False,
                                     warmup_steps=0, freeze_bn=True), "random-init", 32)
    trainer = Trainer(enc, images, CAPTIONS, CLASS_IDS, cfg, None)
    history = trainer.run(None, None, None)
    after = {k: v.detach().cpu().clone().float() for k, v in enc.model.state_dict().items()}
    scaler = trainer.updater.scaler
    return after, history, base, float(scaler.get_scale()) if scaler.is_enabled() else 0.0


def _mean_diff(a: dict, b: dict) -> float:
    import torch

    return float(torch.cat([(a[k] - b[k]).abs().flatten() for k in a]).mean())


@pytest.mark.parametrize("autocast", ["bf16", "fp16"])
def test_a_cuda_fine_tune_ends_where_the_cpu_run_ends(autocast: str, monkeypatch) -> None:
    import torch

    from clipsearch.tune.step import Precision

    if autocast == "fp16":  # the path of GPUs without bf16: fp16 autocast and the GradScaler
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    elif not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bf16")
    precision = Precision.for_device(torch.device("cuda"))
    assert precision.enabled and precision.scales_loss == (autocast == "fp16")
    on_cpu, h_cpu, base, _ = _train("cpu")
    on_gpu, h_gpu, base_gpu, scale = _train("cuda")
    assert _mean_diff(base, base_gpu) == 0.0  # the same seeded start
    assert h_gpu.steps == h_cpu.steps == 4 and h_gpu.checkpointed_towers == ["image", "text"]
    # the first loss comes from the same weights: only autocast's rounding differs
    assert abs(h_gpu.losses[0] - h_cpu.losses[0]) < 0.02, (h_gpu.losses, h_cpu.losses)
    assert all(np.isfinite(v).all() for v in on_gpu.values())
    if autocast == "fp16" and scale < 65536.0:  # the scaler skipped a step on overflow (as AMP does early on):
        return  # the runs then differ by that step; its own recovery is what this run showed
    assert np.allclose(h_gpu.losses, h_cpu.losses, atol=0.1), (h_gpu.losses, h_cpu.losses)
    moved = _mean_diff(on_cpu, base)
    assert moved > 1e-4  # it trained
    # bf16/fp16 rounding flips the sign of some near-zero gradients, which Adam turns into full-size steps; a
    # wrong step (no accumulation, a checkpointed block computed differently) moves weights by ~1x `moved`
    assert _mean_diff(on_gpu, on_cpu) < 0.5 * moved, (_mean_diff(on_gpu, on_cpu), moved)
