"""The duplicate levels on real photos: `same` (perceptual hashes) finds resized, recompressed, converted and
centrally cropped copies with the offline model and nothing else; `exact` only byte copies; the keeper rule and
its reasons; on SQLite and PostgreSQL.

The photos are scikit-image's; the copies are made here with fixed modification times (originals oldest), so
the keeper rule's steps are deterministic."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import clipsearch
from tests.conftest import cli, cli_json, db_args

T0 = 1_600_000_000
ORIGINALS = ("chelsea", "coffee", "rocket", "astronaut", "horse", "camera", "coins", "clock", "moon", "brick",
             "grass", "gravel")


def _save(im: Image.Image, path: Path, mtime: int, **opts) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path, **opts)
    os.utime(path, (mtime, mtime))


def _half(im: Image.Image) -> Image.Image:
    return im.resize((im.width // 2, im.height // 2), Image.Resampling.LANCZOS)


def _crop10(im: Image.Image) -> Image.Image:
    """10 % of the width and of the height cut off, centred (5 % each side)."""
    w, h = im.size
    return im.crop((w // 20, h // 20, w - w // 20, h - h // 20))


def make_collection(root: Path) -> dict[str, set[str]]:
    """Originals (PNG, one JPEG q95) and their copies; returns the expected groups, keeper first in each name
    list's sorted order is not implied: {keeper: {all members}} by relative path."""
    import skimage.data

    photos = {}
    for name in ORIGINALS:
        arr = getattr(skimage.data, name)()
        photos[name] = Image.fromarray(arr.astype(np.uint8) * 255 if arr.dtype == bool else arr).convert("RGB")
    for name, im in photos.items():
        if name == "coffee":
            _save(im, root / "originals/coffee.jpg", T0, quality=95)
        else:
            _save(im, root / f"originals/{name}.png", T0)
    groups = {
        "originals/chelsea.png": {"copies/chelsea-half-q70.jpg", "copies/chelsea.webp", "copies/chelsea-crop.jpg"},
        "originals/rocket.png": {"copies/rocket-half-q70.jpg", "copies/rocket.jpg"},
        "originals/astronaut.png": {"copies/astronaut-half-q70.jpg", "copies/astronaut-crop.png"},
        "originals/horse.png": {"copies/horse.webp"},
        "originals/coffee.jpg": {"copies/coffee-q30.jpg", "copies/coffee-crop.jpg", "copies/coffee.png"},
        "originals/camera.png": {"copies/camera byte copy.png"},
    }
    p = photos
    _save(_half(p["chelsea"]), root / "copies/chelsea-half-q70.jpg", T0 + 10, quality=70)
    _save(p["chelsea"], root / "copies/chelsea.webp", T0 + 20, quality=80)
    _save(_crop10(p["chelsea"]), root / "copies/chelsea-crop.jpg", T0 + 30, quality=90)
    _save(_half(p["rocket"]), root / "copies/rocket-half-q70.jpg", T0 + 10, quality=70)
    _save(p["rocket"], root / "copies/rocket.jpg", T0 + 20, quality=90)
    _save(_half(p["astronaut"]), root / "copies/astronaut-half-q70.jpg", T0 + 10, quality=70)
    _save(_crop10(p["astronaut"]), root / "copies/astronaut-crop.png", T0 + 30)
    _save(p["horse"], root / "copies/horse.webp", T0 + 20, quality=80)
    _save(p["coffee"], root / "copies/coffee-q30.jpg", T0 + 10, quality=30)
    _save(_crop10(p["coffee"]), root / "copies/coffee-crop.jpg", T0 + 30, quality=90)
    _save(p["coffee"], root / "copies/coffee.png", T0 + 40)
    shutil.copyfile(root / "originals/camera.png", root / "copies/camera byte copy.png")
    os.utime(root / "copies/camera byte copy.png", (T0 + 50, T0 + 50))
    return {k: {k, *v} for k, v in groups.items()}


def _groups(root: Path, data: list[dict]) -> dict[str, set[str]]:
    """{keeper: members} by path relative to root."""
    out = {}
    for g in data:
        rel = [Path(im["path"]).relative_to(root).as_posix() for im in g["images"]]
        assert g["images"][0]["keeper"] and g["keeper"] == g["images"][0]["id"]
        out[rel[0]] = set(rel)
    return out


@pytest.fixture(scope="module")
def offline_collection(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, set[str]]]:
    root = tmp_path_factory.mktemp("levels") / "photos"
    expected = make_collection(root)
    store = root.parent / "index"
    cli(CliRunner(), "index", root, "--index", store, "--model", "offline-mini")
    return root.resolve(), store, expected


def test_same_groups_copies_with_their_originals_and_nothing_else_with_the_offline_model(runner, offline_collection):
    root, store, expected = offline_collection
    data = cli_json(runner, "dupes", "--index", store)  # the default level: same
    assert _groups(root, data) == expected
    reasons = {Path(g["images"][0]["path"]).name: g["reason"] for g in data}
    assert reasons["chelsea.png"].startswith("original format (PNG; WEBP is a conversion)")
    assert reasons["coffee.jpg"].startswith("least compressed")  # over its q30 re-save (same pixels, format)
    assert reasons["camera.png"].startswith("oldest")  # a byte copy: all else equal
    assert reasons["astronaut.png"].startswith("most pixels")
    for g in data:
        assert g["level"] == "same" and all(im["distance"] <= 8 for im in g["images"])
        assert all(im["similarity"] is not None for im in g["images"])  # confirmed by the embeddings
    exact = cli_json(runner, "dupes", "--level", "exact", "--index", store)
    assert _groups(root, exact) == {"originals/camera.png": expected["originals/camera.png"]}


