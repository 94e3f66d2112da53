"""Perceptual hashes: 64 bits that stay nearly the same when a picture is resized, recompressed or converted.

They are what the model cannot promise: a model's embedding moves with the model (and a small offline model
scatters resized copies below any safe cosine threshold), while these bits come from the pixels alone, so two
files are "the same picture" by Hamming distance whatever model a store uses. Computed from the image the
indexing pipeline already decoded (no second decode), on its whole frame, before the model's centre crop.

Three classic hashes are here so that bench/phash_transforms.py can measure them against each other; the store
keeps `phash` (the DCT hash: the best recall at a safe distance in that bench, see README "Duplicates") of the
whole frame and of its centred 92 % and 85 % windows (`picture_hashes`): no global hash survives a 10 % crop
(pHash: 48 % recall at distance 10), but a centred crop's whole frame is nearly the original's inner window
(98-100 % recall for 5-15 % crops at distance 8, no more false matches).

- `phash`: 32x32 grey, 2-D DCT-II, the 8x8 lowest frequencies, each bit "above the median of those 64".
- `dhash`: 9x8 grey, each bit "brighter than its right neighbour" (gradients).
- `whash`: 32x32 grey, Haar approximation band at 8x8 (block means), the DC removed, bits above the median.

A hash is an unsigned 64-bit value; the catalog keeps a picture's three in one 24-byte blob.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from PIL import Image

HASH_BITS = 64
_DCT_SIZE = 32  # pixels a side the DCT hash looks at
_LOW = 8  # lowest frequencies kept a side: 8x8 = 64 bits


def _grey(im: Image.Image, width: int, height: int) -> np.ndarray:
    """The picture as float32 luminance at width x height, averaged over each source block (BOX: no aliasing,
    so a half-size copy lands on the same small image)."""
    from PIL import Image

    small = im.convert("L") if im.mode != "L" else im
    small = small.resize((width, height), Image.Resampling.BOX)
    return np.asarray(small, dtype=np.float32)


@lru_cache(maxsize=4)
def _dct_matrix(n: int) -> np.ndarray:
    """The orthonormal DCT-II matrix: D @ x is the DCT of a column x (so D @ X @ D.T is the 2-D DCT)."""
    k = np.arange(n, dtype=np.float64)[:, None]
    i = np.arange(n, dtype=np.float64)[None, :]
    d = np.cos(np.pi * (2 * i + 1) * k / (2 * n)) * np.sqrt(2.0 / n)
    d[0] /= np.sqrt(2.0)
    return d.astype(np.float32)


def _pack(bits: np.ndarray) -> int:
    """64 booleans (row-major) → an unsigned 64-bit int, the first bit the most significant."""
    flat = np.asarray(bits, dtype=bool).ravel()
    assert flat.size == HASH_BITS
    return int.from_bytes(np.packbits(flat).tobytes(), "big")


def phash(im: Image.Image) -> int:
    """The DCT hash of a decoded image (any mode)."""
    d = _dct_matrix(_DCT_SIZE)
    coeffs = d @ _grey(im, _DCT_SIZE, _DCT_SIZE) @ d.T
    low = coeffs[:_LOW, :_LOW]
    return _pack(low > np.median(low.ravel()[1:]))  # the median without the DC term (the mean brightness)


def dhash(im: Image.Image) -> int:
    """The difference hash: brighter-than-right-neighbour on a 9x8 grey image."""
    g = _grey(im, 9, 8)
    return _pack(g[:, :-1] > g[:, 1:])


def whash(im: Image.Image) -> int:
    """The Haar approximation-band hash: 8x8 block means of a 32x32 grey image, above their median."""
    g = _grey(im, _DCT_SIZE, _DCT_SIZE)
    ll = g.reshape(_LOW, _DCT_SIZE // _LOW, _LOW, _DCT_SIZE // _LOW).mean(axis=(1, 3))
    ll -= ll.mean()
    return _pack(ll > np.median(ll))


HASHES = {"phash": phash, "dhash": dhash, "whash": whash}
WINDOWS = (0.92, 0.85)  # centred windows hashed beside the whole frame (share of width and height kept)
HASHES_PER_PICTURE = 1 + len(WINDOWS)
BLOB_BYTES = 8 * HASHES_PER_PICTURE


def centred(im: Image.Image, keep: float) -> Image.Image:
    """The centred window of `im` keeping `keep` of its width and height."""
    w, h = im.size
    dw, dh = round(w * (1 - keep) / 2), round(h * (1 - keep) / 2)
    return im.crop((dw, dh, w - dw, h - dh)) if dw or dh else im


def picture_hashes(im: Image.Image) -> bytes:
    """What the catalog keeps of a picture: the DCT hash of the whole frame, then of each centred window, as
    big-endian unsigned 64-bit words (BLOB_BYTES)."""
    grey = im.convert("L") if im.mode != "L" else im  # once, not per window
    return b"".join(phash(part).to_bytes(8, "big") for part in [grey, *(centred(grey, k) for k in WINDOWS)])


def blob_words(blob: bytes) -> np.ndarray:
    """A `picture_hashes` blob → its uint64 words (whole frame first)."""
    return np.frombuffer(blob, dtype=">u8").astype(np.uint64)


def blobs_matrix(blobs: list[bytes]) -> np.ndarray:
    """(n, HASHES_PER_PICTURE) uint64 from n blobs."""
    if not blobs:
        return np.zeros((0, HASHES_PER_PICTURE), dtype=np.uint64)
    return np.frombuffer(b"".join(blobs), dtype=">u8").astype(np.uint64).reshape(len(blobs), HASHES_PER_PICTURE)


def picture_distance(a: bytes, b: bytes) -> int:
    """How far two pictures are: the smallest Hamming distance of one's whole frame to any hash of the other
    (either way round), so a centred crop meets its original's window."""
    wa, wb = blob_words(a), blob_words(b)
    return int(min(popcount(wa[0] ^ wb).min(), popcount(wa ^ wb[0]).min()))


def distance(a: int, b: int) -> int:
    """Hamming distance of two unsigned 64-bit hashes."""
    return bin(a ^ b).count("1")


def popcount(words: np.ndarray) -> np.ndarray:
    """Set bits per uint64 (Hamming distance of XORed hashes), vectorised."""
    w = np.asarray(words, dtype=np.uint64)
    if hasattr(np, "bitwise_count"):  # NumPy 2
        return np.bitwise_count(w).astype(np.int64)
    bytes_ = w.view(np.uint8).reshape(*w.shape, 8)
    return np.unpackbits(bytes_, axis=-1).sum(axis=-1).astype(np.int64)
