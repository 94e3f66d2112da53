"""NLLB-CLIP is told each query's language (a FLORES-200 code before the text): detected from the text's script,
or set with `--lang` / `language=` / `lang` (GET and the upload POST) / the page's query-language field. From a
Hugging Face cache laid out as the hub writes it (tests/multilingual_hub.py: NLLB's tokenizer with its 202 codes).
The weights are seeded random, so nothing here is about relevance: the tests check which code each query was
read with, through the scores it gets (the same code, the same scores; another code, other scores)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

import clipsearch
from clipsearch.server import create_app
from tests import multilingual_hub as mh
from tests.conftest import cli, cli_json


@pytest.fixture(scope="module")
def nllb_store(tmp_path_factory: pytest.TempPathFactory, multilingual_hub: Path, shapes_source: Path) -> Path:
    return mh.index_with(tmp_path_factory.mktemp("nllb-store") / "index", shapes_source, mh.NLLB, multilingual_hub)


SHIFT_DROP = """async (bytes) => {
  const data = new DataTransfer();
  data.items.add(new File([new Uint8Array(bytes)], "query.png", { type: "image/png" }));
  document.dispatchEvent(new DragEvent("drop", { dataTransfer: data, shiftKey: true, bubbles: true,
                                                 cancelable: true }));
}"""


def _scores(hits: list) -> list[float]:
    return [round(float(h["score"] if isinstance(h, dict) else h.score), 6) for h in hits]


def test_the_tokenizer_gets_each_texts_language_code(ml_cache) -> None:
    """The code token starts each text: detected per text in one batch, or the one given. (open_clip's own
    set_language is undone by transformers' tokenizer on every call; clipsearch sets src_lang.)"""
    from clipsearch.encoders.torch_encoder import load_encoder

    enc = load_encoder(mh.NLLB, "cpu")
    hf = enc.tokenizer.tokenizer
    code = {c: hf.convert_tokens_to_ids(c) for c in ("eng_Latn", "zho_Hans", "jpn_Jpan", "rus_Cyrl", "fra_Latn")}
    tokens = enc.tokenize(["a red circle", "红色的圆形", "赤い丸", "красный круг", "iPhone 手机"])
    assert tokens[:, 0].tolist() == [code["eng_Latn"], code["zho_Hans"], code["jpn_Jpan"], code["rus_Cyrl"],
                                     code["zho_Hans"]]
    assert enc.tokenize(["le cercle rouge"], language="fra_Latn")[0, 0] == code["fra_Latn"]
    together = enc.encode_texts(["a red circle", "红色的圆形"])
    alone = np.concatenate([enc.encode_texts(["a red circle"]), enc.encode_texts(["红色的圆形"])])
    assert np.allclose(together, alone, atol=1e-6)
    assert not np.allclose(enc.encode_texts(["红色的圆形"], language="eng_Latn"), alone[1:], atol=1e-4)


def test_cli_detects_the_code_and_lang_sets_it(runner, ml_cache, nllb_store: Path) -> None:
    def scores(*extra: str) -> list[float]:
        return _scores(cli_json(runner, "query", "红色的圆形", "--index", nllb_store, "-k", "5", *extra))

    detected = scores()
    assert detected == scores("--lang", "zho_Hans") and detected != scores("--lang", "eng_Latn")
    bad = cli(runner, "query", "红色的圆形", "--index", nllb_store, "--lang", "chinese", ok=False)
    assert bad.exit_code != 0 and "FLORES-200" in bad.stderr and "--lang" in bad.stderr


def test_library_detects_the_code_and_language_sets_it(ml_cache, nllb_store: Path) -> None:
    with clipsearch.open(nllb_store, create=False) as store:
        assert store.info(disk=False)["model"]["languages"] == ["multilingual"]
        latin = _scores(store.search("le cercle rouge", k=5))
        assert latin == _scores(store.search("le cercle rouge", k=5, language="eng_Latn"))  # Latin: English
        assert latin != _scores(store.search("le cercle rouge", k=5, language="fra_Latn"))
        assert not store.search("红色的圆形", k=3).notes


@pytest.fixture()
def client(ml_cache, nllb_store: Path) -> Iterator[TestClient]:
    with TestClient(create_app(nllb_store)) as c:
        yield c


def test_http_get_and_upload_take_lang(client: TestClient, shapes_source: Path) -> None:
    assert client.get("/api/info").json()["language_code"] is True

    def get(**params: str) -> list[float]:
        return _scores(client.get("/api/search", params={"q": "红色的圆形", "k": 5, **params}).json()["results"])

    assert get() == get(lang="zho_Hans") != get(lang="eng_Latn")
    picture = sorted(shapes_source.glob("red_circle_*.png"))[0].read_bytes()

    def upload(**form: str) -> list[float]:
        r = client.post("/api/search", files={"image": ("q.png", picture, "image/png")},
                        data={"q": "红色的圆形", "k": "5", **form})
        assert r.status_code == 200, r.text
        return _scores(r.json()["results"])

    assert upload() == upload(lang="zho_Hans") != upload(lang="eng_Latn")
    bad = client.post("/api/search", files={"image": ("q.png", picture, "image/png")},
                      data={"q": "红色的圆形", "lang": "zh"})
    assert bad.status_code == 400 and "FLORES-200" in bad.json()["error"]


def test_page_offers_the_query_language_on_an_nllb_store(ml_cache, nllb_store: Path, shapes_source: Path,
                                                         tmp_path: Path) -> None:
    """The page shows its query-language field where the model is told the code, and sends it as `lang` on a
    text search and on an image upload with text (an image dropped with shift joins the typed query)."""
    from tests.e2e.live import chromium, serving

    picture = sorted(shapes_source.glob("red_circle_*.png"))[0]
    with serving(nllb_store) as url, chromium(tmp_path / "profile", locale="en-US") as browser:
        page = browser.new_page()
        page.goto(url + "?q=" + "红色的圆形")
        page.wait_for_selector("#grid .hit")
        field = page.locator("#qlang")
        assert field.is_visible()
        with page.expect_request(lambda r: "api/search" in r.url and "lang=fra_Latn" in r.url):
            field.fill("fra_Latn")
            field.dispatch_event("change")
        assert "qlang=fra_Latn" in page.url
        with page.expect_response(lambda r: r.request.method == "POST" and "api/search" in r.url) as posted:
            page.evaluate(SHIFT_DROP, list(picture.read_bytes()))  # shift: the image joins the text query
        got = _scores(posted.value.json()["results"])
        page.close()
    client = TestClient(create_app(nllb_store))

    def upload(**form: str) -> list[float]:  # the page's upload, by hand: its scores tell which code was sent
        return _scores(client.post("/api/search", files={"image": ("q.png", picture.read_bytes(), "image/png")},
                                   data={"q": "红色的圆形", "k": "20", **form}).json()["results"])

    assert got == upload(lang="fra_Latn") != upload()


def test_finetune_reads_each_caption_with_its_code(runner, ml_cache, tmp_path: Path, shapes_source: Path) -> None:
    """NLLB-CLIP trains on captions in two languages, each read with its language's code (as queries are)."""

    table = mh.bilingual_captions(tmp_path / "captions.csv", shapes_source)
    out = tmp_path / "model"
    cli_json(runner, "finetune", table, "--model", mh.NLLB, "--out", out, "--epochs", "1", "--folds", "1")
    store = tmp_path / "index"
    cli(runner, "index", shapes_source, "--index", store, "--model", out)
    with clipsearch.open(store, create=False) as s:
        detected = _scores(s.search("红色的圆形", k=5))
        assert detected == _scores(s.search("红色的圆形", k=5, language="zho_Hans"))
        assert detected != _scores(s.search("红色的圆形", k=5, language="eng_Latn"))
    assert json.loads((out / "clipsearch-model.json").read_text())["languages"] == ["multilingual"]
