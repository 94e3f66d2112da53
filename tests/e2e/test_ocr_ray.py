"""`clipsearch index --ray --ocr`: the Ray actors read the text inside images — of a store indexed before without
it (actors that load only RapidOCR) and of the files they encode (it comes back with the embeddings) — and the
driver's own text reader never runs, under a TMPDIR too long for Ray's Unix sockets (the local Ray the CLI starts
gets a short temp dir). Runs follow the same rules as local ones: an unchanged or moved file is not read again, a
changed one is. Deselect with `-m "not ray"`."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

from clipsearch.indexing.ray_pool import short_temp_dir
from clipsearch.ocr import reader as ocr_reader
from tests.conftest import cli_json
from tests.text_images import render

pytestmark = pytest.mark.ray
MODEL = "clipsearch-tiny"  # random init: what is found is found by its words


def names(hits: list[dict]) -> list[str]:
    return [Path(h["path"]).name for h in hits]


def test_ray_actors_read_the_text_inside_images(tmp_path: Path, shapes_source: Path, runner,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    long_tmp = tmp_path / ("a-temporary-folder-with-a-long-name-" * 3)
    long_tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(long_tmp))  # as on CI runners: Ray's sockets would not fit below it
    monkeypatch.setattr(tempfile, "tempdir", None)  # gettempdir() reads TMPDIR again
    for name in ("RAY_TMPDIR", "RAY_ADDRESS"):
        monkeypatch.delenv(name, raising=False)
    assert tempfile.gettempdir() == str(long_tmp) and short_temp_dir() is not None

    read_here: list[tuple[int, int]] = []  # images this process's reader was handed (the actors run elsewhere)
    original = ocr_reader.TextReader.read
    monkeypatch.setattr(ocr_reader.TextReader, "read",
                        lambda self, image: read_here.append(image.size) or original(self, image))

    photos = tmp_path / "photos"
    photos.mkdir()
    for src in sorted(shapes_source.glob("red_circle_*.png"))[:2]:
        shutil.copy(src, photos / src.name)
    render(photos / "receipt.png", ["INVOICE2024 发票"], "coffee")
    render(photos / "sign.png", ["一只在草地上的狗"], "chelsea")
    idx = tmp_path / "index"

    assert cli_json(runner, "index", photos, "--index", idx, "--model", MODEL)["added"] == 4  # here, no text
    first = cli_json(runner, "index", photos, "--index", idx, "--ray", "--ocr")  # the text only, on actors
    assert (first["encoded"], first["unchanged"], first["failed"]) == (0, 4, 0)
    assert (first["text_read"], first["text_found"], first["problems"]) == (4, 2, [])
    assert read_here == []  # every file's text came back from an actor
    assert names(cli_json(runner, "query", "--text-in-image", "发票", "--index", idx)) == ["receipt.png"]
    [sign] = cli_json(runner, "query", "--text-in-image", "草地上", "--index", idx)
    assert Path(sign["path"]).name == "sign.png" and sign["text_matches"][0]["text"] == "一只在草地上的狗"

    (photos / "kept").mkdir()
    (photos / "receipt.png").rename(photos / "kept" / "moved.png")
    render(photos / "sign.png", ["RECEIPT 收据"], "rocket")
    again = cli_json(runner, "index", photos, "--index", idx, "--ray")  # the store remembers to read text
    assert (again["moved"], again["updated"], again["unchanged"], again["encoded"], again["device"]) == \
        (1, 1, 2, 1, "ray")  # the changed file is encoded on an actor, which reads its text too
    assert (again["text_read"], again["text_found"]) == (1, 1) and read_here == []
    assert names(cli_json(runner, "query", "--text-in-image", "invoice", "--index", idx)) == ["moved.png"]
    assert names(cli_json(runner, "query", "--text-in-image", "收据", "--index", idx)) == ["sign.png"]
    assert cli_json(runner, "query", "--text-in-image", "草地", "--index", idx) == []
    assert cli_json(runner, "info", "--index", idx)["text"] | {"index": None} == {"read": 4, "with_text": 2,
                                                                                 "index": None}
