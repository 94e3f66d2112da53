"""Pictures outside the browser: `index --thumbnails`, `query --grid` contact sheets, `query --preview` inline
thumbnails (kitty / iTerm2 protocols, and the note elsewhere), and the search-box syntax."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from PIL import Image

from clipsearch.media.thumbnails import SheetLayout
from clipsearch.query.engine import split_terms
from clipsearch.terminal import image_protocol, inline_image
from tests.conftest import cli, cli_json


@pytest.fixture(scope="module")
def small_store(tmp_path_factory: pytest.TempPathFactory, shapes_source: Path, trained_model: Path) -> Path:
    """Seven images (red circles and blue squares) indexed with --thumbnails."""
    from typer.testing import CliRunner

    root = tmp_path_factory.mktemp("pictures")
    col = root / "col"
    col.mkdir()
    for p in (sorted(shapes_source.glob("red_circle_00[0-3].png"))
              + sorted(shapes_source.glob("blue_square_00[0-2].png"))):
        shutil.copyfile(p, col / p.name)
    idx = root / "index"
    summary = cli_json(CliRunner(), "index", col, "--index", idx, "--model", trained_model, "--thumbnails")
    assert summary["thumbnails"] == 7
    return idx


def test_index_thumbnails_once_per_content(small_store: Path, runner) -> None:
    thumbs = sorted((small_store / "thumbnails").rglob("*.webp"))
    assert len(thumbs) == 7 and all(Image.open(t).format == "WEBP" for t in thumbs)
    roots = cli_json(runner, "info", "--index", small_store)["roots"]
    again = cli_json(runner, "index", roots[0], "--index", small_store, "--thumbnails")
    assert again["thumbnails"] == 0 and again["unchanged"] == 7


def _tiles(sheet: Image.Image, layout: SheetLayout, n: int) -> list[bool]:
    """Whether each grid slot holds a picture (not the plain background)."""
    filled = []
    for i in range(layout.columns * layout.rows):
        x, y = layout.origin(i)
        box = sheet.crop((x, y, x + layout.tile, y + layout.tile)).convert("L")
        lo, hi = box.getextrema()
        filled.append(hi - lo > 30)
    return filled


@pytest.mark.parametrize("name", ["sheet.jpg", "sheet.png"])
def test_grid_has_one_tile_per_result(small_store: Path, runner, tmp_path: Path, name: str) -> None:
    out = tmp_path / name
    result = cli(runner, "query", "a red circle", "-k", "7", "--grid", out, "--index", small_store)
    assert "contact sheet" in result.stderr and "5x2 grid" in result.stderr
    sheet = Image.open(out)
    sheet.load()
    layout = SheetLayout.for_count(7)
    assert (layout.columns, layout.rows) == (5, 2) and sheet.size == layout.size
    assert sheet.format == ("JPEG" if name.endswith(".jpg") else "PNG")
    assert _tiles(sheet, layout, 7) == [True] * 7 + [False] * 3  # seven pictures, three empty slots
    three = tmp_path / "three.png"
    cli(runner, "query", "a red circle", "-k", "3", "--grid", three, "--index", small_store)
    assert Image.open(three).size == SheetLayout.for_count(3).size == (3 * 264 + 8, 304 + 8)


def test_grid_errors(small_store: Path, runner, tmp_path: Path) -> None:
    bad = cli(runner, "query", "x", "--grid", tmp_path / "sheet.gif", "--index", small_store, ok=False)
    assert bad.exit_code == 1 and "--grid" in bad.stderr and "Traceback" not in bad.stderr
    none = cli(runner, "query", "x", "--before", "1990-01-01", "--grid", tmp_path / "s.png", "--index", small_store)
    assert "no contact sheet" in none.stderr and not (tmp_path / "s.png").exists()


def test_preview_protocols(small_store: Path, runner) -> None:
    kitty = runner.invoke(__import__("clipsearch.cli").cli.app,
                          ["query", "a red circle", "-k", "3", "--preview", "--index", str(small_store)],
                          env={"TERM": "xterm-kitty", "TERM_PROGRAM": ""})
    assert kitty.exit_code == 0
    assert kitty.stdout.count("\x1b_Ga=T,f=100") == 3 and "red_circle_00" in kitty.stdout
    iterm = runner.invoke(__import__("clipsearch.cli").cli.app,
                          ["query", "a red circle", "-k", "2", "--preview", "--index", str(small_store)],
                          env={"TERM": "xterm-256color", "TERM_PROGRAM": "iTerm.app", "KITTY_WINDOW_ID": ""})
    assert iterm.stdout.count("\x1b]1337;File=inline=1") == 2
    plain = runner.invoke(__import__("clipsearch.cli").cli.app,
                          ["query", "a red circle", "-k", "2", "--preview", "--index", str(small_store)],
                          env={"TERM": "dumb", "TERM_PROGRAM": "", "KITTY_WINDOW_ID": ""})
    assert plain.exit_code == 0 and "no image protocol" in plain.stderr and "\x1b" not in plain.stdout
    assert "rank" in plain.stdout  # the table instead


def test_protocol_detection_and_encoding() -> None:
    assert image_protocol({"TERM": "xterm-kitty"}) == "kitty"
    assert image_protocol({"KITTY_WINDOW_ID": "3", "TERM": "xterm"}) == "kitty"
    assert image_protocol({"TERM_PROGRAM": "iTerm.app"}) == "iterm2"
    assert image_protocol({"TERM_PROGRAM": "WezTerm"}) == "iterm2"
    assert image_protocol({"TERM": "xterm-256color"}) is None
    big = b"\x89PNG" + os.urandom(10_000)  # several 4096-byte base64 chunks
    seq = inline_image(big, "kitty")
    assert seq.startswith("\x1b_Ga=T,f=100,c=20,q=2,m=1;") and seq.endswith("\x1b\\") and ";m=0;" not in seq
    assert seq.count("\x1b_G") == 4 and seq.count("\x1b_Gm=1;") == 2 and "\x1b_Gm=0;" in seq
    assert inline_image(b"png", "iterm2") == "\x1b]1337;File=inline=1;size=3;width=20;preserveAspectRatio=1:cG5n\x07"


@pytest.mark.parametrize("text, plus, minus", [
    ("a red circle", ["a red circle"], []),
    ("beach::2 -people", ["beach::2"], ["people"]),
    ("red dress -people +beach::0.5", ["red dress", "beach::0.5"], ["people"]),
    ('-"blue sky" cold', ["cold"], ["blue sky"]),
    ('"-20 degrees" t-shirt', ["-20 degrees t-shirt"], []),
    ("  ", [], []),
])
def test_search_box_syntax(text: str, plus: list[str], minus: list[str]) -> None:
    assert split_terms(text) == (plus, minus)
