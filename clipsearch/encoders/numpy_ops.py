"""The NumPy operations the text towers share (CLIP's, BERT's and the multilingual Hugging Face ones): GELU with
an erf that stays in float32, multi-head attention and layer norm, written so float32 inputs never widen."""

from __future__ import annotations

import math

import numpy as np


def erf(x: np.ndarray) -> np.ndarray:
    """Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7): NumPy has no erf, and SciPy is not a dependency."""
    sign = np.sign(x)
    a = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * a)
    poly = ((((1.061405429 * t - 1.453152027) * t) + 1.421413741) * t - 0.284496736) * t + 0.254829592
    y = 1.0 - poly * t * np.exp(-a * a)
    return sign * y


def gelu(h: np.ndarray) -> np.ndarray:
    return 0.5 * h * (1.0 + erf(h * (1.0 / math.sqrt(2.0))))  # python floats keep float32


def attention(q: np.ndarray, k: np.ndarray, v: np.ndarray, heads: int, mask: np.ndarray | None = None) -> np.ndarray:
    """Multi-head scaled dot-product attention on (tokens, width) projections; returns (tokens, width)."""
    n, d = q.shape
    dh = d // heads
    q, k, v = (t.reshape(n, heads, dh).transpose(1, 0, 2) for t in (q, k, v))
    scores = (q * (1.0 / math.sqrt(dh))) @ k.transpose(0, 2, 1)
    if mask is not None:
        scores = scores + mask
    scores = np.exp(scores - scores.max(-1, keepdims=True))
    scores /= scores.sum(-1, keepdims=True)
    return (scores @ v).transpose(1, 0, 2).reshape(n, d)


def layer_norm(x: np.ndarray, w: np.ndarray, b: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * w + b  # eps is a python float: stays float32
