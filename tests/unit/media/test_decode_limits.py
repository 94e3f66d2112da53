"""The one safe way in for image bytes: header-only probes, the bomb limit before any pixel, JPEG drafts,
EXIF orientation, and modes converted to RGB. Images are generated small (a PNG's header can claim any size)."""

from __future__ import annotations

import io
import struct
import zlib

import pytest
from PIL import Image

from clipsearch.media.images import MAX_PIXELS, DecodeError, open_image, probe


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height, with one tiny compressed row: decoding it would allocate the
    claimed size; probing must not."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 4)) + chunk(b"IEND", b"")


def jpeg(width: int, height: int, **save: object) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(out, "JPEG", **save)
    return out.getvalue()


def test_probe_reads_the_header_only() -> None:
    p = probe(png_header_only(11000, 12000))
    assert (p.width, p.height, p.format, p.decoded_width * p.decoded_height) == (11000, 12000, "PNG", 132_000_000)


def test_the_bomb_limit_applies_before_decoding() -> None:
    side = int(MAX_PIXELS ** 0.5) + 10
    for read in (probe, open_image):
        with pytest.raises(DecodeError, match="too large"):
            read(png_header_only(side, side))


def test_a_jpeg_is_drafted_to_the_size_asked_for() -> None:
    data = jpeg(2000, 1600)
    p = probe(data, draft_to=224)
    assert (p.width, p.height) == (2000, 1600)
    assert (p.decoded_width, p.decoded_height) == (500, 400)  # 1/4 scale: the shorter side still covers 224
    assert not p.progressive
    im, w, h, fmt = open_image(data, draft_to=224)
    assert (w, h, fmt) == (2000, 1600, "JPEG") and im.size == (500, 400) and im.mode == "RGB"
    assert probe(jpeg(800, 600, progressive=True)).progressive


def test_exif_orientation_and_modes() -> None:
    out = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to show
    Image.new("RGB", (40, 20), "white").save(out, "JPEG", exif=exif)
    im, w, h, _fmt = open_image(out.getvalue())
    assert im.size == (20, 40) and (w, h) == (20, 40)
    rgba = io.BytesIO()
    Image.new("RGBA", (4, 4), (0, 0, 0, 0)).save(rgba, "PNG")
    im, *_ = open_image(rgba.getvalue())
    assert im.mode == "RGB" and im.getpixel((0, 0)) == (255, 255, 255)  # transparency composited on white
    with pytest.raises(DecodeError):
        open_image(b"not an image at all")
