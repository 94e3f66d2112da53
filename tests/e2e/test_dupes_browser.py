"""The duplicates view in a real browser (Debian's Chromium driven by Playwright, as tests/e2e/test_browser.py):
it opens /dupes on a live server, sees a group with its keeper and why, shows a file named like markup as text,
switches level, exports the non-keepers' paths as text, and links back to the search page."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import clipsearch
from tests.e2e.live import chromium, serving
from tests.e2e.test_dupes_levels import make_collection

MARKUP_NAME = "<img src=x onerror=\"window.__xss=1\">.png"


@pytest.fixture(scope="module")
def dupes_server(tmp_path_factory: pytest.TempPathFactory):
    """A uvicorn server in a thread over photos and their copies (any model: the random tiny one)."""
    base = tmp_path_factory.mktemp("dupes-browser")
    root = base / "photos"
    make_collection(root)
    shutil.copyfile(root / "originals/moon.png", root / "copies" / MARKUP_NAME)
    with clipsearch.open(base / "index", model="clipsearch-tiny") as store:
        store.add([root])
    with serving(base / "index") as url:
        yield url, root.resolve()


def test_the_duplicates_view_shows_groups_keepers_and_exports_paths(dupes_server, tmp_path: Path) -> None:
    url, root = dupes_server
    with chromium(tmp_path / "profile", accept_downloads=True, viewport={"width": 1280, "height": 900}) as context:
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
        page.goto(url.rstrip("/") + "/dupes")
        page.wait_for_selector("section.group")
        assert page.locator("section.group").count() == 7  # six injected groups, and the moon's markup-named copy
        chelsea = page.locator("section.group", has_text="chelsea.png")
        assert chelsea.locator("figure.member").count() == 4
        keeper = chelsea.locator("figure.member.keeper")
        assert keeper.count() == 1 and keeper.locator(".path").text_content() == str(root / "originals/chelsea.png")
        assert "kept: original format (PNG; WEBP is a conversion)" in chelsea.locator("h2").text_content()
        assert "451×300" in keeper.text_content() and "bits apart" in chelsea.text_content()
        chelsea.scroll_into_view_if_needed()  # thumbnails load lazily, as they come into view
        chelsea_thumbs = chelsea.locator("img")
        for i in range(chelsea_thumbs.count()):
            chelsea_thumbs.nth(i).evaluate("img => img.decode()")  # loaded and decodable, or this raises
        assert page.get_by_text(MARKUP_NAME, exact=False).count() == 1  # the name shown as text ...
        assert page.evaluate("window.__xss") is None  # ... never run
        with page.expect_download() as download:
            page.click("#export")
        exported = Path(download.value.path()).read_text().splitlines()
        assert len(exported) == 12 + 1 and str(root / "copies/chelsea.webp") in exported
        assert str(root / "originals/chelsea.png") not in exported
        page.select_option("#level", "exact")
        page.wait_for_function("() => document.querySelectorAll('section.group').length === 2")
        page.screenshot(path=str(tmp_path / "dupes.png"), full_page=True)
        page.click("#back")
        page.wait_for_url(url.rstrip("/") + "/")
        assert errors == []
