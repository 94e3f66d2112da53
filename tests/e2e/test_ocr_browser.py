"""The page's text-inside-images additions in a real browser (Debian's Chromium under Playwright, as
tests/e2e/test_page.py): on a store indexed with OCR (English and Chinese drawn at test time in WenQuanYi Micro Hei),
the "Text in the picture" filter narrows the results to the picture holding the words, the matched line shows over
its thumbnail and the text read shows in the detail view — Chinese included, as text (textContent), never markup —
and a plain query finds a picture by its words. Screenshots are saved under the test's tmp path.

The model is clipsearch-tiny at random init: it cannot find anything by look, so what is found is found by words.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright import sync_api

import clipsearch
from tests.e2e.live import MARKS_OVERLAPPING, chromium, serving
from tests.e2e.test_browser import THUMBS_LOADED
from tests.text_images import render

RECEIPT = "INVOICE2024 发票"
SIGN = "一只在草地上的狗"
TOTAL = 6

TILES = "() => [...document.querySelectorAll('#grid .hit')].map(t => t.querySelector('figcaption').textContent)"
# the matched line over a tile: its text, and how many elements it holds (0: drawn as text, never as markup)
TILE_TEXT = """name => {
  const tile = [...document.querySelectorAll('#grid .hit')]
    .find(t => t.querySelector('figcaption').textContent === name);
  const line = tile && tile.querySelector('.hit-text');
  return line ? [line.textContent, line.children.length, line.getBoundingClientRect().width] : null;
}"""


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, shapes_source: Path) -> Iterator[str]:
    """A live server over three shapes, a receipt, a Chinese sign and a photo without text, read with OCR."""
    base = tmp_path_factory.mktemp("ocr-browser")
    photos = base / "photos"
    photos.mkdir()
    for shape in ("red_circle", "blue_square", "green_triangle"):
        src = sorted(shapes_source.glob(f"{shape}_*.png"))[0]
        shutil.copy(src, photos / src.name)
    render(photos / "receipt.png", [RECEIPT], "coffee")
    render(photos / "sign.png", [SIGN], "chelsea")
    render(photos / "plain.jpg", [], "astronaut", fmt="JPEG")
    with clipsearch.open(base / "index", model="clipsearch-tiny") as store:
        summary = store.add([photos], ocr=True)
        assert (summary.added, summary.text_read, summary.text_found) == (TOTAL, TOTAL, 2)
    with serving(base / "index") as url:
        yield url


@pytest.fixture()
def page(tmp_path: Path) -> Iterator[sync_api.Page]:
    with chromium(tmp_path / "profile", viewport={"width": 1280, "height": 900}, locale="en-US") as context:
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
        yield page
        assert errors == []


def filter_by_text(page: sync_api.Page, words: str) -> None:
    page.fill("#text_in_image", words)
    page.press("#text_in_image", "Tab")  # the filter applies on change (Enter or leaving the field)


def test_the_text_filter_narrows_and_the_read_text_shows(page: sync_api.Page, site: str, tmp_path: Path) -> None:
    page.goto(site)
    page.wait_for_function(THUMBS_LOADED, timeout=30_000)
    assert len(page.evaluate(TILES)) == TOTAL  # browsing: every picture
    assert page.locator("#text-filter").is_visible()  # the store reads text: the filter is offered

    filter_by_text(page, "发票")
    page.wait_for_function(f"() => ({TILES})().length === 1 && document.querySelector('#grid .hit-text')")
    page.wait_for_function(THUMBS_LOADED, timeout=30_000)
    assert page.evaluate(TILES) == ["receipt.png"]
    assert "text_in_image=" in page.url  # the filter is part of the address (back, reload, share)
    line, children, width = page.evaluate(TILE_TEXT, "receipt.png")
    assert "INVOICE2024" in line and "发票" in line and children == 0 and width > 0
    page.screenshot(path=str(tmp_path / "ocr-filter-1280x900.png"))

    page.click("#grid .hit")
    page.wait_for_selector("#lightbox:not([hidden])")
    facts = page.locator("#lb-photo-facts")
    assert facts.is_visible() and "Text in the picture" in facts.locator("dt").all_text_contents()
    shown = facts.locator("dd").last
    assert "INVOICE2024" in shown.text_content() and "发票" in shown.text_content()
    assert shown.evaluate("dd => dd.children.length") == 0
    page.screenshot(path=str(tmp_path / "ocr-detail-1280x900.png"))
    page.keyboard.press("Escape")
    assert page.locator("#lightbox").is_hidden()

    filter_by_text(page, "")  # the filter cleared: every picture again
    page.wait_for_function(f"() => ({TILES})().length === {TOTAL}")

    # a plain query is matched against the text too: the sign, found by its Chinese words, comes first
    page.fill("#q", "草地上")
    page.press("#q", "Enter")
    page.wait_for_function(f"() => ({TILES})()[0] === 'sign.png'", timeout=30_000)
    page.wait_for_function(THUMBS_LOADED, timeout=30_000)
    line, children, _width = page.evaluate(TILE_TEXT, "sign.png")
    assert line == SIGN and children == 0
    page.locator("#scores").click()  # scores shown: the matched line and the score sit side by side, not on top
    page.wait_for_function("() => getComputedStyle(document.querySelector('#grid .hit .score')).opacity === '1'")
    assert page.evaluate(MARKS_OVERLAPPING) == []
    page.screenshot(path=str(tmp_path / "ocr-query-1280x900.png"))
    print(f"screenshots: {tmp_path}")
