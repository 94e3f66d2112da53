"""Which text tower answers (text_runtime), where it is found, how a batch becomes the graph's inputs: fakes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from clipsearch.encoders import onnx_text_tower as ott, text_runtime
from clipsearch.encoders.numpy_text import NumpyTextEncoder
from clipsearch.encoders.onnx_encoder import TEXT_DIR, export_dir
from clipsearch.encoders.spec import parse_spec
from clipsearch.errors import ClipsearchError


def _bare_encoder(inputs: list[str], pad_id: int = 0) -> ott.OnnxTextTower:
    enc = object.__new__(ott.OnnxTextTower)
    enc.inputs, enc.pad_id = inputs, pad_id
    return enc


def test_a_batch_is_padded_to_its_longest_text_with_a_mask() -> None:
    feeds = _bare_encoder([ott.INPUT_IDS, ott.ATTENTION_MASK], pad_id=1).feeds([[5, 6, 7], [5, 9], [4]])
    assert feeds["input_ids"].tolist() == [[5, 6, 7], [5, 9, 1], [4, 1, 1]]
    assert feeds["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0], [1, 0, 0]]
    assert feeds["input_ids"].dtype == np.int64
    # a graph that takes ids only (CLIP: its causal mask hides the padding) gets ids only
    assert list(_bare_encoder([ott.INPUT_IDS]).feeds([[1, 2]])) == ["input_ids"]


def _tower_config(folder: Path, key: str) -> Path:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"format": 1, "family": "clip", "key": key, "context_length": 77}))
    return folder


def test_the_cache_tower_is_found_before_a_store_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLIPSEARCH_CACHE", str(tmp_path / "cache"))  # its own cache: the session's may hold one
    spec = parse_spec("clipsearch-tiny")
    copy = _tower_config(tmp_path / "store" / "text_encoder", spec.key)
    assert text_runtime.text_tower_dir(spec, spec.key, copy) == copy  # no export on this machine: the store's copy
    cached = _tower_config(export_dir(spec.cache_key) / TEXT_DIR, spec.key)
    assert cached.is_relative_to(tmp_path)
    assert text_runtime.text_tower_dir(spec, spec.key, copy) == cached
    assert text_runtime.text_tower_dir(None, spec.key, copy) == copy  # the model's spec cannot be read: the copy
    assert text_runtime.text_tower_dir(spec, "another-model", copy) is None  # never another model's tower


class _Fake:
    def __init__(self, kind: str, *args, **kwargs) -> None:
        self.kind, self.kwargs = kind, kwargs


@pytest.fixture
def fakes(monkeypatch):
    """Both runtimes as fakes; the ONNX one answers only where the folder has a graph record."""
    have_graph: dict[str, bool] = {"yes": True}
    monkeypatch.setattr(ott, "read_record", lambda folder, key=None: {"key": key} if have_graph["yes"] else None)
    monkeypatch.setattr(ott.OnnxTextTower, "load",
                        classmethod(lambda cls, folder, key, threads=None: _Fake("onnx", threads=threads)
                                    if have_graph["yes"] else None))
    monkeypatch.setattr(NumpyTextEncoder, "load", classmethod(lambda cls, folder, key: _Fake("numpy")))
    monkeypatch.setattr(text_runtime, "_numpy_weights", lambda folder: have_graph["arrays"])
    have_graph["arrays"] = True
    return have_graph


def test_cold_runs_numpy_warm_runs_onnx_and_either_may_be_asked_for(fakes, tmp_path: Path, monkeypatch) -> None:
    assert text_runtime.COLD_TEXT_RUNTIME == "numpy" and text_runtime.WARM_TEXT_RUNTIME == "onnx"
    assert text_runtime.load_text_encoder(tmp_path, "k").kind == "numpy"
    warm = text_runtime.load_text_encoder(tmp_path, "k", warm=True, threads=1)
    assert warm.kind == "onnx" and warm.kwargs["threads"] == 1
    assert text_runtime.load_text_encoder(tmp_path, "k", runtime="onnx").kind == "onnx"
    assert text_runtime.load_text_encoder(tmp_path, "k", runtime="numpy", warm=True).kind == "numpy"
    fakes["yes"] = False  # no graph (and no spec to make one from): NumPy answers, the same embeddings
    assert text_runtime.load_text_encoder(tmp_path, "k", warm=True).kind == "numpy"
    fakes["yes"], fakes["arrays"] = True, False  # a tower made only as a graph (no NumPy arrays): ORT, cold too
    assert text_runtime.load_text_encoder(tmp_path, "k").kind == "onnx"
    fakes["yes"] = False  # neither: whatever NumPyTextEncoder.load makes of the folder (None where nothing)
    assert text_runtime.load_text_encoder(tmp_path, "k").kind == "numpy"
    with pytest.raises(ClipsearchError) as exc:
        text_runtime.load_text_encoder(tmp_path, "k", runtime="tensorflow")
    assert exc.value.param == "text_runtime"
    monkeypatch.setenv("CLIPSEARCH_TEXT_RUNTIME", "numpy")  # the environment decides for every process
    fakes["yes"], fakes["arrays"] = True, True
    assert text_runtime.load_text_encoder(tmp_path, "k", warm=True).kind == "numpy"


def test_a_warm_process_makes_a_missing_graph_once_unless_refused(fakes, tmp_path: Path, monkeypatch) -> None:
    fakes["yes"] = False
    made: list[Path] = []
    monkeypatch.setattr(text_runtime, "_torch", lambda spec, device: "torch model")
    import clipsearch.encoders.onnx_text_export as ote

    def export(encoder, folder):
        made.append(folder)
        fakes["yes"] = True
        return 0.0

    monkeypatch.setattr(ote, "export_text_onnx", export)
    spec = parse_spec("clipsearch-tiny")
    stages: list[str] = []
    assert text_runtime.load_text_encoder(tmp_path, spec.key, warm=True, spec=spec, stage=stages.append).kind == "onnx"
    assert made == [tmp_path] and "once per model" in stages[0]
    fakes["yes"] = False
    (tmp_path / ott.REFUSED).write_text("the exporter failed")
    assert text_runtime.load_text_encoder(tmp_path, spec.key, warm=True, spec=spec).kind == "numpy"
    assert made == [tmp_path]  # a refusal is not retried
