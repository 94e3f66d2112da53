"""Chinese-CLIP end to end, from a Hugging Face cache laid out as the hub writes it (HF_HUB_OFFLINE=1): a tiny
model of the real architecture with the real Chinese vocabulary, fine-tuned for seconds on generated shapes with
Chinese captions (tests/conftest.py: chinese_hub). Chinese queries rank the right shapes first through the CLI, the
library and the HTTP API; index (ONNX Runtime image tower), image queries, serve, eval, classify, dupes and a
cold query without torch work with it; an English query gets the language note. The tiny model learns the colour
words in its seconds of training and the shapes barely, so relevance is asserted on colours: a model that could not
read the Chinese text (the English CLIP's byte pieces) would rank them at random."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

import clipsearch
from clipsearch.encoders.languages import LanguageNote
from clipsearch.encoders.onnx_encoder import OnnxImageEncoder
from clipsearch.server import create_app
from tests import chinese_hub as ch
from tests.conftest import cli, cli_json, label_of

SPEC = ch.SPEC


@pytest.fixture(scope="module")
def chinese_store(tmp_path_factory: pytest.TempPathFactory, chinese_hub: Path, shapes_source: Path) -> Path:
    """shapes_source indexed with chinese-clip:ViT-B-16 from the hub cache (read-only for the tests)."""
    from typer.testing import CliRunner

    store = tmp_path_factory.mktemp("chinese-store") / "index"
    with pytest.MonkeyPatch.context() as mp:
        ch.use_cache(mp, chinese_hub)
        cli(CliRunner(), "index", shapes_source, "--index", store, "--model", SPEC)
    return store


def _labels(hits: list[dict]) -> list[str]:
    return [label_of(h["path"]) for h in hits]


def _colours(paths: list[str]) -> list[str]:
    return [label_of(p).split()[0] for p in paths]


def _right_colour_first(paths: list[str], colour: str) -> bool:
    """The best hit has the colour, and so do most of the top 3."""
    colours = _colours(paths[:3])
    return colours[0] == colour and colours.count(colour) >= 2


@pytest.mark.parametrize("query, colour", [("红色的三角形", "red"), ("蓝色的正方形", "blue"),
                                           ("黄色的圆形", "yellow"), ("绿色的三角形", "green")])
def test_cli_chinese_queries_rank_the_right_colours_first(runner, hf_cache, chinese_store: Path, query: str,
                                                         colour: str) -> None:
    result = cli(runner, "query", query, "--index", chinese_store, "--json", "-k", "3")
    hits = json.loads(result.stdout)
    assert _right_colour_first([h["path"] for h in hits], colour), _labels(hits)
    assert "note:" not in result.stderr  # the model reads Chinese


def test_library_and_http_api_answer_chinese(hf_cache, chinese_store: Path) -> None:
    with clipsearch.open(chinese_store, create=False) as store:
        assert store.model_spec.text == SPEC
        hits = store.search("红色的三角形", k=5)
        assert _right_colour_first([h.path for h in hits], "red") and not hits.notes
        english = store.search("a red triangle", k=3)
        assert [n.script for n in english.notes if isinstance(n, LanguageNote)] == ["Latin"]
        image = store.search(image=hits[0].path, k=3)  # the query image itself is left out
        assert _right_colour_first([h.path for h in image], "red")
    client = TestClient(create_app(chinese_store))
    data = client.get("/api/search", params={"q": "蓝色的正方形", "k": 3}).json()
    assert _right_colour_first([h["path"] for h in data["results"]], "blue") and data["languages"] == []
    minus = client.get("/api/search", params={"q": "黄色 -红色", "k": 3}).json()
    assert "red" not in _colours([h["path"] for h in minus["results"]])
    assert client.get("/api/info").json()["model"] == SPEC


def test_index_uses_onnx_runtime_and_keeps_a_numpy_text_tower(hf_cache, chinese_store: Path) -> None:
    from clipsearch.encoders.numpy_text import NumpyTextEncoder
    from clipsearch.encoders.onnx_text_tower import OnnxTextTower

    with clipsearch.open(chinese_store, create=False) as store:
        cold = store.text_encoder()
        assert isinstance(cold, NumpyTextEncoder)
        assert isinstance(store.encoder, OnnxImageEncoder)  # ONNX Runtime for images
        assert store.info(disk=False)["model"]["languages"] == ["zh"]
        store.warm_text_queries()  # a server's text tower: the same BERT on ONNX Runtime
        assert isinstance(store.text_encoder().inner.inner, OnnxTextTower)
        texts = ["蓝色的正方形", "a red circle 红色", "猫" * 80]
        assert np.abs(store.text_encoder().encode_texts(texts) - cold.encode_texts(texts)).max() <= 1e-5
    assert json.loads((cold.folder / "config.json").read_text())["pooling"] == "cls"
    assert cold.folder.parent == store.encoder.export.folder  # the export cache's, not a copy in the store


def test_cold_chinese_query_runs_without_torch(chinese_hub: Path, chinese_store: Path) -> None:
    code = ("import json, sys, clipsearch\n"
            "with clipsearch.open(sys.argv[1], create=False) as s:\n"
            "    hits = s.search(sys.argv[2], k=3)\n"
            "print(json.dumps({'torch': 'torch' in sys.modules, 'transformers': 'transformers' in sys.modules,\n"
            "                  'paths': [h.path for h in hits]}))\n")
    out = subprocess.run([sys.executable, "-c", code, str(chinese_store), "黄色的圆形"], capture_output=True,
                         text=True, check=True, stdin=subprocess.DEVNULL, env=ch.hub_env(chinese_hub))
    data = json.loads(out.stdout)
    assert not data["torch"] and not data["transformers"]
    assert _right_colour_first(data["paths"], "yellow")


def test_eval_and_classify_with_chinese_classes(runner, hf_cache, tmp_path: Path, shapes_source: Path) -> None:
    data = ch.chinese_class_folders(tmp_path / "classes", shapes_source)
    metrics = cli_json(runner, "eval", data, "--model", SPEC)
    assert metrics["images"] == 60 and not metrics["untrained"]
    assert metrics["top1"] >= 0.25 and metrics["top5"] >= 0.7  # chance: 1/12 and 5/12; colours are learnt
    image = sorted(shapes_source.glob("blue_square_*.png"))[0]
    labels = "，".join(ch.caption_zh(c, s) for c in ch.COLORS_ZH for s in ch.SHAPES_ZH)  # a Chinese comma
    top = cli_json(runner, "classify", image, "--labels", labels, "--model", SPEC, "-k", "1")
    assert top[0]["labels"][0]["label"].startswith("蓝色")


def test_dupes_with_chinese_clip(runner, hf_cache, tmp_path: Path, shapes_source: Path) -> None:
    photos = ch.red_photos_with_a_copy(tmp_path / "photos", shapes_source)
    store = tmp_path / "index"
    cli(runner, "index", photos, "--index", store, "--model", SPEC)
    near = cli_json(runner, "dupes", "--index", store)  # by the model's vectors (default threshold 0.99)
    pairs = [{Path(im["path"]).name for im in g["images"]} for g in near]
    assert any({"copy.png", "red_circle_000.png"} <= names for names in pairs), pairs
