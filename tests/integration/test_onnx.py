"""The ONNX Runtime backend: exports agree with torch, stores built with it answer like torch-built ones, the
index path runs without torch once a model is exported, int8 is recorded and never mixed with fp32."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import clipsearch
from clipsearch.encoders import onnx_encoder, onnx_export
from clipsearch.encoders.text_runtime import OnnxEncoder
from clipsearch.errors import ClipsearchError, ModelMismatchError
from clipsearch.media.images import decode_paths
from tests.conftest import cli, cli_json

QUERIES = ["a red circle", "a blue square", "a green triangle", "a yellow star"]


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


@pytest.fixture(scope="module")
def offline_torch():
    from clipsearch.encoders.torch_encoder import load_encoder

    return load_encoder("offline-mini", device="cpu")


@pytest.mark.parametrize("kind", ["trained", "offline-mini"])
def test_export_round_trip_matches_torch(kind: str, trained_model: Path, shapes_source: Path, offline_torch,
                                         tmp_path: Path) -> None:
    from clipsearch.encoders.torch_encoder import load_encoder

    enc = offline_torch if kind == "offline-mini" else load_encoder(str(trained_model), device="cpu")
    folder = onnx_export.export(enc, cache_root=tmp_path)
    export = onnx_encoder.find_export(enc.spec.cache_key, cache_root=tmp_path)
    assert export is not None and export.folder == folder and export.meta["min_cosine"] >= onnx_export.MIN_COSINE
    ort = OnnxEncoder(enc.spec, export, "fp32", "cpu")  # the image graph with its text tower beside it
    assert ort.describe() == enc.describe()  # what a store records does not depend on the backend
    assert (ort.image_size, ort.resize_mode, ort.embed_dim) == (enc.image_size, enc.resize_mode, enc.embed_dim)
    pixels, _kept, _failed = decode_paths(enc, sorted(str(p) for p in shapes_source.glob("*.png"))[:9])
    for batch in (pixels, pixels[:1], onnx_export.probe_pixels(enc.image_size, 4, seed=5)):
        torch_vecs, onnx_vecs = enc.encode_images(batch), ort.encode_images(batch)
        assert onnx_vecs.dtype == np.float32 and onnx_vecs.shape == torch_vecs.shape
        assert _cosines(torch_vecs, onnx_vecs).min() >= 0.99999
        assert np.allclose(np.linalg.norm(onnx_vecs, axis=1), 1.0, atol=1e-5)  # normalised inside the graph
    # the export carries the text tower (NumPy weights and its ONNX graph), so a store needs no torch for text
    assert export.text_dir is not None and export.meta["text_onnx"] == "ok"
    assert type(ort.text_tower()).__name__ == "OnnxTextTower"
    texts = ["a cat", "a red circle"]
    assert np.abs(ort.encode_texts(texts) - enc.encode_texts(texts)).max() < 1e-5


def test_onnx_store_ranks_like_a_torch_store(indexed: Path, shapes_source: Path, trained_model: Path,
                                             tmp_path: Path) -> None:
    with clipsearch.open(tmp_path / "torch", model=str(trained_model), backend="torch") as torch_store, \
            clipsearch.open(tmp_path / "onnx", model=str(trained_model), backend="onnx") as onnx_store, \
            clipsearch.open(indexed, create=False) as default_store:
        torch_store.add([shapes_source])
        onnx_store.add([shapes_source], int8=False)
        assert torch_store.encoder.backend == "torch" and onnx_store.encoder.backend == "onnx"
        assert torch_store.manifest["model"] == onnx_store.manifest["model"]
        example = str(sorted(shapes_source.glob("red_circle_*.png"))[0])
        for query in [{"text": q} for q in QUERIES] + [{"image": example}]:
            top5 = [h.path for h in torch_store.search(**query, k=5)]
            assert [h.path for h in onnx_store.search(**query, k=5)] == top5, query
            # the default on a CPU: ONNX Runtime, int8; it agrees with fp32 on at least 4 of the top 5
            assert len(set(top5) & {h.path for h in default_store.search(**query, k=5)}) >= 4, query
        assert default_store.encoder.backend == "onnx"
        default = onnx_encoder.default_precision(None)  # int8 on a CPU
        assert default_store.manifest["model"] == {**torch_store.manifest["model"], "precision": default}


WRAPPER = """
import runpy, sys
sys.argv = ["clipsearch"] + sys.argv[1:]
try:
    runpy.run_module("clipsearch", run_name="__main__")
