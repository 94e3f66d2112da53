"""Videos as searchable moments: generated clips whose scenes change at known times, indexed with the trained
test model; a query for a scene returns the right video at the right time; incremental runs and broken files."""

from __future__ import annotations

import os
from pathlib import Path

import av
import numpy as np
from PIL import Image

from tests.conftest import cli, cli_json

INTERVAL = 1.0  # seconds between sampled frames in these tests
SCENE_SECONDS = 2


def make_video(path: Path, scenes: list[Path], fps: int = 5, size: int = 96, codec: str = "mpeg4",
               width: int | None = None) -> None:
    """A clip showing each image for SCENE_SECONDS, in order (scene i spans [2i, 2i+2) seconds). A browser plays
    codec "libvpx" in .webm (MPEG-4 part 2 it does not)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height = width or size, size
        stream.pix_fmt = "yuv420p"
        for image in scenes:
            pixels = np.asarray(Image.open(image).convert("RGB").resize((width or size, size)))
            for _ in range(SCENE_SECONDS * fps):
                for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                    container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def scene(shapes: Path, name: str) -> Path:
    return sorted(shapes.glob(f"{name.replace(' ', '_')}_*.png"))[0]


def _videos(tmp_path: Path, shapes: Path) -> Path:
    folder = tmp_path / "videos"
    folder.mkdir()
    make_video(folder / "walk.mp4", [scene(shapes, "red circle"), scene(shapes, "blue square"),
                                     scene(shapes, "green triangle")])
    make_video(folder / "garden.mkv", [scene(shapes, "green circle"), scene(shapes, "red triangle")])
    return folder


def test_a_scene_query_returns_the_video_at_that_moment(runner, tmp_path: Path, shapes_source: Path,
                                                        trained_model: Path) -> None:
    folder = _videos(tmp_path, shapes_source)
    idx = tmp_path / "index"
    summary = cli_json(runner, "index", folder, "--index", idx, "--model", trained_model,
                       "--frame-interval", str(INTERVAL))
    assert summary["added"] == 2 and summary["failed"] == 0
    info = cli_json(runner, "info", "--index", idx)
    assert info["videos"] == 2 and info["frames"] == info["vectors"] == 6 + 4  # one frame a second
    for text, video, start in (("a blue square", "walk.mp4", 2), ("a green triangle", "walk.mp4", 4),
                               ("a red triangle", "garden.mkv", 2)):
        hits = cli_json(runner, "query", text, "-k", "2", "--index", idx)
        assert Path(hits[0]["path"]).name == video, (text, hits)
        assert start - INTERVAL <= hits[0]["timestamp"] < start + SCENE_SECONDS + INTERVAL, (text, hits[0])
        assert len({h["path"] for h in hits}) == len(hits)  # one hit per video: its best moment
    frames = cli_json(runner, "query", "a blue square", "-k", "5", "--all-frames", "--index", idx)
    assert len(frames) == 5 and len({h["path"] for h in frames}) < 5
    table = cli(runner, "query", "a blue square", "-k", "1", "--index", idx).stdout
    assert "walk.mp4 @ 00:00:0" in table


def test_videos_are_incremental_and_broken_ones_are_failures(runner, tmp_path: Path, shapes_source: Path,
                                                             trained_model: Path) -> None:
    folder = _videos(tmp_path, shapes_source)
    good = (folder / "walk.mp4").read_bytes()
    (folder / "truncated.mp4").write_bytes(good[: len(good) // 3])
    (folder / "empty.webm").write_bytes(b"")
    (folder / "noise.avi").write_bytes(os.urandom(4096))
    idx = tmp_path / "index"
    first = cli_json(runner, "index", folder, "--index", idx, "--model", trained_model,
                     "--frame-interval", str(INTERVAL))
    assert first["added"] == 2
    assert sorted(Path(f["path"]).name for f in first["failures"]) == ["empty.webm", "noise.avi", "truncated.mp4"]
    assert not any("[Errno" in f["error"] for f in first["failures"])  # FFmpeg's error codes mean nothing to a user
    again = cli_json(runner, "index", folder, "--index", idx)
    assert again["encoded"] == 0 and again["unchanged"] == 5  # an unchanged video costs a stat
    make_video(folder / "walk.mp4", [scene(shapes_source, "blue circle")])  # re-cut: now one 2 s scene
    (folder / "garden.mkv").unlink()
    changed = cli_json(runner, "index", folder, "--index", idx, "--frame-interval", str(INTERVAL))
    assert changed["updated"] == 1 and changed["removed"] == 4  # garden's four frames leave
    info = cli_json(runner, "info", "--index", idx)
    assert info["videos"] == 1 and info["frames"] == info["vectors"] == 2
    hits = cli_json(runner, "query", "a blue circle", "--index", idx)
    assert Path(hits[0]["path"]).name == "walk.mp4" and hits[0]["timestamp"] < SCENE_SECONDS
