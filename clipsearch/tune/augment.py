"""Random augmentation of a training batch: horizontal flip, random resized crop, colour jitter.

On its own because it is the one place where training consumes the numpy stream for pixels: every draw comes
from the run's seeded generator, in a fixed order (flips, then per image crop area, ratio and offset, then the
jitter factors), so a resumed run — which restores that generator — draws exactly what the uninterrupted run
drew. Each transform runs only when enabled, and a disabled one draws nothing.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from clipsearch.tune.config import TrainConfig


def augment(batch: np.ndarray, cfg: TrainConfig, rng: np.random.Generator) -> np.ndarray:
    """Flip, random resized crop and colour jitter on NHWC uint8 (each only when enabled)."""
    batch = batch.copy()
    n, h, w, _ = batch.shape
    if cfg.hflip:
        flip = rng.random(n) < 0.5
        batch[flip] = batch[flip][:, :, ::-1]
    if cfg.random_crop > 0:
        from PIL import Image

        for i in range(n):
            area = rng.uniform(cfg.random_crop, 1.0)
            ratio = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
            ch = min(h, max(2, int(round(h * math.sqrt(area / ratio)))))
            cw = min(w, max(2, int(round(w * math.sqrt(area * ratio)))))
            y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
            crop = Image.fromarray(np.ascontiguousarray(batch[i, y:y + ch, x:x + cw]))
            batch[i] = np.asarray(crop.resize((w, h), Image.Resampling.BICUBIC))
    if cfg.color_jitter > 0:
        s = cfg.color_jitter
        bright = rng.uniform(1 - s, 1 + s, (n, 1, 1, 1))
        contrast = rng.uniform(1 - s, 1 + s, (n, 1, 1, 1))
        sat = rng.uniform(1 - s, 1 + s, (n, 1, 1, 1))
        f = batch.astype(np.float32) * bright  # float64 from here on, as the factors are
        mean = f.mean(axis=(1, 2, 3), keepdims=True)
        f = (f - mean) * contrast + mean
        gray = f.mean(axis=3, keepdims=True)
        f = (f - gray) * sat + gray
        batch = np.clip(f, 0, 255).astype(np.uint8)
    return batch
