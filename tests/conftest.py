"""Shared fixtures: a tiny CLIP trained for seconds on generated shapes, and a generated photo folder.

Everything is offline and seeded. The trained model is a real checkpoint folder that `--model` loads,
so the tests exercise the same path a fine-tuned user model takes.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from clipsearch import synthetic
from clipsearch.cli import app

TRAIN_PER_CLASS = 30
INDEX_PER_CLASS = 5


def pytest_configure(config: pytest.Config) -> None:
    import torch

    torch.set_num_threads(2)


@pytest.fixture(scope="session", autouse=True)
def isolated_cache(tmp_path_factory: pytest.TempPathFactory):
    """The tests' own cache folder (model exports, offline-mini's class embeddings): XDG_CACHE_HOME points
    into the session's temporary folder, for this process and the subprocesses tests start.

    offline-mini's class-name embeddings are derived from pip-installed weights only; when the user's cache
    has them they are linked in (recomputing them costs ~30 s), else the first offline-mini load makes them.
    """
    import os

    from clipsearch.config import settings

    real = settings().cache_dir
    root = tmp_path_factory.mktemp("xdg-cache")
    saved = {k: os.environ.get(k) for k in ("XDG_CACHE_HOME", "CLIPSEARCH_CACHE")}
    os.environ.pop("CLIPSEARCH_CACHE", None)
    os.environ["XDG_CACHE_HOME"] = str(root)
    cache = settings().cache_dir
    cache.mkdir(parents=True)
    for classes in real.glob("offline-mini-classes-*.npy") if real.is_dir() else ():
        shutil.copyfile(classes, cache / classes.name)
    yield cache
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session")
def finetuned(tmp_path_factory: pytest.TempPathFactory):
    """clipsearch-tiny (random init) fine-tuned ~30 s on colour×shape classes through the public finetune API.

    It is both the model most tests search with and the subject of the fine-tuning tests.
    """
    from clipsearch.finetune import finetune
    from clipsearch.training import TrainConfig

    root = tmp_path_factory.mktemp("tiny-model")
    synthetic.make_dataset(root / "train", per_class=TRAIN_PER_CLASS, seed=1, class_folders=True)
    report = finetune(root / "train", root / "model", base_model="clipsearch-tiny", templates=["a {}"],
                      config=TrainConfig(epochs=8, batch_size=16, lr=2e-3, warmup_steps=5, seed=0),
                      alpha=1.0, device="cpu", val_fraction=0.2, test_fraction=0.0)
    return root / "model", report


@pytest.fixture(scope="session")
def trained_model(finetuned) -> Path:
    return finetuned[0]


@pytest.fixture(scope="session")
def shapes_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A pristine generated collection: INDEX_PER_CLASS images of each of the 12 colour×shape classes."""
    root = tmp_path_factory.mktemp("shapes-src")
    synthetic.make_dataset(root, per_class=INDEX_PER_CLASS, seed=7)
    return root


@pytest.fixture()
def photos(tmp_path: Path, shapes_source: Path) -> Path:
    """A fresh, writable copy of the collection for tests that change files."""
    dest = tmp_path / "photos"
    shutil.copytree(shapes_source, dest)
    return dest


@pytest.fixture()
def runner() -> CliRunner:
    return CliRunner()


def cli(runner: CliRunner, *args: str, ok: bool = True):
    """Invoke the CLI; by default assert success and show the output when it fails."""
    result = runner.invoke(app, [str(a) for a in args], catch_exceptions=False)
    if ok:
        assert result.exit_code == 0, f"exit {result.exit_code}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    return result


def cli_json(runner: CliRunner, *args: str):
    return json.loads(cli(runner, *args, "--json").stdout)


def label_of(path: str) -> str:
    """'…/red_circle_003.png' → 'red circle'."""
    stem = Path(path).stem
    color, shape = stem.split("_")[:2]
    return f"{color} {shape}"


@pytest.fixture(scope="session")
def indexed(tmp_path_factory: pytest.TempPathFactory, shapes_source: Path, trained_model: Path) -> Path:
    """A read-only store over shapes_source built with the trained model (tests must not modify it)."""
    store = tmp_path_factory.mktemp("store") / "index"
    cli(CliRunner(), "index", shapes_source, "--index", store, "--model", trained_model)
    return store
