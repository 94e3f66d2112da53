"""Browsing without a query lists pictures by capture time, falling back to the file's time where a picture has
none, ties by id: on SQLite (through SQLAlchemy and the lean sqlite3 reader) and PostgreSQL, from the library,
the HTTP API (pages that neither skip nor repeat) and the page. The photos' EXIF capture times run opposite to
their files' modification times, so an order by file time fails every check."""

from __future__ import annotations

import datetime as dt
import os
import shutil
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image

import clipsearch
from clipsearch.catalog.sqlite_reader import QuickCatalog
from clipsearch.media.synthetic import make_exif_photos
from clipsearch.server import create_app
from tests.conftest import cli, db_args

# make_exif_photos: photo i taken on 2020-01-(i+1) at (8+i):0i, with +01:00 on the even ones (the odd ones carry
# no offset and are read in this machine's zone: at most 14 h either way, which keeps this order)
DAY = 86_400
CAPTURE_ORDER = ["photo_0005.jpg", "photo_0004.jpg", "photo_0003.jpg", "plain.png", "photo_0002.jpg",
                 "TIE", "TIE", "photo_0000.jpg"]  # TIE: photo_0001.jpg and its copy, same capture time: by id
TIED = {"photo_0001.jpg", "copy_of_0001.jpg"}


def _utc(text: str) -> float:
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.timezone.utc).timestamp()


@pytest.fixture()
def store(tmp_path: Path, runner, catalog_db: str | None) -> tuple[Path, str | None]:
    photos = tmp_path / "photos"
    made = make_exif_photos(photos, 6, size=96)
    for i, (path, _facts) in enumerate(made):  # taken later, modified earlier
        when = _utc("2021-01-01T00:00:00") - i * DAY
        os.utime(path, (when, when))
    copy = photos / "copy_of_0001.jpg"
    shutil.copyfile(made[1][0], copy)  # the same capture time; the newest file of all
    os.utime(copy, (_utc("2022-06-01T00:00:00"),) * 2)
    plain = photos / "plain.png"  # no capture time: its file time, between photo 2 and photo 3 by capture
    Image.new("RGB", (64, 48), (20, 90, 200)).save(plain)
    os.utime(plain, (_utc("2020-01-03T16:00:00"),) * 2)
    index = tmp_path / "index"
    cli(runner, "index", photos, "--index", index, "--model", "clipsearch-tiny", *db_args(catalog_db))
    return index, catalog_db


def _check_order(names: list[str], ids: list[int]) -> None:
    """`names` (with their `ids`) in capture order: the fixed places, and the tie broken by id, higher first."""
    assert len(names) == len(CAPTURE_ORDER) and len(set(ids)) == len(ids), names
    assert [n if n not in TIED else "TIE" for n in names] == CAPTURE_ORDER, names
    tie = [i for n, i in zip(names, ids, strict=True) if n in TIED]
    assert tie == sorted(tie, reverse=True)


def _names(results: list[dict]) -> tuple[list[str], list[int]]:
    return [Path(r["path"]).name for r in results], [r["id"] for r in results]


def test_browse_lists_by_capture_time_in_pages(store: tuple[Path, str | None]) -> None:
    index, catalog_db = store
    with clipsearch.open(index, create=False) as s:
        listing = s.newest(20)
        _check_order(*_names(listing))
        assert any(r["taken"] for r in listing) and not next(r for r in listing if r["path"].endswith(".png"))["taken"]
        # a photo filter goes through the exact-distance path (sorted after SQL): the same order, the same ties
        _check_order(*_names(s.newest(20, taken_after="2019-12-01")))
        paged = [r for offset in range(0, 8, 3) for r in s.newest(3, offset)]
        assert [r["id"] for r in paged] == [r["id"] for r in listing]  # no page skips or repeats one
    if catalog_db is None:  # the lean reader a cold query uses answers the same SQL
        quick = QuickCatalog.open(index / "catalog.sqlite", readonly=True)
        assert quick is not None
        try:
            assert [rec.id for rec in quick.newest(20)] == [r["id"] for r in listing]
        finally:
            quick.close()
    client = TestClient(create_app(index))
    pages = [client.get("/api/browse", params={"k": 3, "offset": offset}).json()["results"] for offset in (0, 3, 6)]
    assert [len(p) for p in pages] == [3, 3, 2]
    assert [r["id"] for p in pages for r in p] == [r["id"] for r in listing]


def test_the_page_browses_in_capture_order(store: tuple[Path, str | None], tmp_path: Path) -> None:
    from tests.e2e.live import chromium, serving
    from tests.e2e.test_browser import THUMBS_LOADED

    index, _db = store
    with serving(index) as url, chromium(tmp_path / "profile", viewport={"width": 1400, "height": 900},
                                         locale="en-US") as browser:
        page = browser.new_page()
        page.goto(url)
        page.wait_for_function(THUMBS_LOADED, timeout=30_000)
        assert "newest first" in page.locator("#status").text_content()
        ids = [int(i) for i in page.locator("#grid .hit").evaluate_all("ns => ns.map(n => n.dataset.id)")]
        paths = {r["id"]: r["path"] for r in page.evaluate("fetch('api/browse?k=20').then(r => r.json())")["results"]}
        _check_order([Path(paths[i]).name for i in ids], ids)
