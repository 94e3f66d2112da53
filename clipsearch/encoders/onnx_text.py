"""The text tower of a published ONNX export (`published`): its textual graph on ONNX Runtime, no torch.

A store's ``text_encoder/`` holds it like the NumPy tower (config.json with family "onnx", the graph as
``textual.onnx`` and the tokenizer), so a cold query loads it the same way (`numpy_text.NumpyTextEncoder.load`
hands such a folder here). The tokenizer is what the publisher's own runtime uses: immich's Hugging Face
``tokenizer.json`` (through `tokenizers`, padded with its pad token to the context length; M-CLIP's graph also
takes the attention mask), or open_clip's BPE for rclip (zero-padded). Graphs with a fixed batch of one (immich
exports them so) run one text at a time. Embeddings come back L2-normalised.
"""

from __future__ import annotations

import json
import string
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from clipsearch.encoders.text_folder import CONFIG, FORMAT, VOCAB

_PUNCTUATION = str.maketrans("", "", string.punctuation)


class OnnxTextEncoder:
    """`encode_texts` over a published textual graph; `key` names the model it belongs to."""

    family = "onnx"

    def __init__(self, folder: Path, threads: int | None = None) -> None:
        from clipsearch.encoders.onnx_encoder import session

        self.folder = Path(folder)
        self.config: dict[str, Any] = json.loads((self.folder / CONFIG).read_text())
        self.key = str(self.config["key"])
        self.context_length = int(self.config["context_length"])
        self.clean = str(self.config.get("clean", "whitespace"))
        self.language_code = bool(self.config.get("language_code"))
        tok = self.config["tokenizer"]
        if tok["kind"] == "hf":
            from tokenizers import Tokenizer

            self.hf: Any = Tokenizer.from_file(str(self.folder / "tokenizer.json"))
            pad_token = tok.get("pad_token")
            pad_id = self.hf.token_to_id(pad_token) if pad_token else None
            if pad_id is not None:
                self.hf.enable_padding(length=self.context_length, pad_id=pad_id, pad_token=pad_token)
            self.hf.enable_truncation(max_length=self.context_length)
            self.bpe = None
        else:
            from clipsearch.encoders.bpe_tokenizer import BPETokenizer

            self.hf = None
            self.bpe = BPETokenizer(self.folder / VOCAB, self.context_length)
        self.session = session(self.folder / str(self.config.get("model", "textual.onnx")), ["CPUExecutionProvider"],
                               threads)
        inputs = self.session.get_inputs()
        self.inputs = [i.name for i in inputs]
        self.dtype = np.int64 if inputs[0].type == "tensor(int64)" else np.int32
        batch = inputs[0].shape[0] if inputs[0].shape else None
        self.batch = batch if isinstance(batch, int) and batch > 0 else None

    @classmethod
    def load(cls, folder: Path, key: str) -> OnnxTextEncoder | None:
        try:
            enc = cls(folder)
        except (OSError, ValueError, KeyError):
            return None
        return enc if enc.config.get("format") == FORMAT and enc.key == key else None

    def _prepare(self, text: str, language: str | None) -> str:
        text = " ".join(text.split())
        if self.clean == "canonicalize":  # SigLIP's open_clip tokenizer strips punctuation and lowercases
            text = text.translate(_PUNCTUATION).lower()
        if self.language_code:  # NLLB-CLIP: the FLORES-200 code of the text first, as immich passes it
            from clipsearch.encoders.languages import nllb_language

            text = f"{language or nllb_language(text)}{text}"
        return text

    def tokenize(self, texts: list[str], language: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Token ids and attention mask, (texts, context_length) each."""
        ids = np.zeros((len(texts), self.context_length), dtype=self.dtype)
        mask = np.zeros_like(ids)
        for row, text in enumerate(texts):
            text = self._prepare(text, language)
            if self.hf is not None:
                enc = self.hf.encode(text)
                tokens, attention = enc.ids, enc.attention_mask
            else:
                assert self.bpe is not None
                tokens = self.bpe(text)
                attention = [1] * len(tokens)
            n = min(len(tokens), self.context_length)
            ids[row, :n], mask[row, :n] = tokens[:n], attention[:n]
        return ids, mask

    def encode_texts(self, texts: Iterable[str], language: str | None = None) -> np.ndarray:
        texts = list(texts)
        ids, mask = self.tokenize(texts, language)
        step = self.batch or max(len(texts), 1)
        parts = []
        for start in range(0, len(texts), step):
            feeds = {self.inputs[0]: ids[start:start + step]}
            if len(self.inputs) > 1:  # M-CLIP: input_ids and attention_mask
                feeds[self.inputs[1]] = mask[start:start + step]
            rows = len(feeds[self.inputs[0]])
            parts.append(np.asarray(self.session.run(None, feeds)[0], dtype=np.float32).reshape(rows, -1))
        out = np.concatenate(parts) if parts else np.zeros((0, int(self.config.get("embed_dim", 0))), np.float32)
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
