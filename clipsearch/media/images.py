"""Decode one image file into a model-ready uint8 array, fast (JPEG DCT scaling) and safely.

Workers return compact HWC uint8 arrays; normalisation to float happens in the encoder on whole
batches, so decoding never allocates float images.
"""

from __future__ import annotations

import hashlib
import io
import os
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from clipsearch.catalog.records import NO_META, PhotoMeta
from clipsearch.media import exif

# Refuse anything above ~134 megapixels (e.g. 16k x 8k): a decompression bomb would eat the machine's memory.
MAX_PIXELS = 1 << 27
# fit() resizes an image whole, then crops, unless that resized image would exceed this many pixels (16 MB; at
# 224 px, an aspect ratio past ~80:1): it then resizes only the crop's source region, so a 1,000,000x100 strip
# costs no 224x2,240,000 intermediate (1.5 GB). Below the limit the pixels are exactly those of before.
FIT_WHOLE_LIMIT = 1 << 22
BACKGROUND = (255, 255, 255)  # transparent pixels become white, as on a product page
ImageFile.LOAD_TRUNCATED_IMAGES = False

try:  # HEIC/AVIF only when the user installed the plugin
    import pillow_heif

    pillow_heif.register_heif_opener()
except ImportError:  # pragma: no cover - optional
    pass


class DecodeError(Exception):
    """The file is not an image we can read; the message is one line for the catalog."""


@dataclass
class Decoded:
    pixels: np.ndarray  # (size, size, 3) uint8
    width: int  # original width after EXIF orientation
    height: int
    format: str
    hashes: bytes | None = None  # the picture's perceptual hashes (media/phash.picture_hashes), from these pixels
    meta: PhotoMeta = NO_META  # capture time, camera, lens, place (from the EXIF read for the orientation)


def digest_bytes(data: bytes) -> str:
    """Content identity for move/duplicate detection; SHA-1 runs in hardware (3x faster than BLAKE2 here)."""
    return hashlib.sha1(data, usedforsecurity=False).hexdigest()[:32]


def _to_rgb(im: Image.Image) -> Image.Image:
    """Any mode → RGB: alpha composited on BACKGROUND, 16-bit/float scaled, CMYK/palette converted."""
    # Copies are dropped as soon as they are used, and arithmetic is in place: a 40-megapixel RGBA upload peaked
    # at 760 MB with every intermediate alive, ~480 MB now (the same pixels).
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im if im.mode == "RGBA" else im.convert("RGBA")
        composited = Image.alpha_composite(Image.new("RGBA", rgba.size, BACKGROUND + (255,)), rgba)
        del rgba
        return composited.convert("RGB")
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(im, dtype=np.float32)
        if arr.base is not None or not arr.flags.writeable:
            arr = arr.copy()
        lo, hi = float(arr.min()), float(arr.max())
        if im.mode.startswith("I;16"):
            lo, hi = 0.0, 65535.0
        arr -= lo
        arr /= max(hi - lo, 1e-6)
        arr *= 255.0
        scaled = np.clip(arr, 0, 255, out=arr).astype(np.uint8)
        del arr
        return Image.fromarray(scaled).convert("RGB")
    if im.mode != "RGB":
        return im.convert("RGB")
    return im


def fit(im: Image.Image, size: int, resize_mode: str) -> Image.Image:
    """Resize like open_clip's eval transform: shortest side to `size`, centre crop (or squash)."""
    if resize_mode == "squash":
        return im.resize((size, size), Image.Resampling.BICUBIC, reducing_gap=3.0)
    w, h = im.size
    scale = size / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    left, top = (nw - size) // 2, (nh - size) // 2
    if nw * nh > FIT_WHOLE_LIMIT:  # a very long strip: resize the crop's source region only
        sx, sy = nw / w, nh / h
        box = (left / sx, top / sy, (left + size) / sx, (top + size) / sy)
        return im.resize((size, size), Image.Resampling.BICUBIC, box=box, reducing_gap=3.0)
    im = im.resize((nw, nh), Image.Resampling.BICUBIC, reducing_gap=3.0)
    return im.crop((left, top, left + size, top + size))


