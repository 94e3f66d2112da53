"""What every image encoder is to the rest of the library (torch, ONNX Runtime, a test's fake), and the
precisions an image embedding may have."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:  # pragma: no cover - the CLI imports this module at start-up: no NumPy before a command runs
    import numpy as np

    from clipsearch.encoders.model_spec import ModelSpec

PRECISIONS = ("fp32", "int8")  # of the image embeddings; a manifest without one (older stores) holds fp32
# A new store's precision on a CPU (onnx backend). int8 is the default because its retrieval agrees with fp32:
# top-10 overlap 0.993 (ViT-B-32-256) and 0.995 (offline-mini) over 192 views of skimage.data photos, at
# 3.4x / 1.8x fp32's encoding speed here (bench/index_throughput.py --int8; README "int8").
CPU_DEFAULT_PRECISION = "int8"


class ImageEncoder(Protocol):
    image_size: int
    resize_mode: str
    embed_dim: int

    @property
    def default_batch_size(self) -> int: ...

    def encode_images(self, batch_uint8: np.ndarray) -> np.ndarray: ...


class DualEncoder(ImageEncoder, Protocol):
    """Both towers of a model, as scoring needs them (eval, classify, fine-tuning's evaluation): torch's
    `Encoder`, or ONNX Runtime's image tower with the NumPy text tower (`OnnxImageEncoder`)."""
    spec: ModelSpec

    def encode_texts(self, texts: Iterable[str]) -> np.ndarray: ...

    @property
    def logit_scale(self) -> float: ...


def runs_on(encoder: object) -> dict[str, str]:
    """Where an encoder makes embeddings — backend, device ("cpu", "cuda:0") and precision — as a run's summary
    and a new store's manifest record them (a test's fake without these attributes reports "")."""
    return {"backend": str(getattr(encoder, "backend", "")), "device": str(getattr(encoder, "device_name", "")),
            "precision": str(getattr(encoder, "precision", ""))}
