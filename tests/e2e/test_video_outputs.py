"""A video among the hits, in every picture the CLI and the API hand out: a thumbnail per sampled moment, the
original streamed with HTTP ranges (so a browser's player seeks), contact sheets, terminal previews, `index
--thumbnails`, and counts that say files and moments ("4 photos, 1 video (6 moments)")."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from clipsearch.server import create_app
from tests.conftest import cli, cli_json
from tests.e2e.test_video import SCENE_SECONDS, make_video, scene

INTERVAL = 1.0
PHOTOS = ("red circle", "blue square", "green circle", "yellow square")
SCENES = ("red triangle", "blue triangle", "green triangle")


def mixed_collection(root: Path, shapes: Path) -> Path:
    """Four photos and a VP8 .webm (a browser plays it) of three 2 s scenes, and a .mp4 of one scene."""
    folder = root / "mixed"
    folder.mkdir()
    for name in PHOTOS:
        shutil.copyfile(scene(shapes, name), folder / scene(shapes, name).name)
    make_video(folder / "walk.webm", [scene(shapes, s) for s in SCENES], codec="libvpx", width=128)
    make_video(folder / "clip.mp4", [scene(shapes, "blue circle")])
    return folder


@pytest.fixture(scope="module")
def mixed_store(tmp_path_factory: pytest.TempPathFactory, shapes_source: Path, trained_model: Path) -> Path:
    from typer.testing import CliRunner

    root = tmp_path_factory.mktemp("mixed")
    idx = root / "index"
    cli_json(CliRunner(), "index", mixed_collection(root, shapes_source), "--index", idx, "--model", trained_model,
             "--frame-interval", str(INTERVAL))
    return idx


def _video_hit(client: TestClient, text: str = "a green triangle") -> dict:
    hits = client.get("/api/search", params={"q": text, "k": 6}).json()["results"]
    return next(h for h in hits if h["path"].endswith("walk.webm"))


def test_counts_say_photos_videos_and_moments(runner, mixed_store: Path) -> None:
    info = cli_json(runner, "info", "--index", mixed_store)
    assert (info["images"], info["videos"], info["frames"]) == (4, 2, 3 * SCENE_SECONDS + SCENE_SECONDS)
    assert "4 photos, 2 videos (8 moments)" in cli(runner, "info", "--index", mixed_store).stdout
    api = TestClient(create_app(mixed_store)).get("/api/info").json()
    assert (api["images"], api["videos"], api["moments"]) == (4, 2, 8)
    assert api["extensions"]["webm"] == 1 and api["extensions"]["mp4"] == 1  # files, not moments
    formats = {Path(h["path"]).suffix: h["format"]
               for h in cli_json(runner, "query", "a blue circle", "-k", "6", "--index", mixed_store)}
    assert formats[".mp4"] == "MP4" and formats[".webm"] == "WEBM"


def test_a_video_moment_has_its_own_thumbnail(mixed_store: Path) -> None:
    client = TestClient(create_app(mixed_store))
    hit = _video_hit(client)
    assert SCENE_SECONDS * 2 - INTERVAL <= hit["timestamp"] < SCENE_SECONDS * 3  # the green scene
    first = client.get(f"/api/images/{hit['id']}/thumbnail")
    assert first.status_code == 200 and first.headers["content-type"] == "image/webp"
    thumb = Image.open(io.BytesIO(first.content)).convert("RGB")
    assert thumb.size == (128, 96)  # the video's own 4:3 shape and size (never enlarged), not a square
    other = _video_hit(client, "a red triangle")
    assert other["id"] != hit["id"]
    red = Image.open(io.BytesIO(client.get(f"/api/images/{other['id']}/thumbnail").content)).convert("RGB")
    assert red.tobytes() != thumb.tobytes()  # each moment shows its own frame
    again = client.get(f"/api/images/{hit['id']}/thumbnail", headers={"If-None-Match": first.headers["etag"]})
    assert again.status_code == 304


def test_the_original_video_answers_range_requests(mixed_store: Path) -> None:
    client = TestClient(create_app(mixed_store))
    hit = _video_hit(client)
    data = Path(hit["path"]).read_bytes()
    whole = client.get(f"/api/images/{hit['id']}/file")
    assert whole.status_code == 200 and whole.content == data
    assert whole.headers["content-type"] == "video/webm" and whole.headers["accept-ranges"] == "bytes"
    part = client.get(f"/api/images/{hit['id']}/file", headers={"Range": "bytes=100-199"})
    assert part.status_code == 206 and part.content == data[100:200]
    assert part.headers["content-range"] == f"bytes 100-199/{len(data)}"
    tail = client.get(f"/api/images/{hit['id']}/file", headers={"Range": "bytes=-50"})
    assert tail.status_code == 206 and tail.content == data[-50:]
    open_ended = client.get(f"/api/images/{hit['id']}/file", headers={"Range": f"bytes={len(data) - 10}-"})
    assert open_ended.status_code == 206 and open_ended.content == data[-10:]
    past = client.get(f"/api/images/{hit['id']}/file", headers={"Range": f"bytes={len(data)}-"})
    assert past.status_code == 416 and past.headers["content-range"] == f"bytes */{len(data)}"
    photo = client.get("/api/search", params={"q": "a red circle", "k": 1}).json()["results"][0]
    ranged = client.get(f"/api/images/{photo['id']}/file", headers={"Range": "bytes=0-9"})
    assert ranged.status_code == 206 and ranged.content == Path(photo["path"]).read_bytes()[:10]


def test_a_changed_video_is_refused(tmp_path: Path, mixed_store: Path) -> None:
    store = tmp_path / "index"
    shutil.copytree(mixed_store, store)
    client = TestClient(create_app(store))
    hit = _video_hit(client)
    original = Path(hit["path"]).read_bytes()
    try:
        Path(hit["path"]).write_bytes(original[:-1] + bytes([original[-1] ^ 1]))  # the last MiB changes
        assert client.get(f"/api/images/{hit['id']}/file").status_code == 404
    finally:
        Path(hit["path"]).write_bytes(original)
    assert client.get(f"/api/images/{hit['id']}/file").status_code == 200


def test_contact_sheet_preview_and_thumbnails_with_a_video_hit(runner, tmp_path: Path, mixed_store: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    store = tmp_path / "index"
    shutil.copytree(mixed_store, store)
    sheet = tmp_path / "sheet.png"
    result = cli(runner, "query", "a green triangle", "-k", "6", "--grid", sheet, "--index", store)
    assert "unexpected" not in result.stderr
    grid = Image.open(sheet).convert("RGB")
    assert grid.size[0] > 256 * 5
    hits = cli_json(runner, "query", "a green triangle", "-k", "6", "--index", store)
    video_rank = next(h["rank"] for h in hits if h["path"].endswith("walk.webm"))
    col, row = (video_rank - 1) % 5, (video_rank - 1) // 5
    x, y = 8 + col * 264 + 128, 8 + row * 304 + 128
    assert grid.getpixel((x, y)) != (70, 70, 70)  # a picture, not the grey "unavailable" tile
    monkeypatch.setenv("TERM", "xterm-kitty")
    preview = cli(runner, "query", "a green triangle", "-k", "6", "--preview", "--index", store).stdout
    assert "\x1b_G" in preview and "walk.webm @ 00:00:0" in preview and "unavailable" not in preview
    cached = len(list((store / "thumbnails").rglob("*.webp")))  # the hits drawn above (and earlier tests')
    assert cached >= 6
    made = cli_json(runner, "index", mixed_store.parent / "mixed", "--index", store, "--thumbnails")
    assert made["thumbnails"] == 4 + 8 - cached  # every photo and every moment of both videos
    assert len(list((store / "thumbnails").rglob("*.webp"))) == 4 + 8
    again = cli_json(runner, "index", mixed_store.parent / "mixed", "--index", store, "--thumbnails")
    assert again["thumbnails"] == 0
