"""The CLI surface: output formats, filters, combined queries, and one-line errors for bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import clipsearch
from tests.conftest import cli, cli_json, label_of


def _no_traceback(result) -> None:
    assert "Traceback" not in result.stdout + result.stderr


def test_table_paths_and_json_outputs(runner, indexed: Path) -> None:
    table = cli(runner, "query", "a blue square", "-k", "3", "--index", indexed).stdout
    assert "rank" in table and "score" in table and ".png" in table
    paths = cli(runner, "query", "a blue square", "-k", "3", "--paths", "--index", indexed).stdout.splitlines()
    assert len(paths) == 3 and all(Path(p).is_file() for p in paths)
    hits = cli_json(runner, "query", "a blue square", "-k", "3", "--index", indexed)
    assert [h["path"] for h in hits] == paths
    assert set(hits[0]) == {"rank", "score", "path", "size", "width", "height", "format", "modified", "id", "taken",
                            "camera", "lens", "gps", "digest"}
    assert [h["rank"] for h in hits] == [1, 2, 3]
    assert hits[0]["score"] >= hits[1]["score"] >= hits[2]["score"]


def test_info(runner, indexed: Path) -> None:
    info = cli_json(runner, "info", "--index", indexed)
    assert info["images"] == info["vectors"] == 60 and info["failed"] == 0
    assert info["index_type"] == "flat" and info["disk_bytes"] > 0
    assert info["model"]["key"].startswith("folder:") and info["model"]["embed_dim"] == 64
    assert info["last_run"]["status"] == "done"
    assert "60 photos" in cli(runner, "info", "--index", indexed).stdout


def test_filters_under_and_ext(runner, tmp_path: Path, photos: Path, trained_model: Path) -> None:
    sub = photos / "2023"
    sub.mkdir()
    for p in sorted(photos.glob("red_*_00[01].png")):
        p.rename(sub / p.name)
    jpg = photos / "red_circle_004.png"
    from PIL import Image

    Image.open(jpg).save(photos / "as_jpeg.jpg", quality=95)
    idx = tmp_path / "index"
    cli(runner, "index", photos, "--index", idx, "--model", trained_model)
    under = cli_json(runner, "query", "a red circle", "-k", "50", "--under", sub, "--index", idx)
    assert len(under) == 6 and all(Path(h["path"]).parent == sub for h in under)
    jpegs = cli_json(runner, "query", "a red circle", "-k", "50", "--ext", "jpeg", "--index", idx)
    assert [Path(h["path"]).name for h in jpegs] == ["as_jpeg.jpg"]


def test_date_filters(runner, tmp_path: Path, photos: Path, trained_model: Path) -> None:
    import datetime as dt

    old = dt.datetime(2020, 5, 17, 12).timestamp()
    for p in sorted(photos.glob("blue_*_00[0-2].png")):
        os.utime(p, (old, old))  # 9 "old" photos from 2020
    idx = tmp_path / "index"
    cli(runner, "index", photos, "--index", idx, "--model", trained_model)
    early = cli_json(runner, "query", "a red circle", "-k", "50", "--before", "2021-01-01", "--index", idx)
    assert len(early) == 9 and all(Path(h["path"]).name.startswith("blue_") for h in early)
    window = cli_json(runner, "query", "a blue square", "-k", "50", "--after", "2020-05-17",
                      "--before", "2020-05-18", "--index", idx)
    assert len(window) == 9
    assert len(cli_json(runner, "query", "a red circle", "-k", "100", "--after", "2021-01-01", "--index", idx)) == 51
    bad = cli(runner, "query", "x", "--after", "last tuesday", "--index", idx, ok=False)
    assert bad.exit_code == 1 and "is not a date" in bad.stderr


def test_weights_and_negatives_combine(runner, indexed: Path) -> None:
    plain = cli_json(runner, "query", "a red circle", "-k", "10", "--index", indexed)
    # subtracting half of the same vector leaves its direction unchanged: identical ranking
    halved = cli_json(runner, "query", "a red circle", "--minus", "a red circle::0.5", "-k", "10", "--index", indexed)
    assert [h["path"] for h in halved] == [h["path"] for h in plain]
    for weights, colour in ((("::4", ""), "red"), (("", "::4"), "blue")):  # the heavier term wins the top
        hits = cli_json(runner, "query", "a red circle" + weights[0], "a blue triangle" + weights[1], "-k", "3",
                        "--index", indexed)
        assert [label_of(h["path"]).split()[0] for h in hits] == [colour] * 3
    steered = cli_json(runner, "query", "a red circle", "--minus", "a red square", "-k", "10", "--index", indexed)
    squares = lambda hits: sum(label_of(h["path"]) == "red square" for h in hits)  # noqa: E731
    assert squares(steered) <= squares(plain)


def test_library_api(indexed: Path) -> None:
    with clipsearch.open(indexed, create=False) as store:
        hits = store.search("a green triangle", k=3)
        assert len(hits) == 3 and all(h.path.endswith(".png") for h in hits)
        assert store.info()["images"] == 60


@pytest.mark.parametrize("args, message", [
    (["query", "a cat", "--index", "{tmp}/nowhere"], "no index at"),
    (["query", "", "--index", "{indexed}"], "empty query"),
    (["query", "--index", "{indexed}"], "empty query"),
    (["query", "--image", "{tmp}/missing.jpg", "--index", "{indexed}"], "query image not found"),
    (["index", "{tmp}/missing-folder", "--index", "{tmp}/i"], "no such file or folder"),
    (["index", "{photos}", "--index", "{tmp}/i", "--model", "NoSuchNet-99"], "unknown model architecture"),
    (["index", "{photos}", "--index", "{indexed}", "--model", "clipsearch-tiny"], "was built with model"),
    (["index", "{photos}", "--index", "{tmp}/i", "--model", "{tmp}"], "not a clipsearch model"),
    (["index", "{photos}", "--index", "{tmp}/i", "--model", "{tmp}/no-such-model"], "model folder not found"),
    (["info", "--index", "{tmp}/nowhere"], "no index at"),
])
def test_errors_are_one_line_with_a_hint(runner, tmp_path, indexed, photos, args, message) -> None:
    fmt = {"tmp": tmp_path, "indexed": indexed, "photos": photos}
    result = cli(runner, *[a.format(**fmt) for a in args], ok=False)
    assert result.exit_code == 1, result.stdout + result.stderr
    assert message in result.stderr
    assert "hint:" in result.stderr
    _no_traceback(result)


def test_unreadable_query_image(runner, tmp_path: Path, indexed: Path) -> None:
    bad = tmp_path / "bad.jpg"
    bad.write_text("nope")
    result = cli(runner, "query", "--image", bad, "--index", indexed, ok=False)
    assert result.exit_code == 1 and "cannot use query image" in result.stderr
    _no_traceback(result)


def test_pretrained_weights_offline_is_a_clear_error(runner, tmp_path: Path, photos: Path, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # also what a machine without network sees, only faster
    result = cli(runner, "index", photos, "--index", tmp_path / "i", "--model", "RN50:openai", ok=False)
    assert result.exit_code == 1
    assert "cannot get weights for RN50:openai" in result.stderr and "unreachable" in result.stderr
    assert "hint:" in result.stderr
    _no_traceback(result)
    assert not (tmp_path / "i" / "manifest.json").exists()  # a failed model load leaves no half store


def test_unknown_pretrained_tag(runner, tmp_path: Path, photos: Path) -> None:
    result = cli(runner, "index", photos, "--index", tmp_path / "i", "--model", "ViT-B-32:no_such_tag", ok=False)
    assert result.exit_code == 1 and "has no pretrained weights 'no_such_tag'" in result.stderr
    assert "laion2b_s34b_b79k" in result.stderr  # the hint lists the real tags


def test_local_checkpoint_file_spec(tmp_path: Path, trained_model: Path, shapes_source: Path) -> None:
    """ARCH:/path/checkpoint.pt loads offline and gives the same embeddings as the model folder."""
    import numpy as np
    import torch

    from clipsearch.encoders.torch_encoder import load_encoder

    ckpt = tmp_path / "tiny.pt"
    torch.save(torch.load(trained_model / "weights.pt", weights_only=True), ckpt)
    from_folder = load_encoder(str(trained_model), device="cpu")
    from_file = load_encoder(f"clipsearch-tiny:{ckpt}", device="cpu")
    texts = ["a red circle", "a blue square"]
    assert np.allclose(from_folder.encode_texts(texts), from_file.encode_texts(texts), atol=1e-6)
    assert from_file.spec.key.startswith("clipsearch-tiny:file:")


def test_second_writer_is_refused(runner, tmp_path: Path, photos: Path, trained_model: Path) -> None:
    idx = tmp_path / "index"
    cli(runner, "index", photos / "red_circle_000.png", "--index", idx, "--model", trained_model)
    with clipsearch.open(idx) as store, store.writer_lock():
        result = cli(runner, "index", photos, "--index", idx, ok=False)
        assert result.exit_code == 1 and "being written by pid" in result.stderr
        # readers are not blocked by the writer
        assert cli_json(runner, "query", "a red circle", "--index", idx)[0]["path"].endswith("red_circle_000.png")


def test_help_and_errors_do_not_import_torch(tmp_path: Path) -> None:
    code = (
        "import sys; from typer.testing import CliRunner; from clipsearch.cli import app;"
        "r = CliRunner();"
        "a = r.invoke(app, ['--help']); b = r.invoke(app, ['query', 'x', '--index', sys.argv[1]]);"
        "c = r.invoke(app, ['index', '--help']);"
        "print(json.dumps([a.exit_code, b.exit_code, c.exit_code, 'torch' in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", "import json;" + code, str(tmp_path / "none")],
                         capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == [0, 1, 0, False]


def test_default_store_location(monkeypatch, tmp_path: Path) -> None:
    from clipsearch.store.store import default_store_path

    monkeypatch.setenv("CLIPSEARCH_INDEX", str(tmp_path / "env-store"))
    assert default_store_path() == tmp_path / "env-store"
    monkeypatch.delenv("CLIPSEARCH_INDEX")
    assert default_store_path().name == "index"


@pytest.mark.parametrize("kind", ["flat", "ivf", "hnsw", "ivfpq"])
def test_reindex_vectors_only_forces_a_type(runner, tmp_path: Path, photos: Path, trained_model: Path,
                                            kind: str) -> None:
    idx = tmp_path / "index"
    cli(runner, "index", photos, "--index", idx, "--model", trained_model)
    before = cli_json(runner, "query", "a blue circle", "-k", "5", "--index", idx)
    result = cli_json(runner, "reindex", "--vectors-only", "--type", kind, "--index", idx)
    # IVF needs 8 vectors per list to train (IVF-PQ ~10k); a 60-image store keeps exact search and says so
    assert result["index_type"] == ("flat" if kind in ("ivf", "ivfpq") else kind) and result["vectors"] == 60
    assert cli_json(runner, "info", "--index", idx)["index_type"] == result["index_type"]
    after = cli_json(runner, "query", "a blue circle", "-k", "5", "--index", idx)
    assert [h["path"] for h in after] == [h["path"] for h in before]  # small sets: every type is exact
    filtered = cli_json(runner, "query", "a blue circle", "--ext", "png", "--before", "2999-01-01", "--index", idx)
    assert len(filtered) == 10  # id-selector filters work on every type
    (photos / "blue_circle_000.png").unlink()  # removal works for every type (HNSW rebuilds)
    assert cli_json(runner, "index", photos, "--index", idx)["removed"] == 1
    assert cli_json(runner, "info", "--index", idx)["index_type"] == result["index_type"]  # forced type is kept


def test_ivf_index_recall_and_filters(tmp_path: Path) -> None:
    """The IVF index the store switches to at scale: recall@10 vs exact search, and id-selector filters."""
    import numpy as np

    from clipsearch.vectors.index import VectorIndex

    rng = np.random.default_rng(0)
    centers = rng.normal(size=(50, 64))
    vecs = centers[rng.integers(0, 50, 20_000)] + 0.3 * rng.normal(size=(20_000, 64))
    vecs = (vecs / np.linalg.norm(vecs, axis=1, keepdims=True)).astype(np.float32)
    ids = np.arange(20_000, dtype=np.int64) * 3  # ids are catalog ids, not positions
    exact = VectorIndex.build(ids, vecs, 64, "flat")
    ivf = VectorIndex.build(ids, vecs, 64, "ivf")
    assert ivf.kind == "ivf"
    queries = vecs[:50] + 0.05 * rng.normal(size=(50, 64)).astype(np.float32)
    _, truth = exact.search(queries, 10)
    _, got = ivf.search(queries, 10)
    recall = np.mean([len(set(t) & set(g)) / 10 for t, g in zip(truth, got, strict=False)])
    assert recall >= 0.95, recall
    allowed = ids[::7]
    _, filtered = ivf.search(queries, 10, allowed)
    assert set(filtered.ravel()) - {-1} <= set(allowed.tolist())


def test_int8_indexing(runner, tmp_path: Path, shapes_source: Path, trained_model: Path) -> None:
    folder = tmp_path / "few"
    folder.mkdir()
    for p in sorted(shapes_source.glob("*_000.png"))[:3]:
        (folder / p.name).write_bytes(p.read_bytes())
    summary = cli_json(runner, "index", folder, "--index", tmp_path / "q", "--model", trained_model, "--int8")
    assert summary["added"] == 3 and summary["failed"] == 0
    result = cli(runner, "index", folder, "--index", tmp_path / "t", "--model", trained_model, "--int8",
                 "--backend", "torch", ok=False)
    assert result.exit_code == 1 and "--int8 runs on the onnx backend" in result.stderr
    assert not (tmp_path / "t" / "manifest.json").exists()


def test_version_and_a_mistyped_store_for_serve(runner, tmp_path: Path) -> None:
    import clipsearch

    assert cli(runner, "--version").stdout.strip() == f"clipsearch {clipsearch.__version__}"
    typo = cli(runner, "serve", "--index", tmp_path / "no-such-store", ok=False)
    assert typo.exit_code == 1 and "no index at" in typo.stderr and "Traceback" not in typo.stderr
