"""The text tower on ONNX Runtime: what a warm process (the server) embeds query text with.

A text tower folder (`text_encoder/` in a model's export cache folder, see `onnx_encoder`) holds the tokenizer
(`config.json` + the CLIP BPE vocabulary or a `tokenizer.json`), the NumPy weights (`numpy_text`) and, written
by `onnx_text_export`, the same tower as one ONNX graph:

    text.onnx        fp32: token ids (batch, tokens) [+ attention_mask] → L2-normalised embeddings (batch, dim)
    text.int8.onnx   its dynamic int8 quantisation (MatMul/Gemm), made on first use (no torch)
    onnx.json        the graph's record: format, model key, input names, pad id, the check against torch
    onnx.refused     instead of the graph: why it was refused (the exporter failed, or it disagreed with torch)

The sequence axis is dynamic: a batch is padded only to its longest real sequence (not to the context length).
For CLIP that is exact — the causal mask keeps the tokens after the end-of-text token from reaching it — and for
a BERT the attention mask does the same. So one text costs what its tokens cost, and ORT, NumPy and torch give
the same embedding (max abs diff <= 1e-5, tested).

Any tower with a tokenizer that `tokenizers` reads (XLM-R, NLLB, …) fits: write `tokenizer.json`, a
`config.json` ({"format": 1, "family": "bert", "key": ..., "context_length": ...}), a graph whose inputs are
`input_ids` (int64) and optionally `attention_mask` (int64) and whose output is the embedding, and `onnx.json`
(`write_record`). A caller with its own tokenization (NLLB's language token) passes `tokenize`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

ONNX_FORMAT = 1
TEXT_FP32 = "text.onnx"
TEXT_INT8 = "text.int8.onnx"
RECORD = "onnx.json"
REFUSED = "onnx.refused"  # why no graph could be made for this tower (then NumPy answers)
INPUT_IDS = "input_ids"
ATTENTION_MASK = "attention_mask"
TEXT_PRECISIONS = ("fp32", "int8")
# Query text embeds in fp32. Dynamic int8 of the text tower ranks differently too often: its top-10 agreement
# with fp32 over 192 views of skimage.data photos was 0.943 (offline-mini) and 0.952 (ViT-B-32), below the 0.99
# it needs (bench/text_tower.py; README "The text tower"); and the CLI and the server must rank alike. So int8
# stays a measured option, never the default.
DEFAULT_TEXT_PRECISION = "fp32"

Tokenize = Callable[[str], list[int]]


def read_record(folder: Path, key: str | None = None) -> dict[str, Any] | None:
    """The ONNX record of a text tower folder (None when there is no usable graph, or it is another model's)."""
    try:
        record = json.loads((Path(folder) / RECORD).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("format") != ONNX_FORMAT or (key and record.get("key") != key) \
            or not (Path(folder) / TEXT_FP32).is_file():
        return None
    return record


def write_record(folder: Path, key: str, inputs: list[str], pad_id: int = 0, **facts: Any) -> None:
    """Record a text graph in `folder` (atomically): what `OnnxTextTower` checks before trusting it."""
    from clipsearch.fsutil import atomic_write_text

    record = {"format": ONNX_FORMAT, "key": key, "inputs": inputs, "pad_id": pad_id, **facts}
    atomic_write_text(Path(folder) / RECORD, json.dumps(record, indent=2))


def tokenizer_of(folder: Path, config: dict[str, Any]) -> Tokenize:
    """Text → token ids as the tower was trained: the CLIP BPE (with start/end tokens, cut at the context
    length) for family "clip", else the folder's `tokenizer.json` (special tokens added, truncated)."""
    if config.get("family", "clip") == "clip":
        from clipsearch.encoders.bpe_tokenizer import BPETokenizer
        from clipsearch.encoders.text_folder import VOCAB

        return BPETokenizer(Path(folder) / VOCAB, int(config["context_length"]))
    from tokenizers import Tokenizer

    wordpiece = Tokenizer.from_file(str(Path(folder) / "tokenizer.json"))
    wordpiece.no_padding()
    wordpiece.enable_truncation(int(config["context_length"]))
    return lambda text: wordpiece.encode(text).ids


def write_int8(folder: Path) -> Path:
    """Dynamic int8 quantisation of `text.onnx` (weights int8 per channel), written beside it once."""
    from clipsearch.encoders.onnx_encoder import quantize_once

    return quantize_once(Path(folder) / TEXT_FP32, Path(folder) / TEXT_INT8)


class OnnxTextTower:
    """`encode_texts(texts) -> (n, dim)` float32, L2-normalised, from the text graph in `folder`.

    `threads`: ONNX Runtime's threads per call (a server runs requests in parallel threads, one each).
    `tokenize`: text → ids, for a tower whose tokenizer is not in the folder's config (default: `tokenizer_of`).
    Thread-safe: concurrent calls run concurrently (ONNX Runtime releases the GIL)."""

    runtime = "onnx"

    def __init__(self, folder: Path, precision: str = DEFAULT_TEXT_PRECISION, threads: int | None = None,
                 tokenize: Tokenize | None = None) -> None:
        from clipsearch.encoders.onnx_encoder import session
        from clipsearch.errors import ClipsearchError

        if precision not in TEXT_PRECISIONS:
            raise ClipsearchError(f"text precision {precision!r} is not one of {', '.join(TEXT_PRECISIONS)}")
        self.folder = Path(folder)
        self.config = json.loads((self.folder / "config.json").read_text())
        self.key = str(self.config["key"])
        self.family = self.config.get("family", "clip")
        record = read_record(self.folder, self.key)
        if record is None:
            raise ClipsearchError(f"no text graph of model {self.key} in {self.folder}",
                                  "delete that folder and run again: the export is made once more")
        self.record = record
        self.precision = precision
        self.pad_id = int(record.get("pad_id", 0))
        self.tokenize = tokenize or tokenizer_of(self.folder, self.config)
        path = self.folder / TEXT_FP32 if precision == "fp32" else write_int8(self.folder)
        self.session = session(path, ["CPUExecutionProvider"], threads)
        self.inputs = [i.name for i in self.session.get_inputs()]

    @classmethod
    def load(cls, folder: Path, key: str, precision: str = DEFAULT_TEXT_PRECISION, threads: int | None = None
             ) -> OnnxTextTower | None:
        """The encoder when `folder` holds a text graph of model `key`, else None."""
        if read_record(folder, key) is None:
            return None
        try:
            enc = cls(folder, precision, threads)
        except (OSError, ValueError, KeyError):
            return None
        return enc if enc.key == key else None

    def feeds(self, token_lists: list[list[int]]) -> dict[str, np.ndarray]:
        """The graph's inputs for `token_lists`: ids padded to the longest list, and its attention mask."""
        width = max(1, max(len(t) for t in token_lists))
        ids = np.full((len(token_lists), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(token_lists), width), dtype=np.int64)
        for row, tokens in enumerate(token_lists):
            ids[row, :len(tokens)] = tokens
            mask[row, :len(tokens)] = 1
        given = {INPUT_IDS: ids, ATTENTION_MASK: mask}
        return {name: given[name] for name in self.inputs}

    def encode_tokens(self, token_lists: list[list[int]]) -> np.ndarray:
        out = self.session.run(None, self.feeds(token_lists))[0].astype(np.float32, copy=False)
        return out / np.linalg.norm(out, axis=1, keepdims=True)

    def encode_texts(self, texts: Iterable[str], language: str | None = None) -> np.ndarray:
        """L2-normalised embeddings (`language` is for towers told it, as NLLB's: these towers are not)."""
        return self.encode_tokens([self.tokenize(t) for t in texts])
