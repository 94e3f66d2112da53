"""Frames cut from a video by time: the moments `sample_frames` keeps, the frames the text reader reads
(`frames_at`) and a moment's thumbnail (`frame_thumbnail`), on a generated clip of three solid colours."""

from __future__ import annotations

import io
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from clipsearch.media.images import DecodeError
from clipsearch.media.video import frame_thumbnail, frames_at, sample_frames

COLOURS = [(220, 20, 20), (20, 200, 20), (20, 20, 220)]  # two seconds each
FPS, WIDTH, HEIGHT = 5, 160, 96


@pytest.fixture()
def clip(tmp_path: Path) -> Path:
    path = tmp_path / "colours.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        for colour in COLOURS:
            pixels = np.full((HEIGHT, WIDTH, 3), colour, dtype=np.uint8)
            for _ in range(2 * FPS):
                for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                    container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def _dominant(image: Image.Image) -> int:
    return int(np.argmax(np.asarray(image.convert("RGB"), dtype=np.float64).mean(axis=(0, 1))))


def test_frames_at_returns_each_sampled_moment_within_max_side(clip: Path) -> None:
    times = [ms for ms, _pixels in sample_frames(str(clip), 32, interval=1.0).frames]
    assert len(times) >= 5
    found = frames_at(str(clip), times, max_side=64)
    assert sorted(found) == sorted(times)
    for ms, image in found.items():
        assert image.mode == "RGB" and max(image.size) == 64 and image.size == (64, 38)
        assert _dominant(image) == min(ms // 2000, 2)  # red, then green, then blue


def test_a_moments_thumbnail_is_that_frame_within_size(clip: Path) -> None:
    with open(clip, "rb") as f:
        webp = frame_thumbnail(f, 4500, 48)
    image = Image.open(io.BytesIO(webp))
    assert image.format == "WEBP" and max(image.size) == 48
    assert _dominant(image) == 2


def test_a_file_that_is_no_video_is_one_decode_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\xff" * 200)
    with pytest.raises(DecodeError, match="cannot decode video|no video stream"):
        frames_at(str(bad), [0], max_side=64)
    with open(bad, "rb") as f, pytest.raises(DecodeError, match="cannot decode video|no video stream"):
        frame_thumbnail(f, 0, 48)