def test_the_keeper_rule_orders_a_group(offline_collection):
    """Most pixels; between files of one format the least compressed; between formats the original's (a PNG
    made from the JPEG is bigger, not better); the crop (fewest pixels) last."""
    root, store, _expected = offline_collection
    with clipsearch.open(store, create=False) as s:
        groups = s.duplicates(under=[str(root)])
    coffee = next(g for g in groups if Path(g.images[0].path).name == "coffee.jpg")
    assert [Path(im.path).name for im in coffee.images] == ["coffee.jpg", "coffee-q30.jpg", "coffee.png",
                                                           "coffee-crop.jpg"]
    assert coffee.images[2].size > coffee.images[0].size  # the conversion is the biggest file, yet not kept
    assert coffee.reason.startswith("least compressed (") and coffee.level == "same"


def test_same_table_says_why_and_paths_export_the_non_keepers(runner, offline_collection):
    root, store, expected = offline_collection
    out = cli(runner, "dupes", "--index", store).stdout
    assert "6 groups of duplicates" in out and "kept: original format" in out and "bits" in out
    paths = cli(runner, "dupes", "--paths", "--index", store).stdout_bytes.split(b"\n")[:-1]
    assert {Path(os.fsdecode(p)).relative_to(root).as_posix() for p in paths} == \
        {m for k, members in expected.items() for m in members if m != k}


def test_same_level_on_both_catalog_backends_and_after_the_hash_pass(runner, catalog_db, tmp_path):
    """Any model (the random tiny one here), SQLite or PostgreSQL; a store whose hashes were dropped says so and
    gets them back from an index run without re-encoding."""
    root = tmp_path / "photos"
    expected = make_collection(root)
    store = tmp_path / "index"
    cli(runner, "index", root, "--index", store, "--model", "clipsearch-tiny", *db_args(catalog_db))
    assert _groups(root.resolve(), cli_json(runner, "dupes", "--index", store)) == expected
    exact = cli_json(runner, "dupes", "--level", "exact", "--index", store)
    assert _groups(root.resolve(), exact) == {"originals/camera.png": expected["originals/camera.png"]}
    similar = cli_json(runner, "dupes", "--level", "similar", "--index", store)  # random weights: it only runs
    assert all(g["level"] == "similar" and g["similarity"] >= 0.99 for g in similar)
    from sqlalchemy import create_engine, text

    engine = create_engine(catalog_db or f"sqlite:///{store / 'catalog.sqlite'}")
    with engine.begin() as conn:  # as a store indexed before hashes were kept
        conn.execute(text("UPDATE images SET phash = NULL"))
    engine.dispose()
    result = cli(runner, "dupes", "--index", store, "--json")
    assert result.stdout.strip() == "[]" and "no perceptual hashes yet" in result.stderr
    summary = cli_json(runner, "index", root, "--index", store)
    assert summary["encoded"] == 0 and summary["hashed"] == len(list(root.rglob("*.*")))
    assert _groups(root.resolve(), cli_json(runner, "dupes", "--index", store)) == expected


def test_http_api_returns_the_same_groups_and_the_page_is_served(offline_collection):
    from fastapi.testclient import TestClient

    from clipsearch.server import create_app

    root, store, expected = offline_collection
    client = TestClient(create_app(store))
    body = client.get("/api/dupes").json()
    assert body["level"] == "same" and _groups(root, body["groups"]) == expected
    assert body["reclaimable"] == sum(im["size"] for g in body["groups"] for im in g["images"][1:])
    assert all(g["reason"] for g in body["groups"])
    exact = client.get("/api/dupes", params={"level": "exact"}).json()
    assert _groups(root, exact["groups"]) == {"originals/camera.png": expected["originals/camera.png"]}
    bad = client.get("/api/dupes", params={"level": "alike"})
    assert bad.status_code == 400 and bad.json()["param"] == "level"
    bad = client.get("/api/dupes", params={"level": "same", "threshold": "0.9"})
    assert bad.status_code == 400 and bad.json()["param"] == "threshold"
    page = client.get("/dupes")
    assert page.status_code == 200 and "script-src 'self'" in page.headers["content-security-policy"]
    assert 'src="static/dupes.js"' in page.text and 'href="./"' in page.text  # its own script, a link back
    assert client.get("/static/dupes.js").status_code == 200
    token = "dupes-token-0123456789"
    guarded = TestClient(create_app(store, token=token))
    assert guarded.get("/api/dupes").status_code == 401
    opened = guarded.get("/dupes", params={"token": token})  # the printed URL: the page keeps a cookie
    assert opened.status_code == 200 and "set-cookie" in opened.headers
    assert _groups(root, guarded.get("/api/dupes").json()["groups"]) == expected


def test_a_query_by_a_copy_of_an_indexed_photo_says_the_photo_is_in_the_store(runner, offline_collection,
                                                                              tmp_path):
    root, store, _expected = offline_collection
    copy = tmp_path / "found-on-a-phone.jpg"
    im = Image.open(root / "originals/horse.png").convert("RGB")
    im.resize((im.width * 3 // 4, im.height * 3 // 4)).save(copy, quality=75)
    result = cli(runner, "query", "--image", copy, "--index", store, "--json")
    assert f"is in the store: {root / 'originals/horse.png'}" in result.stderr or \
        f"is in the store: {root / 'copies/horse.webp'}" in result.stderr
    with clipsearch.open(store, create=False) as s:
        hits = s.search(image=copy.read_bytes(), k=3)
        assert any(n.startswith("the uploaded image is in the store: ") for n in hits.notes)
        other = tmp_path / "not-indexed.png"
        Image.effect_noise((256, 256), 60).convert("RGB").save(other)
        assert not any("is in the store" in n for n in s.search(image=str(other), k=3).notes)
