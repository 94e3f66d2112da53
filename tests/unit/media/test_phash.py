"""Perceptual hashes: stable under resizing, recompression and format changes, a centred crop meets its
original's inner window, different pictures lie far apart; the blob the catalog keeps; computed from the pixels
decoded for the model (no second decode)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from clipsearch.catalog.codec import HASH_WORDS, hash_blobs_to_matrix
from clipsearch.media import images
from clipsearch.media.phash import BLOB_BYTES, HASHES, blob_words, distance, picture_distance, picture_hashes, popcount


def _photo(seed: int, size: tuple[int, int] = (320, 240)) -> Image.Image:
    """A smooth random 'photo': low-frequency structure, like a real scene (not white noise)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(6, 8, 3), dtype=np.uint8)
    return Image.fromarray(small).resize(size, Image.Resampling.BICUBIC)


def _recode(im: Image.Image, fmt: str, **opts) -> Image.Image:
    buf = io.BytesIO()
    im.save(buf, fmt, **opts)
    return images.open_image(buf.getvalue(), draft_to=224)[0]


@pytest.mark.parametrize("name", sorted(HASHES))
def test_each_hash_survives_resize_and_recompression_and_tells_pictures_apart(name: str) -> None:
    fn = HASHES[name]
    photo = _photo(1)
    base = fn(photo)
    assert distance(base, fn(_recode(photo.resize((160, 120)), "JPEG", quality=70))) <= 8
    assert distance(base, fn(_recode(photo, "WEBP", quality=80))) <= 8
    others = [distance(base, fn(_photo(s))) for s in range(2, 12)]
    assert min(others) > 8


def test_picture_hashes_blob_and_the_centred_crop() -> None:
    photo = _photo(3)
    blob = picture_hashes(photo)
    assert len(blob) == BLOB_BYTES == 8 * HASH_WORDS
    words = blob_words(blob)
    assert hash_blobs_to_matrix([blob, blob]).tolist() == [words.tolist(), words.tolist()]
    w, h = photo.size
    cropped = photo.crop((w // 20, h // 20, w - w // 20, h - h // 20))  # 10 % of width and height, centred
    assert picture_distance(blob, picture_hashes(cropped)) <= 8
    assert picture_distance(picture_hashes(cropped), blob) <= 8  # either way round
    assert picture_distance(blob, picture_hashes(_photo(4))) > 8
    assert popcount(np.array([0, 1, (1 << 64) - 1], dtype=np.uint64)).tolist() == [0, 1, 64]


def test_decode_hashes_the_pixels_it_decoded_for_the_model(monkeypatch: pytest.MonkeyPatch) -> None:
    buf = io.BytesIO()
    _photo(5, (640, 480)).save(buf, "JPEG", quality=90)
    opened = []
    real_open = images.open_image
    real_oriented = images._open_oriented  # what open_image and decode both open through

    def counting_open(data: bytes, draft_to: int | None, with_meta: bool):
        opened.append(draft_to)
        return real_oriented(data, draft_to, with_meta)

    monkeypatch.setattr(images, "_open_oriented", counting_open)
    decoded = images.decode(buf.getvalue(), 224)
    assert opened == [224]  # one decode, at the model's reduced size, for both the pixels and the hashes
    assert decoded.hashes is not None and len(decoded.hashes) == BLOB_BYTES
    assert decoded.hashes == picture_hashes(real_open(buf.getvalue(), draft_to=224)[0])
