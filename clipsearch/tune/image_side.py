"""How training and scoring embed images: from pixels, or from the frozen trunk's features computed once.

When only offline-mini's light heads train, running the trunk every step (and again for every validation
score) would repeat the same computation: `ImageSide` computes each image's trunk features once — and once more
for its mirror image when flips are on — and feeds the heads from them. One `ImageSide` is shared by every
phase of a fine-tune, so cross-validation folds reuse the pool's features (`share`). A crop or colour change
alters the trunk's input, so augmentation turns the cache off.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from clipsearch.tune.locks import can_cache_image_features
from clipsearch.tune.model_api import with_heads

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from clipsearch.encoders.torch_encoder import Encoder
    from clipsearch.tune.config import TrainConfig


def image_side_for(encoder: Encoder, cfg: TrainConfig) -> ImageSide:
    """Cached trunk features when only the light heads train and no crop or colour changes the trunk's input."""
    return ImageSide(encoder, can_cache_image_features(encoder.model) and not cfg.augmenting)


class ImageSide:
    """Embeds images for training and evaluation: from pixels, or — when only the light heads train — from the
    frozen trunk's features, computed once per image (and once more for its mirror image when flips are on)."""

    def __init__(self, encoder: Encoder, cached: bool) -> None:
        self.encoder = encoder
        self.cached = cached
        # (id of the pixel array, mirrored) -> (the array, kept alive since its id is the key; its features)
        self._features: dict[tuple[int, bool], tuple[np.ndarray, torch.Tensor]] = {}

    def features(self, pixels: np.ndarray, flipped: bool = False) -> torch.Tensor:
        import torch

        key = (id(pixels), flipped)
        if key not in self._features:
            model = self.encoder.model
            was = model.training
            model.eval()
            chunks = []
            with torch.inference_mode():
                for i in range(0, len(pixels), 32):
                    part = pixels[i:i + 32][:, :, ::-1] if flipped else pixels[i:i + 32]
                    tensor = self.encoder.images_to_tensor(np.ascontiguousarray(part))
                    chunks.append(with_heads(model).image_features(tensor))
            model.train(was)
            self._features[key] = (pixels, torch.cat(chunks).clone())
        return self._features[key][1]

    def share(self, pool: np.ndarray, rows: np.ndarray, flips: bool = False) -> np.ndarray:
        """`pool[rows]`, its trunk features taken from the pool's (cross-validation folds reuse one pass)."""
        part = pool[rows]
        if self.cached:
            for flipped in (False, True) if flips else (False,):
                self._features[(id(part), flipped)] = (part, self.features(pool, flipped)[rows])
        return part

    def embed(self, pixels: np.ndarray) -> np.ndarray:
        """L2-normalised float32 embeddings of `pixels` under the model's current weights (eval mode)."""
        import torch

        if not self.cached:
            from clipsearch.tune.evaluate import embed_images

            return embed_images(self.encoder, pixels)
        feats = self.features(pixels)
        with torch.inference_mode():
            out = with_heads(self.encoder.model).image_head(feats, normalize=True).float()
        return out.cpu().numpy()
