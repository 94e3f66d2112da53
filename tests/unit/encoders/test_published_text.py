"""A published text graph is fed as its publisher feeds it: ids padded with the tokenizer's pad token to the context
length, M-CLIP's attention mask beside them, one text at a time where the graph's batch is fixed at one, NLLB-CLIP's
FLORES-200 code before the text (given, or detected from its script), SigLIP's canonical cleaning. The graphs here
echo their inputs (onnx.helper, no torch), so the test sees exactly what the tower fed them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from clipsearch.encoders.numpy_text import NumpyTextEncoder
from clipsearch.encoders.onnx_text import OnnxTextEncoder
from clipsearch.encoders.text_folder import CONFIG, FORMAT

CONTEXT = 6
VOCAB = {"<pad>": 0, "<unk>": 1, "a": 2, "red": 3, "circle": 4, "zho_Hans": 5, "eng_Latn": 6, "红色": 7, "hello": 8}


def echo_graph(path: Path, inputs: list[str], batch: int | str) -> None:
    """embedding = the int32 inputs as floats, side by side: [batch, CONTEXT * len(inputs)]."""
    import onnx
    from onnx import TensorProto, helper

    nodes, casts = [], []
    for name in inputs:
        nodes.append(helper.make_node("Cast", [name], [name + "_f"], to=TensorProto.FLOAT))
        casts.append(name + "_f")
    nodes.append(helper.make_node("Concat", casts, ["embedding"], axis=1))
    graph = helper.make_graph(nodes, "echo",
                              [helper.make_tensor_value_info(n, TensorProto.INT32, [batch, CONTEXT]) for n in inputs],
                              [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))


def tower(tmp_path: Path, inputs: list[str], batch: int | str = 1, **config: object) -> OnnxTextEncoder:
    from tokenizers import Tokenizer, models, pre_tokenizers

    tok = Tokenizer(models.WordLevel(VOCAB, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.add_special_tokens(["zho_Hans", "eng_Latn"])
    tok.save(str(tmp_path / "tokenizer.json"))
    echo_graph(tmp_path / "textual.onnx", inputs, batch)
    (tmp_path / CONFIG).write_text(json.dumps({
        "format": FORMAT, "family": "onnx", "key": "immich:echo@x", "model": "textual.onnx",
        "context_length": CONTEXT, "tokenizer": {"kind": "hf", "pad_token": "<pad>"}, **config}))
    loaded = NumpyTextEncoder.load(tmp_path, "immich:echo@x")  # a store's text_encoder/ loads it like any tower
    assert isinstance(loaded, OnnxTextEncoder) and NumpyTextEncoder.load(tmp_path, "other") is None
    return loaded


def unit(ids: list[float]) -> np.ndarray:
    v = np.asarray(ids, np.float32)
    return v / np.linalg.norm(v)


def test_ids_padded_to_the_context_one_text_at_a_time(tmp_path: Path) -> None:
    enc = tower(tmp_path, ["text"], batch=1)
    out = enc.encode_texts(["a  red\ncircle", "hello"])
    np.testing.assert_allclose(out, [unit([2, 3, 4, 0, 0, 0]), unit([8, 0, 0, 0, 0, 0])], atol=1e-6)


def test_mclip_gets_the_attention_mask(tmp_path: Path) -> None:
    enc = tower(tmp_path, ["input_ids", "attention_mask"], batch="batch")
    np.testing.assert_allclose(enc.encode_texts(["a red"]), [unit([2, 3, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0])], atol=1e-6)


@pytest.mark.parametrize(("text", "language", "ids"), [
    ("红色", None, [5, 7]),  # detected from the script
    ("hello", None, [6, 8]),
    ("hello", "zho_Hans", [5, 8]),  # given
])
def test_nllb_gets_the_language_code_first(tmp_path: Path, text: str, language: str | None, ids: list[int]) -> None:
    enc = tower(tmp_path, ["text"], language_code=True)
    np.testing.assert_allclose(enc.encode_texts([text], language=language), [unit(ids + [0] * (CONTEXT - 2))],
                               atol=1e-6)


def test_siglip_text_is_cleaned_canonically(tmp_path: Path) -> None:
    enc = tower(tmp_path, ["text"], clean="canonicalize")
    np.testing.assert_allclose(enc.encode_texts(["A Red, circle!"]), [unit([2, 3, 4, 0, 0, 0])], atol=1e-6)
