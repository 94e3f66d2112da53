"""Published ONNX exports as models, torch-free: the tests' trained tiny CLIP exported exactly as immich and rclip
publish theirs (tests/published_models.py), laid out in a Hugging Face hub cache, offline (HF_HUB_OFFLINE=1).
Through the CLI in a subprocess where torch, open_clip and transformers cannot be imported, `immich:NAME`,
`rclip:ViT-B-32-256` and a folder in immich's layout index, answer text and image queries (the same ranking and
scores as the torch model), find duplicates and serve; the store is pinned to the repository's revision, so a newer
revision or another model is refused; a model missing from the cache offline is one line saying what to do."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests import published_models as pm
from tests.conftest import cli_json
from tests.e2e.test_torch_free import CLI, SERVE, blocked

NAME = "clipsearch-tiny__shapes"
REV = "a" * 40
QUERIES = (["a red circle"], ["a green triangle", "-k", "3"], ["--image", "{example}"])


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory, trained_model: Path) -> Path:
    """A hub cache holding the trained model as immich's `immich-app/NAME` and as rclip's repository."""
    from clipsearch.encoders.torch_encoder import load_encoder

    cache = tmp_path_factory.mktemp("published") / "hub"
    encoder = load_encoder(str(trained_model), "cpu")
    pm.write_immich(cache, encoder, NAME, REV)
    pm.write_rclip(cache, encoder, "b" * 40)
    return cache


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory, shapes_source: Path, trained_model: Path) -> Path:
    """The same model indexed on the torch backend (fp32): what the published exports must answer alike."""
    from typer.testing import CliRunner

    from tests.conftest import cli

    store = tmp_path_factory.mktemp("published-ref") / "store"
    cli(CliRunner(), "index", shapes_source, "--index", store, "--model", trained_model, "--backend", "torch")
    return store


@pytest.fixture()
def offline_hub(hub: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """This test and its subprocesses see `hub`, offline."""
    from huggingface_hub import constants

    for key, value in pm.hub_env(hub).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hub))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return hub


def run_json(tmp_path: Path, *args: str | Path) -> object:
    run = blocked(tmp_path, CLI, *args, "--json")
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


def ranking(hits) -> list[tuple[str, float]]:
    return [(h["path"], h["score"]) for h in hits]


def assert_same_answers(tmp_path: Path, store: Path, reference: Path, shapes_source: Path, runner) -> None:
    example = sorted(shapes_source.glob("blue_square_*.png"))[0]
    for query in QUERIES:
        args = [a.format(example=example) for a in query]
        got = run_json(tmp_path, "query", *args, "--index", store, "-k", "5")
        want = cli_json(runner, "query", *args, "--index", reference, "-k", "5")
        assert [p for p, _s in ranking(got)] == [p for p, _s in ranking(want)], args
        np.testing.assert_allclose([s for _p, s in ranking(got)], [s for _p, s in ranking(want)], atol=2e-3)


@pytest.mark.parametrize("spec", [f"immich:{NAME}", "rclip:ViT-B-32-256"])
def test_published_export_indexes_and_answers_like_torch_without_torch(
        spec: str, offline_hub: Path, reference: Path, shapes_source: Path, tmp_path: Path, runner) -> None:
    store = tmp_path / "store"
    run = run_json(tmp_path, "index", shapes_source, "--index", store, "--model", spec, "--fp32")
    assert run["added"] == run["encoded"] == 60 and run["failed"] == 0 and run["backend"] == "onnx"
    assert_same_answers(tmp_path, store, reference, shapes_source, runner)
    info = run_json(tmp_path, "info", "--index", store)
    assert info["images"] == 60
    revision = REV if spec.startswith("immich") else "b" * 40
    manifest = json.loads((store / "manifest.json").read_text())
    assert manifest["model"]["spec"] == manifest["model"]["key"] == f"{spec}@{revision}"
    assert run_json(tmp_path, "dupes", "--index", store) == cli_json(runner, "dupes", "--index", reference)


def test_int8_serve_and_a_folder_in_immichs_layout(offline_hub: Path, reference: Path, shapes_source: Path,
                                                   tmp_path: Path, runner) -> None:
    store = tmp_path / "int8"
    run = run_json(tmp_path, "index", shapes_source, "--index", store, "--model", f"immich:{NAME}", "--int8")
    assert run["encoded"] == 60
    assert json.loads((store / "manifest.json").read_text())["model"]["precision"] == "int8"
    top = run_json(tmp_path, "query", "a red circle", "--index", store, "-k", "5")
    want = cli_json(runner, "query", "a red circle", "--index", reference, "-k", "5")
    assert top[0]["path"] == want[0]["path"]  # int8 ranks alike, not identically

    example = sorted(shapes_source.glob("blue_square_*.png"))[0]
    served = blocked(tmp_path, SERVE, store, example)
    assert served.returncode == 0, served.stderr
    pages = json.loads(served.stdout)
    assert pages["page"] == 200
    assert [h["path"] for h in pages["search"]["results"]] == [h["path"] for h in top]

    snapshot = offline_hub / f"models--immich-app--{NAME}" / "snapshots" / REV
    folder_store = tmp_path / "folder"
    run = run_json(tmp_path, "index", shapes_source, "--index", folder_store, "--model", snapshot, "--fp32")
    assert run["encoded"] == 60
    assert json.loads((folder_store / "manifest.json").read_text())["model"]["key"].startswith("immich-folder:")
    assert_same_answers(tmp_path, folder_store, reference, shapes_source, runner)


def test_a_store_is_pinned_to_its_revision_and_model(offline_hub: Path, shapes_source: Path, tmp_path: Path,
                                                     trained_model: Path) -> None:
    store = tmp_path / "store"
    one = sorted(shapes_source.glob("red_*.png"))[:2]
    photos = tmp_path / "photos"
    photos.mkdir()
    for p in one:
        (photos / p.name).write_bytes(p.read_bytes())
    run_json(tmp_path, "index", photos, "--index", store, "--model", f"immich:{NAME}", "--fp32")
    other = blocked(tmp_path, CLI, "index", photos, "--index", store, "--model", "rclip:ViT-B-32-256")
    assert other.returncode == 1 and "was built with model immich:" in other.stderr, other.stderr

    # the repository moves on (a new revision in the cache): the store keeps answering with its own
    from clipsearch.encoders.torch_encoder import load_encoder

    pm.write_immich(offline_hub, load_encoder(str(trained_model), "cpu"), NAME, "c" * 40)
    try:
        newer = blocked(tmp_path, CLI, "index", photos, "--index", store, "--model", f"immich:{NAME}")
        assert newer.returncode == 1 and f"not immich:{NAME}@{'c' * 40}" in newer.stderr, newer.stderr
        assert len(run_json(tmp_path, "query", "a red circle", "--index", store, "-k", "2")) == 2
        assert run_json(tmp_path, "index", photos, "--index", store)["failed"] == 0  # its own revision, cached
    finally:
        (offline_hub / f"models--immich-app--{NAME}" / "refs" / "main").write_text(REV)


def test_a_model_missing_offline_is_one_line_with_what_to_do(tmp_path: Path, shapes_source: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in pm.hub_env(tmp_path / "empty-hub").items():
        monkeypatch.setenv(key, value)
    run = blocked(tmp_path, CLI, "index", shapes_source, "--index", tmp_path / "s", "--model",
                  "immich:ViT-B-32__openai")
    assert run.returncode == 1 and "Traceback" not in run.stderr, run.stderr
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert lines[0].startswith("error: model immich:ViT-B-32__openai is not in the Hugging Face cache"), run.stderr
    assert "HF_HUB_OFFLINE" in run.stderr and "download it once" in run.stderr
    assert not (tmp_path / "s" / "manifest.json").exists()


def test_models_lists_published_exports_without_torch(offline_hub: Path, tmp_path: Path) -> None:
    rows = {r["spec"]: r for r in run_json(tmp_path, "models")}
    assert rows["immich:ViT-B-32__openai"]["languages"] == ["en"]
    assert rows["immich:XLM-Roberta-Large-Vit-B-32"]["languages"] == ["multilingual"]
    assert rows["immich:nllb-clip-base-siglip__v1"]["languages"] == ["multilingual"]
    assert rows["rclip:ViT-B-32-256"]["cached"] is True and rows["immich:ViT-B-32__openai"]["cached"] is False
