"""The text tower on ONNX Runtime: the same embedding as torch and the NumPy tower (so the CLI and the server rank
alike), one tower per model in the export cache shared by its stores, older towers and stores kept working."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

import clipsearch
from clipsearch.encoders import onnx_text_export, onnx_text_tower, text_runtime
from clipsearch.encoders.numpy_text import CoalescingTextEncoder, NumpyTextEncoder
from clipsearch.encoders.onnx_text_tower import OnnxTextTower
from clipsearch.encoders.recent_texts import RecentTexts
from clipsearch.encoders.text_export import export_text_tower
from clipsearch.encoders.torch_encoder import load_encoder

# English short and long, Chinese, mixed scripts, markup, a typed special token, empty, over the context length
TEXTS = ["a red circle", "a dog running on the grass at the beach in the warm evening light", "一只猫在草地上",
         "iPhone 手机 壳 red", "café &amp; crème", "<end_of_text> typed", "", "tree " * 120]
QUERIES = ["a red circle", "a blue square", "a green triangle", "a yellow star"]


def _tower(spec: str, trained_model: Path, folder: Path):
    enc = load_encoder(str(trained_model) if spec == "trained" else spec, device="cpu")
    assert export_text_tower(enc, folder)
    assert onnx_text_export.export_text_onnx(enc, folder) <= onnx_text_export.MAX_ABS_DIFF
    return enc


@pytest.mark.parametrize("spec", ["trained", "ViT-B-32", "offline-mini"])
def test_onnx_numpy_and_torch_give_the_same_embedding(spec: str, trained_model: Path, tmp_path: Path) -> None:
    enc = _tower(spec, trained_model, tmp_path / "text")
    ort, fast = OnnxTextTower(tmp_path / "text", threads=1), NumpyTextEncoder(tmp_path / "text")
    ref = enc.encode_texts(TEXTS)
    batched = ort.encode_texts(TEXTS)  # one batch padded to its longest text
    single = np.concatenate([ort.encode_texts([t]) for t in TEXTS])
    assert batched.dtype == np.float32 and batched.shape == ref.shape
    for got in (batched, single, fast.encode_texts(TEXTS)):
        assert np.abs(got - ref).max() <= 1e-5
    assert np.abs(batched - fast.encode_texts(TEXTS)).max() <= 1e-5
    # the token axis is dynamic: a batch of short texts runs at its own length, not the context length
    feeds = ort.feeds([ort.tokenize(t) for t in ("a cat", "a red dress")])
    assert feeds["input_ids"].shape[1] == max(len(ort.tokenize(t)) for t in ("a cat", "a red dress")) < 10
    assert OnnxTextTower.load(tmp_path / "text", "another-model-key") is None  # never mixes models


def test_int8_graph_is_made_once_beside_fp32_and_fp32_stays_the_default(trained_model: Path, tmp_path: Path) -> None:
    _tower("trained", trained_model, tmp_path / "text")
    fp32 = OnnxTextTower(tmp_path / "text")
    int8 = OnnxTextTower(tmp_path / "text", "int8")
    made = (tmp_path / "text" / onnx_text_tower.TEXT_INT8).stat().st_mtime_ns
    OnnxTextTower(tmp_path / "text", "int8")
    assert (tmp_path / "text" / onnx_text_tower.TEXT_INT8).stat().st_mtime_ns == made
    a, b = fp32.encode_texts(QUERIES), int8.encode_texts(QUERIES)
    assert np.allclose(np.linalg.norm(b, axis=1), 1.0, atol=1e-5)
    assert (a * b).sum(axis=1).min() > 0.9  # close, not equal: which is why fp32 is what queries run
    assert onnx_text_tower.DEFAULT_TEXT_PRECISION == "fp32" and fp32.precision == "fp32"


def test_a_graph_that_disagrees_is_refused_once_and_numpy_answers(trained_model: Path, tmp_path: Path,
                                                                   monkeypatch) -> None:
    enc = load_encoder(str(trained_model), device="cpu")
    folder = tmp_path / "text"
    assert export_text_tower(enc, folder)
    monkeypatch.setattr(onnx_text_export, "check", lambda *_a, **_k: 0.5)
    with pytest.raises(onnx_text_export.TextExportRefused, match="differ"):
        onnx_text_export.export_text_onnx(enc, folder)
    assert not (folder / onnx_text_tower.TEXT_FP32).exists() and onnx_text_tower.read_record(folder) is None
    assert "differ" in (folder / onnx_text_tower.REFUSED).read_text()

    def no_retry(*_a, **_k):
        raise AssertionError("a refused tower is not exported again")

    monkeypatch.setattr(onnx_text_export, "export_text_onnx", no_retry)
    got = text_runtime.load_text_encoder(folder, enc.spec.key, warm=True, spec=enc.spec)
    assert isinstance(got, NumpyTextEncoder)


def test_an_older_export_gets_its_graph_in_a_warm_process_only(trained_model: Path, tmp_path: Path) -> None:
    enc = load_encoder(str(trained_model), device="cpu")
    folder = tmp_path / "text"
    assert export_text_tower(enc, folder)  # a tower as exports made it before graphs: NumPy weights only
    cold = text_runtime.load_text_encoder(folder, enc.spec.key, spec=enc.spec)
    assert isinstance(cold, NumpyTextEncoder) and not (folder / onnx_text_tower.TEXT_FP32).exists()
    warm = text_runtime.load_text_encoder(folder, enc.spec.key, warm=True, spec=enc.spec)
    assert isinstance(warm, OnnxTextTower) and onnx_text_tower.read_record(folder, enc.spec.key) is not None
    assert np.abs(warm.encode_texts(TEXTS) - cold.encode_texts(TEXTS)).max() <= 1e-5
    # asked by name, each runtime answers; ONNX Runtime from now on even cold (the graph exists)
    assert isinstance(text_runtime.load_text_encoder(folder, enc.spec.key, runtime="onnx"), OnnxTextTower)
    numpy_tower = text_runtime.load_text_encoder(folder, enc.spec.key, runtime="numpy", warm=True)
    assert isinstance(numpy_tower, NumpyTextEncoder)


def test_stores_share_the_cache_tower_and_cold_and_warm_rank_alike(indexed: Path) -> None:
    assert not (indexed / "text_encoder").exists()  # a new store keeps no copy of the text tower
    with clipsearch.open(indexed, create=False) as cold, clipsearch.open(indexed, create=False) as warm:
        warm.warm_text_queries()
        cold_enc, warm_enc = cold.text_encoder(), warm.text_encoder()
        assert isinstance(cold_enc, NumpyTextEncoder)
        assert isinstance(warm_enc, RecentTexts) and isinstance(warm_enc.inner, CoalescingTextEncoder)
        assert isinstance(warm_enc.inner.inner, OnnxTextTower)
        spec = cold.model_spec
        assert cold_enc.folder == warm_enc.folder == text_runtime.text_tower_dir(spec, spec.key)
        for query in QUERIES + ["一只红色的圆", "square " * 90]:
            a, b = cold.search(query, k=10), warm.search(query, k=10)
            assert [h.id for h in a] == [h.id for h in b], query
            assert max(abs(x.score - y.score) for x, y in zip(a, b, strict=True)) <= 1e-5


def test_a_store_with_its_own_tower_copy_still_answers(indexed: Path, tmp_path: Path, monkeypatch) -> None:
    """Stores written before the tower moved to the cache hold a `text_encoder/` copy: with no export of the
    model on this machine, that copy answers text queries (no torch), and the cache's tower is preferred."""
    with clipsearch.open(indexed, create=False) as store:
        spec = store.model_spec
        expected = [h.id for h in store.search("a red circle", k=5)]
    cached = text_runtime.text_tower_dir(spec, spec.key)
    assert cached is not None
    old = tmp_path / "old-store"
    shutil.copytree(indexed, old)
    shutil.copytree(cached, old / "text_encoder")
    with clipsearch.open(old, create=False) as store:
        assert store.text_encoder().folder == cached  # the shared tower first
    monkeypatch.setenv("CLIPSEARCH_CACHE", str(tmp_path / "empty-cache"))
    with clipsearch.open(old, create=False) as store:
        assert store.text_encoder().folder == old / "text_encoder"
        assert [h.id for h in store.search("a red circle", k=5)] == expected
        assert store.loaded()["images"] is False
