"""Which scripts a query is in, which languages a model reads, and when a query gets a language note."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clipsearch.encoders.languages import (
    CHINESE_MODEL,
    MULTILINGUAL_MODEL,
    LanguageNote,
    language_notes,
    model_languages,
    scripts_of,
)
from clipsearch.encoders.spec import FOLDER_MANIFEST, parse_spec


@pytest.mark.parametrize("text, scripts", [
    ("a red circle", {"Latin"}),
    ("红色的圆形", {"Han"}),
    ("iPhone 手机", {"Latin", "Han"}),
    ("café crème", {"Latin"}),
    ("Москва", {"Cyrillic"}),
    ("ねこ カメラ", {"Hiragana", "Katakana"}),
    ("고양이", {"Hangul"}),
    ("2024 — 123!", set()),
    ("ＡＢＣ", {"Latin"}),
])
def test_scripts_of(text: str, scripts: set[str]) -> None:
    assert scripts_of(text) == scripts


@pytest.mark.parametrize("spec, languages", [
    ("ViT-B-32:laion2b_s34b_b79k", ("en",)),
    ("clipsearch-tiny", ("en",)),
    ("offline-mini", ("en",)),
    ("xlm-roberta-base-ViT-B-32:laion5b_s13b_b90k", ("multilingual",)),
    ("xlm-roberta-large-ViT-H-14:frozen_laion5b_s13b_b90k", ("multilingual",)),
    ("nllb-clip-base-siglip:v1", ("multilingual",)),
])
def test_model_languages_by_name(spec: str, languages: tuple[str, ...]) -> None:
    assert model_languages(parse_spec(spec)) == languages


def _folder(tmp_path: Path, **meta: object) -> Path:
    tmp_path.mkdir()
    (tmp_path / FOLDER_MANIFEST).write_text(json.dumps({"arch": "clipsearch-tiny", "weights_sha256": "0" * 64,
                                                         **meta}))
    return tmp_path


def test_a_model_folder_reads_what_it_records_else_what_its_base_reads(tmp_path: Path) -> None:
    assert model_languages(parse_spec(str(_folder(tmp_path / "a", base="clipsearch-tiny")))) == ("en",)
    assert model_languages(parse_spec(str(_folder(tmp_path / "b", base="nllb-clip-base:v1")))) == ("multilingual",)
    assert model_languages(parse_spec(str(_folder(tmp_path / "c", base="x", languages=["zh"])))) == ("zh",)


def test_chinese_to_an_english_model_is_noted_with_a_model_that_reads_it() -> None:
    notes = language_notes(["红色的圆形"], parse_spec("ViT-B-32:laion2b_s34b_b79k"))
    assert len(notes) == 1 and isinstance(notes[0], LanguageNote)
    note = notes[0]
    assert note.script == "Han" and note.switch_to == CHINESE_MODEL and note.model == "ViT-B-32:laion2b_s34b_b79k"
    assert "Chinese" in note and "noise" in note and CHINESE_MODEL in note and "\n" not in note
    assert note.to_dict()["switch_to"] == CHINESE_MODEL


def test_other_scripts_name_the_multilingual_model_once_each() -> None:
    notes = language_notes(["Москва", "красный круг", "a red circle"], parse_spec("clipsearch-tiny"))
    assert [(n.script, n.switch_to) for n in notes] == [("Cyrillic", MULTILINGUAL_MODEL)]


def test_mixed_chinese_on_an_english_model_is_still_noted() -> None:
    assert [n.script for n in language_notes(["a 红色 circle"], parse_spec("clipsearch-tiny"))] == ["Han"]


def test_no_note_where_the_model_reads_the_query() -> None:
    assert language_notes(["a red circle", "2024", ""], parse_spec("ViT-B-32:laion2b_s34b_b79k")) == []
    assert language_notes(["红色的圆形", "Москва"], parse_spec("xlm-roberta-base-ViT-B-32:laion5b_s13b_b90k")) == []


@pytest.mark.parametrize("text", ["chinese-clip:ViT-B-16", "OFA-Sys/chinese-clip-vit-base-patch16",
                                  "ofa-sys/Chinese-CLIP-ViT-Base-Patch16"])
def test_chinese_clip_specs(text: str) -> None:
    spec = parse_spec(text)
    assert (spec.text, spec.kind, spec.pretrained) == ("chinese-clip:ViT-B-16", "chinese_clip",
                                                       "OFA-Sys/chinese-clip-vit-base-patch16")
    assert spec.key == "chinese-clip:OFA-Sys/chinese-clip-vit-base-patch16"
    assert model_languages(spec) == ("zh",)
    assert parse_spec("chinese-clip:ViT-L-14-336").pretrained == "OFA-Sys/chinese-clip-vit-large-patch14-336px"


def test_chinese_clip_bad_specs() -> None:
    from clipsearch.errors import ModelUnavailableError

    with pytest.raises(ModelUnavailableError, match="cn_clip checkpoint"):
        parse_spec("chinese-clip:RN50")
    with pytest.raises(ModelUnavailableError, match="unknown Chinese-CLIP architecture"):
        parse_spec("chinese-clip:ViT-X-99")


def test_english_to_chinese_clip_names_a_model_that_reads_it_but_brand_names_pass() -> None:
    spec = parse_spec("chinese-clip:ViT-B-16")
    assert [(n.script, n.switch_to) for n in language_notes(["a red circle"], spec)] == [("Latin", MULTILINGUAL_MODEL)]
    assert language_notes(["iPhone 手机"], spec) == []