def _too_large(w: int, h: int) -> str:
    return (f"image too large ({w}x{h} = {w * h / 1e6:.0f} megapixels, limit {MAX_PIXELS / 1e6:.0f}): "
            "possible decompression bomb")


@dataclass(frozen=True)
class Probe:
    """What decoding an image would cost, read from its header alone (no pixel decoded)."""
    width: int  # as stored (before EXIF orientation)
    height: int
    format: str
    decoded_width: int  # the size decoding allocates: a JPEG's reduced DCT scale (draft), else the full size
    decoded_height: int
    progressive: bool  # a progressive JPEG: libjpeg buffers the whole image's coefficients, whatever the scale

    @property
    def pixels(self) -> int:
        """The pixels decoding holds in memory at once (a progressive JPEG's coefficients count whole)."""
        drafted = self.decoded_width * self.decoded_height
        return max(drafted, self.width * self.height) if self.progressive else drafted


def _open_drafted(data: bytes, draft_to: int | None) -> tuple[Image.Image, int, int]:
    """(the image opened, header only, its width, height): the bomb limit checked, and for a JPEG the smallest
    DCT scale chosen whose shorter side still covers `draft_to` pixels (what a decode will then allocate)."""
    im = Image.open(io.BytesIO(data))
    w, h = im.size
    if w * h > MAX_PIXELS:
        raise DecodeError(_too_large(w, h))
    if im.format == "JPEG" and draft_to:
        scale = draft_to / min(w, h)
        im.draft("RGB", (max(draft_to, int(w * scale) + 1), max(draft_to, int(h * scale) + 1)))
    return im, w, h


def _decode_error(exc: Exception) -> DecodeError:
    """Pillow's ways of failing on bad bytes → one DecodeError line."""
    if isinstance(exc, Image.DecompressionBombError):
        return DecodeError(f"image too large: over {MAX_PIXELS / 1e6:.0f} megapixels, possible decompression bomb")
    if isinstance(exc, UnidentifiedImageError):
        return DecodeError("not a recognised image format")
    return DecodeError(f"cannot decode: {_reason(exc)}")


def probe(data: bytes, draft_to: int | None = None) -> Probe:
    """What `open_image(data, draft_to)` would decode, from the header alone (no pixel decoded): lets a caller
    (the server) hold uploads to a pixel budget far below the bomb limit. Raises DecodeError."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im, w, h = _open_drafted(data, draft_to)
            progressive = im.format == "JPEG" and bool(im.info.get("progressive") or im.info.get("progression"))
            return Probe(w, h, im.format or "?", *im.size, progressive=progressive)
    except DecodeError:
        raise
    except (Image.DecompressionBombError, UnidentifiedImageError, *_DECODE_ERRORS) as exc:
        raise _decode_error(exc) from exc


def open_image(data: bytes, draft_to: int | None = None) -> tuple[Image.Image, int, int, str]:
    """Bytes → (RGB image with EXIF orientation applied, width, height, format); raises DecodeError.

    The one safe way in for any image bytes (indexing, query images, uploads, thumbnails): the bomb limit is
    checked before any pixel is decoded, and a JPEG is decoded at the smallest DCT scale whose shorter side
    still covers `draft_to` pixels (10-30x less work for camera photos). `probe` tells the cost beforehand.
    """
    im, w, h, fmt, _meta = _open_oriented(data, draft_to, with_meta=False)
    return im, w, h, fmt


def _open_oriented(data: bytes, draft_to: int | None,
                   with_meta: bool) -> tuple[Image.Image, int, int, str, PhotoMeta]:
    """`open_image`, plus the photo metadata of the EXIF block it reads for the orientation (`with_meta`)."""
    try:
        with warnings.catch_warnings():
            # Pillow warns above its own (lower) limit and errors above twice it; one limit applies: ours.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im, w, h = _open_drafted(data, draft_to)
            fmt = im.format or "?"
            im.seek(0)
            im.load()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # Pillow's "Corrupt EXIF data": the tag is absent
                orientation = im.getexif().get(0x0112, 1)
            meta = exif.of_image(im) if with_meta else NO_META  # the same EXIF block, already parsed
            if orientation in (5, 6, 7, 8):
                w, h = h, w
            if orientation != 1:  # exif_transpose copies even an upright image: 4 bytes a pixel for nothing
                im = ImageOps.exif_transpose(im) or im
            return _to_rgb(im), w, h, fmt, meta
    except DecodeError:
        raise
    except (Image.DecompressionBombError, UnidentifiedImageError, *_DECODE_ERRORS) as exc:
        raise _decode_error(exc) from exc


_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, KeyError, MemoryError)


def _reason(exc: Exception) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def decode(data: bytes, size: int, resize_mode: str = "shortest") -> Decoded:
    """Decode bytes → Decoded (model-ready pixels, the perceptual hashes of the same decoded image, taken
    before the model's crop, and the photo's metadata); raises DecodeError with a short reason."""
    from clipsearch.media.phash import picture_hashes

    im, w, h, fmt, meta = _open_oriented(data, size, with_meta=True)
    try:
        hashes = picture_hashes(im)
        pixels = np.array(fit(im, size, resize_mode), dtype=np.uint8)  # writable copy for torch
    except _DECODE_ERRORS as exc:
        raise DecodeError(f"cannot decode: {_reason(exc)}") from exc
    if pixels.shape != (size, size, 3):
        raise DecodeError(f"unexpected decoded shape {pixels.shape}")
    return Decoded(pixels, w, h, fmt, hashes, meta)


def _read_file(path: str) -> bytes:
    """The whole file, read once; an unreadable or empty file is a DecodeError naming why."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise DecodeError(f"cannot read: {exc.strerror or exc}") from exc
    if not data:
        raise DecodeError("empty file")
    return data


