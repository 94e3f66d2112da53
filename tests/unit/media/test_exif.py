"""Photo metadata from EXIF written with Pillow at test time, and from video container tags: what cameras write
comes back; whatever a hostile or broken file holds costs only the field it breaks, never the image or the run."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image, ImageFile

from clipsearch.catalog.records import NO_META, PhotoMeta
from clipsearch.media import exif
from clipsearch.media.images import decode
from clipsearch.media.synthetic import ExifFacts, exif_block

FULL = ExifFacts("2023:06:01 14:03:22", "+09:00", "Canon", "Canon EOS R5", "RF24-105mm F4 L IS USM",
                 35.6586, 139.7454)


def jpeg(block: Image.Exif | bytes | None, size: tuple[int, int] = (64, 48)) -> bytes:
    buf = io.BytesIO()
    im = Image.new("RGB", size, (200, 30, 30))
    im.save(buf, "JPEG", **({"exif": block} if block is not None else {}))
    return buf.getvalue()


def test_capture_time_offset_camera_lens_and_place_come_back_from_decoding() -> None:
    meta = decode(jpeg(exif_block(FULL)), 32).meta
    assert meta.taken_text() == "2023-06-01T14:03:22+09:00"
    assert meta.taken_offset == 540
    assert meta.taken_utc == meta.taken_local - 540 * 60_000_000  # 05:03:22 UTC
    assert (meta.make, meta.model, meta.lens) == ("Canon", "Canon EOS R5", "RF24-105mm F4 L IS USM")
    assert meta.lat == pytest.approx(35.6586, abs=1e-5) and meta.lon == pytest.approx(139.7454, abs=1e-5)


def test_southern_western_positions_and_a_time_without_offset() -> None:
    facts = ExifFacts("2021:12:31 23:59:59", None, None, "Pixel 7", None, -33.8568, -70.6483)
    meta = decode(jpeg(exif_block(facts)), 32).meta
    assert meta.taken_text() == "2021-12-31T23:59:59" and meta.taken_offset is None and meta.taken_utc is None
    assert (meta.make, meta.model) == (None, "Pixel 7")
    assert meta.lat == pytest.approx(-33.8568, abs=1e-5) and meta.lon == pytest.approx(-70.6483, abs=1e-5)


@pytest.mark.parametrize("fmt", ["PNG", "WEBP"])  # Pillow writes no Exif sub-IFD into a TIFF
def test_the_header_pass_reads_what_decoding_reads(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / f"photo.{fmt.lower()}"
    Image.new("RGB", (64, 48), (10, 200, 30)).save(path, fmt, exif=exif_block(FULL))
    from_header = exif.read_header(str(path))
    assert from_header == decode(path.read_bytes(), 32).meta
    assert from_header.taken_text() == "2023-06-01T14:03:22+09:00" and from_header.model == "Canon EOS R5"


def test_the_header_pass_decodes_no_pixel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "photo.jpg"
    path.write_bytes(jpeg(exif_block(FULL)))
    png = tmp_path / "plain.png"
    Image.new("RGB", (64, 48)).save(png)

    def no_load(self: Image.Image) -> None:
        raise AssertionError("pixels decoded")

    monkeypatch.setattr(Image.Image, "load", no_load)
    monkeypatch.setattr(ImageFile.ImageFile, "load", no_load)
    assert exif.read_header(str(path)).model == "Canon EOS R5"
    assert exif.read_header(str(png)) == NO_META  # no EXIF before its pixels: none, and nothing decoded


@pytest.mark.parametrize("taken", ["0000:00:00 00:00:00", "    :  :     :  :  ", "2023:13:01 10:00:00",
                                   "2023:02:30 10:00:00", "garbage", "2023:06:01", "9" * 5000])
def test_impossible_or_blank_capture_times_are_absent(taken: str) -> None:
    meta = decode(jpeg(exif_block(ExifFacts(taken, "+02:00", "Canon", "X"))), 32).meta
    assert meta.taken_local is None and meta.taken_offset is None and meta.make == "Canon"


@pytest.mark.parametrize("offset", ["+25:00", "+09:75", "junk", "", "+0900000"])
def test_implausible_offsets_leave_the_local_time(offset: str) -> None:
    meta = decode(jpeg(exif_block(ExifFacts("2023:06:01 14:03:22", offset))), 32).meta
    assert meta.taken_text() == "2023-06-01T14:03:22"


def test_hostile_fields_cost_only_themselves() -> None:
    block = exif_block(FULL)
    block[0x010F] = "Evil\x1b[31mCam\0hidden" + "x" * 10_000  # escapes, NUL, a huge name
    block[0x0110] = "\x01\x02\x7f"  # a model of control characters only
    gps = block.get_ifd(0x8825)
    gps[2] = (91.0, 0.0, 0.0)  # past the pole
    sub = block.get_ifd(0x8769)
    sub[0xA434] = b"\xff\xfe\x00lens"
    meta = decode(jpeg(block), 32).meta
    assert meta.make is not None and meta.make.startswith("Evil[31mCam") and len(meta.make) <= exif.MAX_TEXT
    assert "\x1b" not in meta.make and "hidden" not in meta.make
    assert meta.model is None and meta.lat is None and meta.lon is None
    assert meta.taken_text() == "2023-06-01T14:03:22+09:00"  # the rest is kept


def test_zero_denominators_and_null_island_are_no_position() -> None:
    block = exif_block(FULL)
    gps = block.get_ifd(0x8825)
    from PIL.TiffImagePlugin import IFDRational

    gps[2] = (IFDRational(1, 0), IFDRational(0, 0), IFDRational(0, 0))
    assert decode(jpeg(block), 32).meta.lat is None
    zero = exif_block(ExifFacts(lat=0.0, lon=0.0))
    assert decode(jpeg(zero), 32).meta.lat is None


@pytest.mark.parametrize("seed", range(20))
def test_random_bytes_as_exif_never_fail_the_image(seed: int) -> None:
    import random

    rng = random.Random(seed)
    valid = exif_block(FULL).tobytes()
    damaged = bytearray(valid)
    for _ in range(rng.randint(1, 40)):
        damaged[rng.randrange(len(damaged))] = rng.randrange(256)
    if seed % 4 == 0:
        damaged = damaged[:rng.randrange(8, len(damaged))]
    dec = decode(jpeg(bytes(damaged)), 32)  # the image decodes; whatever survived of the metadata is typed
    assert dec.pixels.shape == (32, 32, 3)
    meta = dec.meta
    assert isinstance(meta, PhotoMeta)
    assert meta.lat is None or -90 <= meta.lat <= 90
    assert all(v is None or isinstance(v, str) for v in (meta.make, meta.model, meta.lens))


def test_video_tags_local_time_with_offset_utc_creation_time_and_iso6709_place() -> None:
    apple = exif.from_video_tags({"com.apple.quicktime.creationdate": "2023-06-01T14:03:22+0200",
                                  "creation_time": "2023-06-01T12:03:22.000000Z",
                                  "com.apple.quicktime.make": "Apple", "com.apple.quicktime.model": "iPhone 13",
                                  "com.apple.quicktime.location.ISO6709": "+48.8584+002.2945+035.000/"})
    assert apple.taken_text() == "2023-06-01T14:03:22+02:00"
    assert (apple.make, apple.model, apple.lat, apple.lon) == ("Apple", "iPhone 13", 48.8584, 2.2945)
    plain = exif.from_video_tags({"creation_time": "2023-06-01T12:03:22.000000Z", "location": "-33.85+151.21/"})
    assert plain.taken_text() == "2023-06-01T12:03:22+00:00" and (plain.lat, plain.lon) == (-33.85, 151.21)
    assert exif.from_video_tags({"creation_time": "1970-01-01T00:00:00.000000Z"}) == NO_META  # never set
    assert exif.from_video_tags({"creation_time": 42, "location": "+999+999/"}) == NO_META


def test_a_video_carries_its_container_creation_time(tmp_path: Path) -> None:
    av = pytest.importorskip("av")
    import numpy as np

    from clipsearch.media.video import sample_frames

    path = tmp_path / "clip.mp4"
    with av.open(str(path), "w") as container:
        container.metadata["creation_time"] = "2022-08-15T09:30:00.000000Z"
        stream = container.add_stream("mpeg4", rate=5)
        stream.width = stream.height = 64
        stream.pix_fmt = "yuv420p"
        for _ in range(5):
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.zeros((64, 64, 3), np.uint8), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    assert sample_frames(str(path), 32).meta.taken_text() == "2022-08-15T09:30:00+00:00"
    assert exif.read_video_header(str(path)).taken_text() == "2022-08-15T09:30:00+00:00"
