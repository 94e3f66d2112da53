"""The text inside images, end to end with the real RapidOCR models, on SQLite and PostgreSQL (`catalog_db`; the
end-to-end test also on PostgreSQL with pg_trgm, `text_catalog_db`).

A folder of generated shapes beside photos with English and Chinese text drawn at test time: an existing store
learns to read text without encoding anything again, the text filter and fused text queries find the pictures
only their words identify (the model is clipsearch-tiny at random init: it cannot find anything by look, so
what is found is found by its words; bench/text_fusion.py measures look against words with a trained model),
the HTTP API carries the text, and later runs read only what is new or changed. OCR costs about a second an
image here, so the images are few and small.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

import clipsearch
from clipsearch.indexing.text_stage import BATCH
from clipsearch.server import create_app
from tests.conftest import cli_json, count_rows, db_args
from tests.text_images import render

SHAPES = ("red_circle", "blue_square", "green_triangle")
MODEL = "clipsearch-tiny"  # random init, shipped config: nothing to train or download


@pytest.fixture()
def folder(tmp_path: Path, shapes_source: Path) -> Path:
    """Two images of each of three shapes (no text), a receipt, a sign in Chinese, a photo without text."""
    photos = tmp_path / "photos"
    photos.mkdir()
    for shape in SHAPES:
        for src in sorted(shapes_source.glob(f"{shape}_*.png"))[:2]:
            shutil.copy(src, photos / src.name)
    render(photos / "receipt.png", ["INVOICE2024 发票"], "coffee")
    render(photos / "sign.png", ["一只在草地上的狗"], "chelsea")
    render(photos / "plain.jpg", [], "astronaut", fmt="JPEG")
    return photos


INDEX_KINDS = {"sqlite": "FTS5 trigram", "postgresql": "none (pg_trgm missing: ILIKE scans)",
               "postgresql-pg_trgm": "pg_trgm"}  # what `info` says serves the matches, per `text_catalog_db`


def test_text_in_images_end_to_end(tmp_path: Path, folder: Path, runner, text_catalog_db: str | None,
                                   request: pytest.FixtureRequest) -> None:
    catalog_db = text_catalog_db
    idx = tmp_path / "index"
    total = 9
    first = cli_json(runner, "index", folder, "--index", idx, "--model", MODEL, *db_args(catalog_db))
    assert first["added"] == total and first["text_read"] == 0
    with pytest.raises(Exception, match="has not read the text"):
        with clipsearch.open(idx) as store:
            store.search(text_in_image="invoice")

    # an existing store learns to read: only the text is read, nothing is encoded again
    reading = cli_json(runner, "index", folder, "--index", idx, "--ocr")
    assert (reading["encoded"], reading["unchanged"]) == (0, total)
    assert (reading["text_read"], reading["text_found"]) == (total, 2)
    info = cli_json(runner, "info", "--index", idx)
    assert info["text"]["read"] == total and info["text"]["with_text"] == 2
    assert info["text"]["index"] == INDEX_KINDS[request.node.callspec.params["text_catalog_db"]]

    # the filter: by a word, a part of a glued word, Chinese of two characters (below a trigram) and of one
    for words in ("invoice", "2024", "发票", "票"):
        hits = cli_json(runner, "query", "--text-in-image", words, "--index", idx)
        assert [Path(h["path"]).name for h in hits] == ["receipt.png"], words
    match = hits[0]["text_matches"][0]
    assert "INVOICE2024" in match["text"] and match["words"] == ["票"]
    x0, y0, x1, y1 = match["box"]
    assert 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 0.6  # the label is drawn in the upper part of the photo
    assert cli_json(runner, "query", "--text-in-image", "草地上", "--index", idx)[0]["path"].endswith("sign.png")
    assert cli_json(runner, "query", "--text-in-image", "invoice nowhere", "--index", idx) == []
    assert [Path(h["path"]).name for h in cli_json(runner, "query", "a red circle", "--text-in-image", "invoice",
                                                    "--index", idx)] == ["receipt.png"]  # a filter beside terms

    # fused text queries: the pictures are found by their words; the others follow in CLIP's order
    fused = cli_json(runner, "query", "invoice", "-k", str(total), "--index", idx)
    assert Path(fused[0]["path"]).name == "receipt.png" and fused[0]["text_matches"]
    assert all(h["text_matches"] == [] for h in fused[1:]) and len(fused) == total
    rest = [h["score"] for h in fused[1:]]
    assert rest == sorted(rest, reverse=True)
    assert Path(cli_json(runner, "query", "一只狗 草地上", "--index", idx)[0]["path"]).name == "sign.png"

    # the HTTP API carries the text
    client = TestClient(create_app(idx))
    r = client.get("/api/search", params={"text_in_image": "INVOICE"})
    assert r.status_code == 200, r.text
    [result] = r.json()["results"]
    assert "INVOICE2024" in result["text"] and result["text_matches"][0]["words"] == ["invoice"]
    detail = client.get(f"/api/images/{result['id']}").json()
    assert detail["text"] == result["text"] and detail["text_lines"][0]["box"] == result["text_matches"][0]["box"]
    assert client.get("/api/search", params={"q": "发票"}).json()["results"][0]["id"] == result["id"]
    assert client.get("/api/info").json()["text"]["with_text"] == 2  # the page shows its text filter then
    page = client.get("/")
    assert page.status_code == 200 and 'id="text_in_image"' in page.text
    by_text = client.get("/api/search", params={"text_in_image": "发票", "q": ""}).json()  # what the page sends
    assert by_text["results"][0]["id"] == result["id"]

    # later runs remember to read text: unchanged and moved files are not read again, a changed one is
    again = cli_json(runner, "index", folder, "--index", idx)
    assert (again["unchanged"], again["text_read"]) == (total, 0)
    (folder / "kept").mkdir()
    (folder / "receipt.png").rename(folder / "kept" / "moved.png")
    render(folder / "sign.png", ["RECEIPT 收据"], "rocket")
    changed = cli_json(runner, "index", folder, "--index", idx)
    assert (changed["moved"], changed["updated"], changed["encoded"], changed["text_read"]) == (1, 1, 1, 1)
    assert cli_json(runner, "query", "--text-in-image", "invoice", "--index", idx)[0]["path"].endswith("moved.png")
    assert cli_json(runner, "query", "--text-in-image", "收据", "--index", idx)[0]["path"].endswith("sign.png")
    assert cli_json(runner, "query", "--text-in-image", "草地", "--index", idx) == []
    assert count_rows(idx, catalog_db, "image_text") == total


def test_killed_ocr_run_leaves_a_consistent_store_that_resumes(tmp_path: Path, runner, catalog_db: str | None) -> None:
    """SIGKILL a real `clipsearch index --ocr` once it has committed some text: what was committed is kept, and
    the next run (without --ocr: the store remembers) reads only the rest, encoding nothing. More images than one
    text commit holds (BATCH), so the first commit comes while many are still to read, however fast the machine."""
    photos = tmp_path / "photos"
    backgrounds = ("coffee", "chelsea", "astronaut", "rocket")
    count = BATCH + 24
    for i in range(count):
        render(photos / f"note{i:02d}.png", [f"NOTE{i:02d} 笔记"], backgrounds[i % 4], size=(320, 200))
    idx = tmp_path / "index"
    cli_json(runner, "index", photos, "--index", idx, "--model", MODEL, *db_args(catalog_db))
    cmd = [sys.executable, "-m", "clipsearch", "index", str(photos), "--index", str(idx), "--ocr", "--json"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=dict(os.environ))
    deadline = time.time() + 180
    killed = False
    while time.time() < deadline and proc.poll() is None:
        if count_rows(idx, catalog_db, "image_text") > 0:
            proc.send_signal(signal.SIGKILL)
            killed = True
            break
        time.sleep(0.05)
    proc.wait(timeout=30)
    assert killed and proc.returncode == -signal.SIGKILL, "the OCR run ended before it could be killed"
    read = count_rows(idx, catalog_db, "image_text")
    assert 0 < read <= count
    with clipsearch.open(idx) as store:
        info = store.info()
        assert info["images"] == info["vectors"] == count and info["last_run"]["status"] == "interrupted"
        assert info["text"]["read"] == read  # the store already remembers that it reads text
        assert len(store.search(text_in_image="笔记", k=count)) == read
    resumed = cli_json(runner, "index", photos, "--index", idx)
    assert (resumed["encoded"], resumed["unchanged"], resumed["text_read"]) == (0, count, count - read)
    hits = cli_json(runner, "query", "--text-in-image", "笔记", "-k", str(count), "--index", idx)
    assert len(hits) == count
    assert sorted(Path(h["path"]).stem for h in cli_json(runner, "query", "--text-in-image", "NOTE07",
                                                         "--index", idx)) == ["note07"]
