"""The detail view on a touch phone (390×844, touch events on): a finger's swipe, drawn through the DevTools
protocol, steps to the next or previous picture and the URL's `open=` follows; a mostly vertical move does not
step; Back still closes the view. Its own module: Playwright runs one browser per module here."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright import sync_api

from tests.e2e.live import chromium, serving
from tests.e2e.test_page import PHONE, _api, search
from tests.e2e.test_video_outputs import mixed_store  # noqa: F401 (a fixture)


@pytest.fixture(scope="module")
def site(mixed_store: Path) -> Iterator[str]:  # noqa: F811 (the fixture imported above)
    with serving(mixed_store) as url:
        yield url


OPEN_ID = "() => new URLSearchParams(location.search).get('open')"


def _swipe(cdp: sync_api.CDPSession, x0: float, y0: float, x1: float, y1: float, steps: int = 6) -> None:
    """A finger drawn from (x0, y0) to (x1, y1): real touch events through the DevTools protocol."""
    cdp.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [{"x": x0, "y": y0}]})
    for i in range(1, steps + 1):
        point = {"x": x0 + (x1 - x0) * i / steps, "y": y0 + (y1 - y0) * i / steps}
        cdp.send("Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": [point]})
    cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})


def test_a_swipe_steps_through_the_detail_view_on_a_touch_phone(site: str, tmp_path: Path) -> None:
    with chromium(tmp_path / "touch-profile", viewport=PHONE, has_touch=True, is_mobile=True,
                  locale="en-US") as context:
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        search(page, site, "a red circle")
        hits = _api(page, "api/search?q=a+red+circle&k=20")["results"]
        assert page.evaluate("navigator.maxTouchPoints") > 0 and len(hits) == 6
        page.locator("#grid .hit").first.tap()
        page.wait_for_function("() => !document.getElementById('lightbox').hidden")
        assert page.evaluate(OPEN_ID) == str(hits[0]["id"])
        box = page.locator(".lb-media").bounding_box()
        x_right, x_left = box["x"] + box["width"] * 0.85, box["x"] + box["width"] * 0.15
        y = box["y"] + box["height"] / 2
        cdp = context.new_cdp_session(page)
        _swipe(cdp, x_right, y, x_left, y)  # right to left: the next picture
        page.wait_for_function(f"() => ({OPEN_ID})() === '{hits[1]['id']}'")
        assert page.locator("#lb-name").text_content() == Path(hits[1]["path"]).name
        page.screenshot(path=str(tmp_path / "detail-swiped-390x844.png"))
        _swipe(cdp, x_left, y, x_right, y)  # left to right: back to the previous one
        page.wait_for_function(f"() => ({OPEN_ID})() === '{hits[0]['id']}'")
        _swipe(cdp, x_left, y, x_right, y)  # before the first: the last
        page.wait_for_function(f"() => ({OPEN_ID})() === '{hits[-1]['id']}'")
        assert page.locator("#lb-name").text_content() == Path(hits[-1]["path"]).name
        _swipe(cdp, x_right, box["y"] + 20, x_right - 60, box["y"] + box["height"] - 20)  # mostly down: a scroll
        page.wait_for_timeout(300)
        assert page.evaluate(OPEN_ID) == str(hits[-1]["id"])
        page.go_back()  # steps replaced the entry: Back still closes the view, back to the results
        page.wait_for_function("() => document.getElementById('lightbox').hidden")
        assert "open=" not in page.url and "q=a+red+circle" in page.url
        assert errors == []
