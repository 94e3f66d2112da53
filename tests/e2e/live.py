"""What the browser tests share: `clipsearch serve` over a store in a thread, and Debian's Chromium under Playwright.

The server runs as `serve` runs it (uvicorn on a loopback socket); Chromium starts headless in a fresh profile with
the flags this closed network needs (no background networking, no component updates)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from playwright import sync_api  # the test extra; the browser is Debian's (scripts/install-system-deps.sh)

from clipsearch.server import bind, create_app, url_of

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@contextmanager
def serving(store: Path) -> Iterator[str]:
    """`clipsearch serve` over `store` in a thread, its model loaded; yields its URL and stops it afterwards."""
    import uvicorn

    app = create_app(store, allowed_hosts=["127.0.0.1", "localhost"])
    app.holder.warm()
    sock = bind("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "the server did not start"
    try:
        yield url_of(sock, "127.0.0.1", None)
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@contextmanager
def chromium(profile: Path, **options: Any) -> Iterator[sync_api.BrowserContext]:
    """Debian's Chromium in a fresh user-data-dir `profile` (Playwright's launch options in `options`); a missing
    browser fails the test, naming the install step, rather than skipping it."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run scripts/install-system-deps.sh (the README's install step)")
    with sync_api.sync_playwright() as p:
        context = p.chromium.launch_persistent_context(str(profile), executable_path=CHROMIUM, headless=True,
                                                       args=CHROMIUM_ARGS, **options)
        try:
            yield context
        finally:
            context.close()


# the tiles whose marks (a video's time, the matched text, the score) cover one another: none should
MARKS_OVERLAPPING = """() => [...document.querySelectorAll('#grid .hit')].flatMap(t => {
  const boxes = [...t.querySelectorAll('.badge, .hit-text, .score')].map(m => m.getBoundingClientRect());
  const apart = (a, b) => a.right <= b.left || b.right <= a.left || a.bottom <= b.top || b.bottom <= a.top;
  return boxes.some((a, i) => boxes.slice(i + 1).some(b => !apart(a, b))) ? [Number(t.dataset.id)] : [];
})"""
