"""The torch-free core: with torch, torchvision, open_clip, timm and transformers unimportable (a sys.meta_path
blocker in a subprocess: what a `pip install "clipsearch[cpu]"` without the [torch] extra has), a store whose
model export is in the cache indexes, answers text and image queries, finds duplicates and serves its page and
API, with the same results as with torch present; the commands that need torch say in one line what to install."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import clipsearch
from tests.conftest import cli_json

MODEL = "clipsearch-tiny"  # the shipped tiny config, seeded weights: its export is made in seconds
ROOT = Path(__file__).resolve().parents[2]

BLOCKER = """
import importlib.abc, json, runpy, sys
BLOCKED = {"torch", "torchvision", "open_clip", "timm", "transformers"}

class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, Blocker())
"""

CLI = BLOCKER + """
sys.argv = ["clipsearch"] + sys.argv[1:]
runpy.run_module("clipsearch", run_name="__main__")
"""

SERVE = BLOCKER + """
from fastapi.testclient import TestClient
from clipsearch.server import create_app

client = TestClient(create_app(sys.argv[1]))
search = client.get("/api/search", params={"q": "a red circle", "k": 5})
with open(sys.argv[2], "rb") as f:
    upload = client.post("/api/search", files={"image": ("q.png", f, "image/png")}, data={"k": "5"})
print(json.dumps({"page": client.get("/").status_code, "health": client.get("/api/health").status_code,
                  "search": search.json(), "upload": upload.json()}))
"""


def blocked(tmp_path: Path, script: str, *args: str | Path) -> subprocess.CompletedProcess:
    path = tmp_path / f"blocked-{abs(hash(script))}.py"
    path.write_text(script)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CLIPSEARCH_DEBUG": ""}
    return subprocess.run([sys.executable, str(path), *map(str, args)], capture_output=True, text=True, env=env,
                          timeout=600)


def blocked_json(tmp_path: Path, *args: str | Path) -> object:
    run = blocked(tmp_path, CLI, *args, "--json")
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


def paths(hits) -> list[str]:
    return [h["path"] for h in hits]


@pytest.fixture()
def exported(shapes_source: Path, tmp_path: Path) -> None:
    """The model's export in the cache (the tests' own cache, which the subprocesses share): made once with torch."""
    with clipsearch.open(tmp_path / "seed", model=MODEL) as store:
        store.add([next(shapes_source.glob("*.png"))])
        assert store.encoder.backend == "onnx"


def test_index_query_dupes_and_serve_without_torch(exported, runner, shapes_source: Path, tmp_path: Path) -> None:
    store = tmp_path / "store"
    run = blocked_json(tmp_path, "index", shapes_source, "--index", store, "--model", MODEL)
    assert run["added"] == run["encoded"] == 60 and run["failed"] == 0
    assert (run["backend"], run["device"]) == ("onnx", "cpu")
    example = sorted(shapes_source.glob("blue_square_*.png"))[0]
    for query in (["a red circle"], ["--image", str(example)], ["a green star", "--under", str(shapes_source)]):
        without = blocked_json(tmp_path, "query", *query, "--index", store, "-k", "5")
        with_torch = cli_json(runner, "query", *query, "--index", store, "-k", "5")
        assert len(without) == 5 and paths(without) == paths(with_torch), query
    assert blocked_json(tmp_path, "dupes", "--index", store) == cli_json(runner, "dupes", "--index", store)
    assert blocked_json(tmp_path, "info", "--index", store)["images"] == 60

    served = blocked(tmp_path, SERVE, store, example)
    assert served.returncode == 0, served.stderr
    pages = json.loads(served.stdout)
    assert pages["page"] == pages["health"] == 200
    assert paths(pages["search"]["results"]) == paths(cli_json(runner, "query", "a red circle", "--index", store,
                                                               "-k", "5"))
    image_query = cli_json(runner, "query", "--image", example, "--index", store, "-k", "5")
    assert paths(pages["upload"]["results"]) == paths(image_query)


def test_classify_and_eval_without_torch(runner, trained_model: Path, shapes_source: Path, tmp_path: Path) -> None:
    """Once a model is exported, classify and eval import neither torch nor open_clip, and answer as torch does."""
    from clipsearch.media import synthetic
    from clipsearch.tune.evaluate import load_scorer

    assert load_scorer(str(trained_model)).backend == "onnx"  # type: ignore[attr-defined]  # exported here
    labels = ",".join(f"{c} {s}" for c, s in synthetic.classes())
    images = [shapes_source / "red_triangle_000.png", shapes_source / "blue_square_001.png"]
    args = ["classify", *images, "--labels", labels, "--model", trained_model, "-k", "3"]
    without = blocked_json(tmp_path, *args)
    with_torch = cli_json(runner, *args, "--backend", "torch")
    assert [[x["label"] for x in r["labels"]] for r in without] == \
        [[x["label"] for x in r["labels"]] for r in with_torch]
    assert [r["labels"][0]["label"] for r in without] == ["red triangle", "blue square"]

    synthetic.make_dataset(tmp_path / "set", per_class=2, seed=5, class_folders=True)
    metrics = blocked_json(tmp_path, "eval", tmp_path / "set", "--model", trained_model)
    assert metrics["top1"] == cli_json(runner, "eval", tmp_path / "set", "--model", trained_model,
                                       "--backend", "torch")["top1"]
    probe = blocked(tmp_path, CLI, "eval", tmp_path / "set", "--model", trained_model, "--linear-probe")
    assert probe.returncode == 1 and "Traceback" not in probe.stderr, probe.stderr
    assert "the linear probe needs PyTorch" in probe.stderr and 'pip install "clipsearch[torch]"' in probe.stderr


@pytest.mark.parametrize("args", [
    ["index", "{photos}", "--index", "{tmp}/t", "--model", MODEL, "--backend", "torch"],  # the torch backend
    ["index", "{photos}", "--index", "{tmp}/v", "--model", "ViT-B-32"],  # a model with no export: exporting
    ["finetune", "{photos}", "--out", "{tmp}/m", "--model", MODEL],
    ["classify", "{photos}/red_circle_000.png", "--labels", "a,b", "--model", MODEL, "--backend", "torch"],
    ["classify", "{photos}/red_circle_000.png", "--labels", "a,b", "--model", "ViT-B-32"],  # exporting needs torch
])
def test_what_needs_torch_says_what_to_install(args: list[str], shapes_source: Path, tmp_path: Path) -> None:
    run = blocked(tmp_path, CLI, *[a.format(photos=shapes_source, tmp=tmp_path) for a in args])
    assert run.returncode == 1 and "Traceback" not in run.stderr, run.stderr
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert lines[0].startswith("error:") and "needs PyTorch" in lines[0], run.stderr
    assert 'pip install "clipsearch[torch]"' in run.stderr
