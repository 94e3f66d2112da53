"""A query in a script the store's model was not trained on (Chinese to the English tiny model) answers with a
one-line note naming a model that reads it, on every face: the library, the CLI (table and --json), the HTTP API;
`models` lists each model's languages; `reindex --model` is the switch the note names."""

from __future__ import annotations

import json
from pathlib import Path

from fastapi.testclient import TestClient

import clipsearch
from clipsearch.encoders.languages import CHINESE_MODEL, LanguageNote
from clipsearch.server import create_app
from tests.conftest import cli, cli_json

CHINESE = "红色的圆形"


def test_library_notes_a_chinese_query_on_an_english_model(indexed: Path) -> None:
    with clipsearch.open(indexed, create=False) as store:
        hits = store.search(CHINESE, k=3)
        assert len(hits) == 3  # still answered: the note says what the ranking is worth
        notes = [n for n in hits.notes if isinstance(n, LanguageNote)]
        assert len(notes) == 1 and notes[0].script == "Han" and notes[0].switch_to == CHINESE_MODEL
        assert not store.search("a red circle", k=3).notes
        assert [n.script for n in store.search("a red circle", minus=["Москва"], k=3).notes] == ["Cyrillic"]


def test_cli_table_and_json_carry_the_note_with_the_switch(runner, indexed: Path) -> None:
    table = cli(runner, "query", CHINESE, "--index", indexed)
    assert f"clipsearch reindex --model {CHINESE_MODEL}" in table.stderr and "noise" in table.stderr
    assert table.stderr.count("note:") == 1
    as_json = cli(runner, "query", CHINESE, "--index", indexed, "--json")
    assert len(json.loads(as_json.stdout)) == 10  # stdout stays the hits' JSON
    assert f"clipsearch reindex --model {CHINESE_MODEL}" in as_json.stderr
    english = cli(runner, "query", "a red circle", "--index", indexed, "--json")
    assert "note:" not in english.stderr


def test_http_api_carries_the_note(indexed: Path) -> None:
    client = TestClient(create_app(indexed))
    data = client.get("/api/search", params={"q": CHINESE, "k": 3}).json()
    assert len(data["results"]) == 3
    assert [lang["switch_to"] for lang in data["languages"]] == [CHINESE_MODEL]
    assert data["languages"][0]["script"] == "Han" and data["languages"][0]["note"] in data["notes"]
    english = client.get("/api/search", params={"q": "a red circle", "k": 3}).json()
    assert english["languages"] == [] and english["notes"] == []


def test_models_lists_languages(runner) -> None:
    rows = {r["spec"]: r["languages"] for r in cli_json(runner, "models")}
    assert rows["ViT-B-32:laion2b_s34b_b79k"] == ["en"]
    assert rows["xlm-roberta-base-ViT-B-32:laion5b_s13b_b90k"] == ["multilingual"]
    assert rows["offline-mini"] == ["en"]
    assert rows["chinese-clip:ViT-B-16"] == ["zh"] and rows["chinese-clip:ViT-H-14"] == ["zh"]


def test_reindex_with_another_model_switches_the_store(runner, tmp_path: Path, photos: Path,
                                                        trained_model: Path) -> None:
    store = tmp_path / "index"
    cli(runner, "index", photos, "--index", store, "--model", trained_model)
    result = cli_json(runner, "reindex", "--index", store, "--model", "clipsearch-tiny")
    assert result["encoded"] == 60
    assert cli_json(runner, "info", "--index", store)["model"]["spec"] == "clipsearch-tiny"
    refused = cli(runner, "reindex", "--index", store, "--model", "clipsearch-tiny", "--vectors-only", ok=False)
    assert refused.exit_code == 1 and "--vectors-only" in refused.stderr
