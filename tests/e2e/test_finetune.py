"""Fine-tuning, WiSE-FT, evaluation, classification and re-embedding a store with the adapted model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from clipsearch.encoders.torch_encoder import load_encoder
from clipsearch.media import synthetic
from clipsearch.tune import datasets
from clipsearch.tune.evaluate import evaluate, retrieval_recall, zero_shot_accuracy
from clipsearch.tune.runs import blend_states
from tests.conftest import cli, cli_json, label_of

CHANCE = 1 / len(synthetic.classes())  # 12 classes: 0.083


def test_finetune_raises_heldout_accuracy(finetuned) -> None:
    folder, report = finetuned
    print("base", report.base, "fine-tuned", report.finetuned, f"{report.images_per_second:.0f} img/s")
    assert report.val_images == 72 and report.train_images == 288  # stratified 20% of 30 per class
    assert report.base["top1"] < 2 * CHANCE  # the random-init start knows nothing
    assert report.finetuned["top1"] >= 5 * CHANCE  # 0.42: a clear margin over chance and over the start
    assert report.finetuned["top1"] - report.base["top1"] >= 0.3
    saved = json.loads((folder / "metrics.json").read_text())
    assert saved["finetuned"]["top1"] == report.finetuned["top1"]


def test_saved_folder_reloads_to_the_reported_model(finetuned) -> None:
    folder, report = finetuned
    data = datasets.load(folder.parent / "train")
    _train, val = datasets.split(data, 0.2, 0)
    enc = load_encoder(str(folder), device="cpu")
    again = load_encoder(str(folder), device="cpu")
    texts = ["a red circle", "a blue square"]
    assert np.array_equal(enc.encode_texts(texts), again.encode_texts(texts))
    assert evaluate(enc, val, ["a {}"])["top1"] == pytest.approx(report.finetuned["top1"])


def test_wise_ft_endpoints(finetuned) -> None:
    folder, _report = finetuned
    base = load_encoder("clipsearch-tiny", device="cpu")  # seeded random init: the fine-tune's start
    tuned = load_encoder(str(folder), device="cpu")
    mixed = load_encoder("clipsearch-tiny", device="cpu")
    b, t = base.model.state_dict(), tuned.model.state_dict()
    texts = ["a green triangle", "a yellow circle"]
    for alpha, expected in ((0.0, base), (1.0, tuned)):
        mixed.model.load_state_dict(blend_states(b, t, alpha))
        assert np.allclose(mixed.encode_texts(texts), expected.encode_texts(texts), atol=1e-6)
    mixed.model.load_state_dict(blend_states(b, t, 0.5))
    half = mixed.encode_texts(texts)
    assert not np.allclose(half, base.encode_texts(texts), atol=1e-3)
    assert not np.allclose(half, tuned.encode_texts(texts), atol=1e-3)


def test_metric_functions_match_hand_computation() -> None:
    img = np.array([[1, 0], [0, 1], [0.6, 0.8]], dtype=np.float32)
    cls = np.array([[1, 0], [0, 1]], dtype=np.float32)
    # image 2 is closer to class 1 (0.8 > 0.6): predictions [0, 1, 1] against truth [0, 1, 0]
    assert zero_shot_accuracy(img, np.array([0, 1, 0]), cls) == {"top1": pytest.approx(2 / 3), "top5": 1.0}
    txt = np.array([[1, 0], [0.6, 0.8], [0, 1]], dtype=np.float32)
    r = retrieval_recall(img, txt, ks=(1, 2))
    # pair i is (img i, txt i). image→text: img0: txt0 1.0 is best (rank 0); img1: txt2 1.0 beats txt1 0.8
    # (rank 1); img2: txt1 1.0 beats txt2 0.8 (rank 1)
    assert r["image_to_text_r1"] == pytest.approx(1 / 3) and r["image_to_text_r2"] == 1.0
    # text→image: txt0→img0 rank 0; txt1→img1: img2 scores 1.0 > 0.8, rank 1; txt2→img2: img1 scores 1.0 > 0.8, rank 1
    assert r["text_to_image_r1"] == pytest.approx(1 / 3) and r["text_to_image_r2"] == 1.0


def test_eval_and_linear_probe_cli(runner, finetuned, tmp_path: Path) -> None:
    folder, _ = finetuned
    synthetic.make_dataset(tmp_path / "test", per_class=6, seed=11, class_folders=True)
    result = cli_json(runner, "eval", tmp_path / "test", "--model", folder, "--linear-probe")
    assert result["images"] == 36 and result["chance_top1"] == pytest.approx(CHANCE)
    assert result["top1"] >= 4 * CHANCE and result["top5"] >= result["top1"]
    assert result["linear_probe"] >= 4 * CHANCE
    assert "top1" in cli(runner, "eval", tmp_path / "test", "--model", folder).stdout


def test_classify_puts_the_right_label_first(runner, finetuned, shapes_source: Path) -> None:
    folder, _ = finetuned
    images = [shapes_source / "red_triangle_000.png", shapes_source / "green_triangle_001.png",
              shapes_source / "yellow_square_002.png"]
    labels = ",".join(f"{c} {s}" for c, s in synthetic.classes())
    results = cli_json(runner, "classify", *images, "--labels", labels, "--model", folder, "-k", "3")
    for image, r in zip(images, results, strict=False):
        assert r["labels"][0]["label"] == label_of(str(image))
        probs = [lab["probability"] for lab in r["labels"]]
        assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1.0001


def test_reembed_switches_the_store_to_the_new_model(runner, finetuned, photos: Path, tmp_path: Path) -> None:
    folder, _ = finetuned
    idx = tmp_path / "index"
    cli(runner, "index", photos, "--index", idx, "--model", "clipsearch-tiny")  # random-init start
    before = cli_json(runner, "info", "--index", idx)
    assert before["model"]["key"] == "clipsearch-tiny:random"
    result = cli_json(runner, "index", photos, "--index", idx, "--model", folder, "--reembed")
    assert result["unchanged"] == 60  # the re-embed encoded everything; the follow-up run has nothing to do
    assert result["reembedded"] == 60  # ... and the summary says so
    after = cli_json(runner, "info", "--index", idx)
    assert after["model"]["key"].startswith("folder:") and after["images"] == after["vectors"] == 60
    assert after["roots"] == [str(photos)]
    hits = cli_json(runner, "query", "a green triangle", "-k", "5", "--index", idx)
    assert sum(label_of(h["path"]) == "green triangle" for h in hits) >= 3  # the adapted model answers
    assert not list(tmp_path.glob(".index.*"))  # no temporary store left behind


def test_finetune_cli_captions_and_reindex(runner, finetuned, tmp_path: Path, photos: Path) -> None:
    """End to end from the CLI: a JSONL captions set with one broken image, --reindex of a store."""
    folder, _ = finetuned
    samples = synthetic.make_dataset(tmp_path / "imgs", per_class=4, seed=5)
    (tmp_path / "imgs" / "broken.png").write_text("not a png")
    lines = [json.dumps({"image": f"imgs/{s.path.name}", "caption": s.caption}) for s in samples]
    lines.append(json.dumps({"image": "imgs/broken.png", "caption": "a broken file"}))
    (tmp_path / "captions.jsonl").write_text("\n".join(lines) + "\n")
    idx = tmp_path / "index"
    cli(runner, "index", photos, "--index", idx, "--model", folder)
    out = tmp_path / "model-v2"
    report = cli_json(runner, "finetune", tmp_path / "captions.jsonl", "--out", out, "--model", folder,
                      "--epochs", "1", "--batch-size", "8", "--lr", "1e-4", "--alpha", "0.5", "--reindex", idx)
    assert len(report["skipped"]) == 1 and report["skipped"][0]["path"].endswith("broken.png")
    assert {"text_to_image_r1", "image_to_text_r5"} <= set(report["base"]) and report["blended"]
    assert report["reindex"]["encoded"] == 60
    info = cli_json(runner, "info", "--index", idx)
    assert info["model"]["spec"] == str(out.resolve())
    meta = json.loads((out / "clipsearch-model.json").read_text())
    assert meta["alpha"] == report["alpha"] in (0.0, 0.5)  # the given blend, or the base when it scored lower
    assert report["shipped"] == ("base" if report["alpha"] == 0.0 else "blended")
    assert report["validation"]["blended"]["text_to_image_r5"] >= report["validation"]["base"]["text_to_image_r5"]


@pytest.mark.parametrize("case, message", [
    ("one_class", "fine-tuning needs at least two"),
    ("empty_class", "has no images"),
    ("missing_image", "image file not found"),
    ("bad_columns", "needs an image column"),
])
def test_bad_labelled_sets_are_clear_errors(runner, tmp_path: Path, case: str, message: str) -> None:
    data = tmp_path / "data"
    synthetic.make_dataset(data, per_class=2, seed=3, class_folders=True)
    if case == "one_class":
        for p in list(data.iterdir())[1:]:
            shutil.rmtree(p)
    elif case == "empty_class":
        (data / "purple_star").mkdir()
    elif case == "missing_image":
        (tmp_path / "set.csv").write_text("image,label\nnope.jpg,cat\n")
        data = tmp_path / "set.csv"
    elif case == "bad_columns":
        (tmp_path / "set.csv").write_text("picture,words\na.jpg,cat\n")
        data = tmp_path / "set.csv"
    result = cli(runner, "finetune", data, "--out", tmp_path / "m", "--model", "clipsearch-tiny", ok=False)
    assert result.exit_code == 1 and message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_incompatible_model_folder_is_a_clear_error(runner, finetuned, tmp_path: Path, photos: Path) -> None:
    folder, _ = finetuned
    cli(runner, "index", photos, "--index", tmp_path / "ok", "--model", folder)  # the intact folder's export exists
    broken = tmp_path / "broken-model"
    shutil.copytree(folder, broken)
    meta = json.loads((broken / "clipsearch-model.json").read_text())
    meta["model_cfg"]["embed_dim"] = 32  # config no longer matches the weights
    (broken / "clipsearch-model.json").write_text(json.dumps(meta))
    result = cli(runner, "index", photos, "--index", tmp_path / "i", "--model", broken, ok=False)
    assert result.exit_code == 1 and "cannot be loaded" in result.stderr
    assert "Traceback" not in result.stderr
