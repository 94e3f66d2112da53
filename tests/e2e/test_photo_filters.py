"""Photo metadata from the faces, on SQLite and PostgreSQL: `clipsearch query --camera/--near/--taken-after/
--taken-before` (the table's taken column, --json, the notes, one-line errors), `info`, and the HTTP API's same
filters (GET, the upload form, "more like this") with the capture time in every hit."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from clipsearch.media.synthetic import make_exif_photos
from clipsearch.server import create_app
from tests.conftest import cli, cli_json, db_args


@pytest.fixture()
def store(tmp_path: Path, runner, catalog_db: str | None) -> tuple[Path, Path, dict]:
    photos = tmp_path / "photos"
    facts = {str(p): f for p, f in make_exif_photos(photos, 12, size=96)}
    plain = photos / "plain.png"
    Image.new("RGB", (64, 48), (20, 90, 200)).save(plain)
    when = 1_579_521_600  # 2020-01-20T12:00Z
    os.utime(plain, (when, when))
    index = tmp_path / "index"
    cli(runner, "index", photos, "--index", index, "--model", "clipsearch-tiny", *db_args(catalog_db))
    return photos, index, facts


def test_cli_filters_json_table_notes_and_info(runner, store) -> None:
    _photos, index, facts = store
    nikon = {p for p, f in facts.items() if f.make == "NIKON CORPORATION"}
    hits = cli_json(runner, "query", "a photo", "-k", "20", "--camera", "nikon z", "--index", index)
    assert {h["path"] for h in hits} == nikon and all(h["camera"] == "NIKON Z 6" for h in hits)
    assert all(h["taken"].startswith("2020-01-") for h in hits)

    paris = cli_json(runner, "query", "a photo", "-k", "20", "--near", "48.8584,2.2945,2", "--index", index)
    assert {h["path"] for h in paris} == {p for p, f in facts.items() if f.lat == 48.8584}
    assert all(h["gps"]["lat"] == pytest.approx(48.8584, abs=1e-4) for h in paris)

    window = cli(runner, "query", "a photo", "-k", "20", "--taken-after", "2020-01-03", "--taken-before",
                 "2020-01-05", "--index", index, "--json")
    assert sorted(h["taken"][:10] for h in json.loads(window.stdout)) == ["2020-01-03", "2020-01-04"]
    fallback = cli(runner, "query", "a photo", "-k", "20", "--taken-after", "2020-01-19", "--taken-before",
                   "2020-01-22", "--index", index, "--paths")
    found = fallback.stdout.splitlines()
    assert [Path(p).name for p in found] == ["plain.png"]  # no photo was taken then; the plain file was modified
    assert "1 of 1 results have no capture time" in fallback.stderr and "modification time" in fallback.stderr

    table = cli(runner, "query", "a photo", "-k", "3", "--camera", "canon", "--index", index)
    assert "taken" in table.stdout and "2020-01-" in table.stdout

    info = cli_json(runner, "info", "--index", index)
    assert info["photo_metadata"] == {"with_capture_time": 12, "with_camera": 12, "with_place": 9,
                                      "metadata_unread": 0}
    assert "photo metadata" in cli(runner, "info", "--index", index).stdout


@pytest.mark.parametrize("args, message", [
    (["--near", "200,0"], "--near latitude 200 is out of range"),
    (["--near", "1,2,3,4"], "is not LAT,LON"),
    (["--taken-after", "last tuesday"], "--taken-after 'last tuesday' is not a date"),
    (["--camera", "x" * 300], "camera"),
])
def test_cli_bad_filter_values_are_one_clear_line(runner, store, args: list[str], message: str) -> None:
    result = cli(runner, "query", "a photo", *args, "--index", store[1], ok=False)
    assert result.exit_code != 0 and "Traceback" not in result.stderr + result.stdout
    assert message in result.stderr


def test_http_filters_fields_and_errors(store) -> None:
    _photos, index, facts = store
    client = TestClient(create_app(index))
    r = client.get("/api/search", params={"q": "a photo", "k": 20, "camera": "iphone"})
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert {h["path"] for h in results} == {p for p, f in facts.items() if f.make == "Apple"}
    assert all(h["camera"] == "Apple iPhone 13" and h["taken"] for h in results)

    r = client.get("/api/search", params={"q": "a photo", "k": 20, "taken_after": "2020-01-19",
                                          "taken_before": "2020-01-22"})
    body = r.json()
    assert len(body["results"]) == 1 and any("no capture time" in n for n in body["notes"])

    near = client.get(f"/api/images/{results[0]['id']}/similar", params={"k": 20, "near": "35.6586,139.7454,5"})
    tokyo = {p for p, f in facts.items() if f.lat == 35.6586} - {results[0]["path"]}
    assert {h["path"] for h in near.json()["results"]} == tokyo

    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 30, 30)).save(buf, "PNG")
    up = client.post("/api/search", files={"image": ("q.png", buf.getvalue(), "image/png")},
                     data={"k": "20", "camera": "canon", "near": "-33.8568,151.2153,5"})
    assert up.status_code == 200, up.text
    assert {h["path"] for h in up.json()["results"]} == \
        {p for p, f in facts.items() if f.make == "Canon" and f.lat == -33.8568}

    bad = client.get("/api/search", params={"q": "a photo", "near": "200,0"})
    assert bad.status_code == 400 and bad.json()["param"] == "near" and "latitude 200" in bad.json()["error"]
    assert client.get(f"/api/images/{results[0]['id']}").json()["taken"] == results[0]["taken"]
    assert client.get("/api/info").json()["photo_metadata"]["with_place"] == 9

    newest = client.get("/api/browse", params={"k": 20, "camera": "canon", "near": "48.8584,2.2945,5"}).json()
    assert {h["path"] for h in newest["results"]} == \
        {p for p, f in facts.items() if f.make == "Canon" and f.lat == 48.8584}
    assert all(h["taken"] for h in newest["results"])
    paged = client.get("/api/browse", params={"k": 2, "offset": 1, "camera": "nikon"}).json()["results"]
    everything = client.get("/api/browse", params={"k": 20, "camera": "nikon"}).json()["results"]
    assert [h["id"] for h in paged] == [h["id"] for h in everything][1:3]


@pytest.mark.parametrize("level", ["exact", "same", "similar"])
def test_dupes_take_the_same_filters(runner, tmp_path: Path, level: str) -> None:
    photos = tmp_path / "photos"
    facts = {str(p): f for p, f in make_exif_photos(photos, 6, size=96)}
    canon = sorted(p for p, f in facts.items() if f.make == "Canon")
    nikon = sorted(p for p, f in facts.items() if f.make.startswith("NIKON"))
    for source in (canon[0], nikon[0]):  # a byte-identical copy of one Canon and one Nikon photo
        Path(source).with_name("copy_" + Path(source).name).write_bytes(Path(source).read_bytes())
    index = tmp_path / "index"
    cli(runner, "index", photos, "--index", index, "--model", "clipsearch-tiny")
    extra = ["--threshold", "0.5"] if level == "similar" else []
    everything = cli_json(runner, "dupes", "--level", level, *extra, "--index", index)
    assert {Path(im["path"]).name for g in everything for im in g["images"]} >= \
        {Path(canon[0]).name, Path(nikon[0]).name}
    only = cli_json(runner, "dupes", "--level", level, *extra, "--camera", "canon", "--index", index)
    names = {Path(im["path"]).name for g in only for im in g["images"]}
    assert {Path(canon[0]).name, "copy_" + Path(canon[0]).name} <= names
    assert all(name.removeprefix("copy_") in {Path(p).name for p in canon} for name in names)
    bad = cli(runner, "dupes", "--level", level, "--near", "0,500", "--index", index, ok=False)
    assert bad.exit_code != 0 and "--near longitude 500 is out of range" in bad.stderr
