"""`eval` and `classify` run the fast path — ONNX Runtime's image tower and the NumPy text tower from the export
cache — and agree with torch (`--backend torch`): the same labels in the same order for every image, the same
zero-shot and linear-probe accuracy, probabilities within 1e-3, on the tests' trained model and on offline-mini.
That neither imports torch once the model is exported is tests/e2e/test_torch_free.py's."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clipsearch.media import synthetic
from clipsearch.tune import datasets
from clipsearch.tune.evaluate import classify, evaluate_set, load_scorer
from tests.conftest import cli_json

LABELS = [f"{c} {s}" for c, s in synthetic.classes()]


@pytest.fixture(params=["trained", "offline-mini"])
def model(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue("trained_model")) if request.param == "trained" else "offline-mini"


@pytest.fixture(scope="module")
def labelled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("labelled") / "set"
    synthetic.make_dataset(folder, per_class=4, seed=11, class_folders=True)
    return folder


def test_fast_path_classifies_and_scores_like_torch(model: str, shapes_source: Path, labelled: Path) -> None:
    fast, slow = load_scorer(model), load_scorer(model, backend="torch")
    assert (fast.backend, slow.backend) == ("onnx", "torch")  # type: ignore[attr-defined]
    assert fast.logit_scale == pytest.approx(slow.logit_scale, rel=1e-6)

    images = [str(p) for p in sorted(shapes_source.glob("*.png"))[::5]]
    by_fast, by_torch = classify(fast, images, LABELS, k=len(LABELS)), classify(slow, images, LABELS, k=len(LABELS))
    for a, b in zip(by_fast, by_torch, strict=True):
        assert [x["label"] for x in a["labels"]][:3] == [x["label"] for x in b["labels"]][:3], a["path"]
        probs = {x["label"]: x["probability"] for x in b["labels"]}
        assert all(abs(x["probability"] - probs[x["label"]]) < 1e-3 for x in a["labels"])

    data = datasets.load(labelled)
    fast_metrics = evaluate_set(fast, data, linear_probe=True)
    torch_metrics = evaluate_set(slow, data, linear_probe=True)
    assert {k: fast_metrics[k] for k in ("top1", "top5", "linear_probe", "images")} == \
        {k: torch_metrics[k] for k in ("top1", "top5", "linear_probe", "images")}


def test_the_cli_uses_the_fast_path_by_default(runner, trained_model: Path, shapes_source: Path,
                                               labelled: Path) -> None:
    image = shapes_source / "red_triangle_000.png"
    args = ["classify", image, "--labels", ",".join(LABELS), "--model", trained_model, "-k", "3"]
    fast, slow = cli_json(runner, *args), cli_json(runner, *args, "--backend", "torch")
    assert fast[0]["labels"][0]["label"] == slow[0]["labels"][0]["label"] == "red triangle"
    assert cli_json(runner, "eval", labelled, "--model", trained_model)["top1"] == \
        cli_json(runner, "eval", labelled, "--model", trained_model, "--backend", "torch")["top1"]


def test_an_export_from_before_learns_its_logit_scale_once(trained_model: Path) -> None:
    """Exports made before meta.json kept the logit scale get it from the torch model on first use, recorded."""
    fast = load_scorer(str(trained_model))
    meta_file = fast.export.folder / "meta.json"  # type: ignore[attr-defined]
    meta = json.loads(meta_file.read_text())
    expected = meta.pop("logit_scale")
    meta_file.write_text(json.dumps(meta))

    again = load_scorer(str(trained_model))
    assert again.logit_scale == pytest.approx(expected, rel=1e-6)
    assert json.loads(meta_file.read_text())["logit_scale"] == pytest.approx(expected, rel=1e-6)