except SystemExit as exc:
    code = exc.code or 0
else:
    code = 0
print(json.dumps({"torch": "torch" in sys.modules, "open_clip": "open_clip" in sys.modules, "code": code}),
      file=sys.stderr)
""".replace("import runpy, sys", "import json, runpy, sys")


def _index_in_subprocess(tmp_path: Path, *args: str) -> dict:
    script = tmp_path / "wrap.py"
    script.write_text(WRAPPER)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    run = subprocess.run([sys.executable, str(script), "index", *args, "--json"], capture_output=True, text=True,
                         env=env, timeout=600)
    modules = json.loads(run.stderr.strip().splitlines()[-1])
    assert modules["code"] == 0, run.stderr
    return {**modules, "summary": json.loads(run.stdout)}


def test_index_path_imports_no_torch_once_exported(tmp_path: Path, shapes_source: Path, trained_model: Path,
                                                   monkeypatch) -> None:
    monkeypatch.setenv("CLIPSEARCH_CACHE", str(tmp_path / "cache"))  # no export yet
    first = _index_in_subprocess(tmp_path, str(shapes_source), "--index", str(tmp_path / "a"), "--model",
                                 str(trained_model))
    assert first["torch"] is True  # the export needs torch, once (and shows the check sees it)
    second = _index_in_subprocess(tmp_path, str(shapes_source), "--index", str(tmp_path / "b"), "--model",
                                  str(trained_model))
    assert second["torch"] is False and second["open_clip"] is False
    assert first["summary"]["added"] == second["summary"]["added"] == 60
    # the text tower stays in the export cache, one per model: neither store holds a copy
    assert not (tmp_path / "a" / "text_encoder").exists() and not (tmp_path / "b" / "text_encoder").exists()
    with clipsearch.open(tmp_path / "a", create=False) as a, clipsearch.open(tmp_path / "b", create=False) as b:
        assert a.manifest["model"] == b.manifest["model"]
        for query in QUERIES:
            assert [h.path for h in a.search(query, k=5)] == [h.path for h in b.search(query, k=5)]


def test_int8_is_recorded_and_never_mixed(runner, tmp_path: Path, shapes_source: Path, trained_model: Path) -> None:
    idx = tmp_path / "int8"
    with clipsearch.open(idx, model=str(trained_model)) as store:
        store.add([shapes_source / "red_circle_000.png"], int8=True)
        assert store.manifest["model"]["precision"] == "int8" and store.encoder.precision == "int8"
        assert (store.encoder.export.folder / onnx_encoder.IMAGE_INT8).is_file()
        with pytest.raises(ModelMismatchError) as exc:
            store.add([shapes_source], int8=False)
        assert exc.value.param == "int8" and "would mix" in exc.value.message
        assert store.info()["images"] == 1
        summary = store.add([shapes_source])  # None: the store's precision
        assert summary.added == 59
        hits = store.search("a red circle", k=5)
        assert hits and all("red" in Path(h.path).name for h in hits[:3])
    assert cli_json(runner, "info", "--index", idx)["model"]["precision"] == "int8"
    with clipsearch.open(idx, create=False, backend="torch") as on_torch:  # a query may run on torch (fp32)...
        assert on_torch.search(image=str(shapes_source / "red_circle_001.png"), k=3)
        assert on_torch.encoder.backend == "torch"
        more = tmp_path / "more"
        more.mkdir()
        (more / "copy.png").write_bytes((shapes_source / "red_circle_001.png").read_bytes())
        with pytest.raises(ClipsearchError) as exc:  # ...but torch cannot add int8 embeddings
            on_torch.add([more])
        assert exc.value.param == "int8"
    result = cli(runner, "index", shapes_source, "--index", idx, "--fp32", ok=False)
    assert result.exit_code == 1 and "fp32 embeddings would mix" in result.stderr and "--int8" in result.stderr

    fp32 = tmp_path / "fp32"
    cli(runner, "index", shapes_source / "red_circle_000.png", "--index", fp32, "--model", trained_model, "--fp32")
    result = cli(runner, "index", shapes_source, "--index", fp32, "--int8", ok=False)
    assert result.exit_code == 1 and "--int8 embeddings would mix with the fp32 ones" in result.stderr
    # a store from before precisions were recorded holds fp32
    manifest = json.loads((fp32 / "manifest.json").read_text())
    del manifest["model"]["precision"]
    (fp32 / "manifest.json").write_text(json.dumps(manifest))
    with clipsearch.open(fp32, create=False) as old, pytest.raises(ModelMismatchError):
        old.add([shapes_source], int8=True)


def test_backend_is_checked_and_named_as_an_option(runner, tmp_path: Path, shapes_source: Path) -> None:
    with pytest.raises(ClipsearchError) as exc:
        clipsearch.open(tmp_path / "x", backend="tensorflow")
    assert exc.value.param == "backend"
    result = cli(runner, "index", shapes_source, "--index", tmp_path / "x", "--backend", "tf", ok=False)
    assert result.exit_code == 1 and "--backend must be one of onnx, torch" in result.stderr


def test_a_refused_export_falls_back_to_torch_with_a_notice(tmp_path: Path, shapes_source: Path,
                                                            trained_model: Path, monkeypatch) -> None:
    monkeypatch.setenv("CLIPSEARCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(onnx_export, "MIN_COSINE", 1.01)  # no export can pass: as if ONNX disagreed with torch
    with clipsearch.open(tmp_path / "a", model=str(trained_model)) as store:
        store.add([shapes_source / "red_circle_000.png"])
        assert store.encoder.backend == "torch"
        assert any("has no ONNX export: ONNX and torch embeddings differ" in str(n) and "using torch" in str(n)
                   for n in store.notices)
        key = store.model_spec.cache_key
    assert "differ" in onnx_encoder.refusal(key) and onnx_encoder.find_export(key) is None
    monkeypatch.setattr(onnx_export, "MIN_COSINE", 0.99999)
    with clipsearch.open(tmp_path / "b", model=str(trained_model)) as store:  # refused once: not retried
        store.add([shapes_source / "red_circle_000.png"])
        assert store.encoder.backend == "torch" and store.notices
    with clipsearch.open(tmp_path / "c", model=str(trained_model), backend="onnx") as store:
        with pytest.raises(ClipsearchError) as exc:
            store.add([shapes_source / "red_circle_000.png"])
        assert exc.value.param == "backend" and "differ" in exc.value.message
        with pytest.raises(ClipsearchError) as exc:  # int8 has no torch fallback
            store.add([shapes_source / "red_circle_000.png"], int8=True)
        assert exc.value.param in ("backend", "int8")


def test_cache_lives_under_xdg_cache_home(isolated_cache: Path) -> None:
    from clipsearch.config import settings
    from clipsearch.encoders import offline_model

    assert settings().cache_dir == Path(os.environ["XDG_CACHE_HOME"]) / "clipsearch" == isolated_cache
    assert onnx_encoder.export_root() == isolated_cache / "onnx"
    _weights, minilm = offline_model._packages()
    assert offline_model._class_cache_path(minilm).parent == isolated_cache