def read_and_decode(path: str, size: int, resize_mode: str = "shortest") -> tuple[str, Decoded]:
    """Read once, hash and decode from memory: the digest for move detection costs no extra I/O."""
    data = _read_file(path)
    return digest_bytes(data), decode(data, size, resize_mode)


def read_and_hash(path: str, draft_to: int = 224) -> tuple[str, bytes]:
    """(content digest, perceptual hashes) of a file, without the model: the pass that gives hashes to images
    indexed before hashes were kept (decoded at the same reduced size as for a 224-pixel model)."""
    from clipsearch.media.phash import picture_hashes

    data = _read_file(path)
    im = open_image(data, draft_to=draft_to)[0]
    try:
        return digest_bytes(data), picture_hashes(im)
    except _DECODE_ERRORS as exc:
        raise DecodeError(f"cannot decode: {_reason(exc)}") from exc


def file_digest(path: str) -> str:
    with open(path, "rb") as f:
        return digest_bytes(f.read())


def read_verified(path: str, digest: str) -> bytes | None:
    """The bytes of a regular file whose content digest is `digest`, or None (gone, not a regular file, changed).

    What a server hands out for a catalogued image: whatever now sits at the path (a symlink swapped in, a FIFO,
    another file), only the exact content that was indexed comes back.
    """
    import stat

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))  # a FIFO must not block us
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read()
    except OSError:
        return None
    finally:
        os.close(fd)
    return data if data and digest_bytes(data) == digest else None


class SizedInput(Protocol):
    """What decoding needs to know of a model: its input size and how it resizes."""
    image_size: int
    resize_mode: str


def decode_paths(encoder: SizedInput, paths: Sequence[str],
                 workers: int = 2) -> tuple[np.ndarray, list[int], list[tuple[str, str]]]:
    """(pixels of the readable images, their indices, (path, error) for the rest)."""
    def one(path: str):
        try:
            return read_and_decode(path, encoder.image_size, encoder.resize_mode)[1].pixels
        except DecodeError as exc:
            return exc

    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(one, paths))
    kept = [i for i, r in enumerate(results) if not isinstance(r, Exception)]
    failed = [(paths[i], str(r)) for i, r in enumerate(results) if isinstance(r, Exception)]
    size = encoder.image_size
    pixels = np.stack([results[i] for i in kept]) if kept else np.zeros((0, size, size, 3), np.uint8)
    return pixels, kept, failed
