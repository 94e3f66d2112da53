"""A torch-free CLIP text encoder for cold queries.

`import torch` alone costs ~3.5 s on a 2-core machine and open_clip another ~5 s; building the model
more. A text query needs none of it: the store keeps the text tower's weights as plain .npy files
(memory-mapped, so only the token rows a query uses are read) and this module runs the forward pass in
NumPy. Because the text transformer is causal and pools at the end-of-text token, positions after it
cannot change the result: we compute only the real tokens, not all 77, which is exact and fast.

Exported: the standard open_clip text tower (TextTransformer with argmax pooling and the CLIP BPE
tokenizer), the offline model's MiniLM (BERT, mean pooling, WordPiece via `tokenizers`) and Chinese-CLIP's
Chinese RoBERTa (BERT, the CLS token through the projection, its WordPiece via `tokenizers`) and the
multilingual towers (XLM-R, NLLB: `numpy_hf_text`); any other model keeps the torch path. Tests check both
paths agree to 1e-5.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from clipsearch.encoders.bpe_tokenizer import BPETokenizer
from clipsearch.encoders.numpy_ops import attention, gelu, layer_norm
from clipsearch.encoders.text_folder import CONFIG, FORMAT, VOCAB


def stored_key(folder: Path) -> str | None:
    """The model key of the text tower in `folder` (None when there is none of this format): a cheap check."""
    try:
        config = json.loads((Path(folder) / CONFIG).read_text())
    except (OSError, ValueError):
        return None
    return config.get("key") if isinstance(config, dict) and config.get("format") == FORMAT else None


class NumpyTextEncoder:
    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.config = json.loads((self.folder / CONFIG).read_text())
        self.key = self.config["key"]
        self.family = self.config.get("family", "clip")
        if self.family == "bert":
            from tokenizers import Tokenizer

            self.wordpiece = Tokenizer.from_file(str(self.folder / "tokenizer.json"))
            self.wordpiece.no_padding()
            self.wordpiece.enable_truncation(self.config["context_length"])
        elif self.family == "hf":  # XLM-R, NLLB: the multilingual open_clip models' Hugging Face towers
            from clipsearch.encoders.numpy_hf_text import HFTextTower

            self.hf = HFTextTower(self.folder, self.config, self.w)
        else:
            self.tokenizer = BPETokenizer(self.folder / VOCAB, self.config["context_length"])
        self._w: dict[str, np.ndarray] = {}

    @classmethod
    def load(cls, folder: Path, key: str) -> Any:
        """The text tower in `folder` when it is `key`'s (None otherwise): this NumPy tower, or a published
        export's ONNX graph (`onnx_text`, family "onnx")."""
        try:
            if json.loads((Path(folder) / CONFIG).read_text()).get("family") == "onnx":
                from clipsearch.encoders.onnx_text import OnnxTextEncoder

                return OnnxTextEncoder.load(folder, key)
            enc = cls(folder)
        except (OSError, ValueError, KeyError, AttributeError):
            return None
        return enc if enc.config.get("format") == FORMAT and enc.key == key else None

    def w(self, name: str) -> np.ndarray:
        """Weights are memory-mapped on first use: the 100 MB token table is read a few rows a query, and the
        layers' matrices straight from the page cache, not copied into fresh memory first (a cold query of
        ViT-B-32's tower: 0.08 s of CPU against 0.14 s reading them; .npy data is 64-byte aligned)."""
        if name not in self._w:
            self._w[name] = np.load(self.folder / f"{name}.npy", mmap_mode="r")
        return self._w[name]

    # Several texts run as one packed sequence: every layer but attention works token by token, so their
    # tokens are stacked into one matrix (one matrix product per weight for all texts, no padding) and
    # attention runs per text on its own rows. Exact: the same numbers as one text at a time.
    def _encode_clip(self, token_lists: list[list[int]]) -> np.ndarray:
        lens = [int(np.argmax(t)) + 1 for t in token_lists]  # open_clip pools at the first end-of-text
        bounds = np.cumsum([0] + lens)
        x = np.concatenate([np.asarray(self.w("token_embedding")[t[:n]], dtype=np.float32)
                            + self.w("positional_embedding")[:n] for t, n in zip(token_lists, lens, strict=False)])
        masks = [np.triu(np.full((n, n), -np.inf, dtype=np.float32), 1) for n in lens]
        d = x.shape[1]
        for i, cfg in enumerate(self.config["blocks"]):
            p = f"block{i}."
            h = layer_norm(x, self.w(p + "ln_1.weight"), self.w(p + "ln_1.bias"), cfg["eps"])
            qkv = h @ self.w(p + "in_proj_weight").T + self.w(p + "in_proj_bias")
            attn = np.concatenate([attention(qkv[a:b, :d], qkv[a:b, d:2 * d], qkv[a:b, 2 * d:], cfg["heads"], m)
                                   for a, b, m in zip(bounds[:-1], bounds[1:], masks, strict=False)])
            attn = attn @ self.w(p + "out_proj.weight").T + self.w(p + "out_proj.bias")
            x = x + (attn * self.w(p + "ls_1") if cfg["layer_scale"] else attn)
            h = layer_norm(x, self.w(p + "ln_2.weight"), self.w(p + "ln_2.bias"), cfg["eps"])
            h = h @ self.w(p + "c_fc.weight").T + self.w(p + "c_fc.bias")
            h = h / (1.0 + np.exp(-1.702 * h)) if cfg["quick_gelu"] else gelu(h)
            h = h @ self.w(p + "c_proj.weight").T + self.w(p + "c_proj.bias")
            x = x + (h * self.w(p + "ls_2") if cfg["layer_scale"] else h)
        pooled = layer_norm(x[bounds[1:] - 1], self.w("ln_final.weight"), self.w("ln_final.bias"),
                             self.config["ln_final_eps"])
        if self.config["has_projection"]:
            pooled = pooled @ self.w("text_projection")
            if self.config["projection_bias"]:
                pooled = pooled + self.w("text_projection_bias")
        return pooled.astype(np.float32)

    def _encode_bert(self, texts: list[str]) -> np.ndarray:
        """BERT encoder over the real tokens (no padding, so no mask is needed), then mean pooling (MiniLM) or the
        CLS token through the text projection (Chinese-CLIP)."""
        ids = [self.wordpiece.encode(t).ids for t in texts]
        bounds = np.cumsum([0] + [len(i) for i in ids])
        p = "bert.embeddings."
        x = (np.concatenate([np.asarray(self.w(p + "word_embeddings.weight")[i], dtype=np.float32)
                             + self.w(p + "position_embeddings.weight")[:len(i)] for i in ids])
             + self.w(p + "token_type_embeddings.weight")[0])
        eps = float(self.config["eps"])
        x = layer_norm(x, self.w(p + "LayerNorm.weight"), self.w(p + "LayerNorm.bias"), eps)

        def dense(h: np.ndarray, name: str) -> np.ndarray:
            return h @ self.w(name + ".weight").T + self.w(name + ".bias")

        for i in range(self.config["layers"]):
            p = f"bert.encoder.layer.{i}."
            q, k, v = (dense(x, p + f"attention.self.{m}") for m in ("query", "key", "value"))
            ctx = np.concatenate([attention(q[a:b], k[a:b], v[a:b], self.config["heads"])
                                  for a, b in zip(bounds[:-1], bounds[1:], strict=False)])
            norm = p + "attention.output.LayerNorm."
            x = layer_norm(x + dense(ctx, p + "attention.output.dense"), self.w(norm + "weight"),
                            self.w(norm + "bias"), eps)
            h = gelu(dense(x, p + "intermediate.dense"))
            x = layer_norm(x + dense(h, p + "output.dense"), self.w(p + "output.LayerNorm.weight"),
                            self.w(p + "output.LayerNorm.bias"), eps)
        if self.config.get("pooling", "mean") == "cls":
            pooled = x[bounds[:-1]]
        else:
            pooled = np.stack([x[a:b].mean(axis=0) for a, b in zip(bounds[:-1], bounds[1:], strict=False)])
        if self.config.get("has_projection"):
            pooled = pooled @ self.w("text_projection")
        return pooled.astype(np.float32)

    def encode_texts(self, texts: Iterable[str], language: str | None = None) -> np.ndarray:
        """L2-normalised embeddings; `language`: the texts' code for a tower told it (NLLB), else detected."""
        texts = list(texts)
        if self.family == "hf":
            out = self.hf.encode(texts, language)
        elif self.family == "bert":
            out = self._encode_bert(texts)
        else:
            out = self._encode_clip([self.tokenizer(t) for t in texts])
        return out / np.linalg.norm(out, axis=1, keepdims=True)


class CoalescingTextEncoder:
    """Lets concurrent `encode_texts` calls (a server's request threads) share packed forward passes.

    No thread and no timer: a caller that finds fewer than `parallel` passes running (default: one per CPU)
    runs at once; callers that arrive while they run queue up, and when a pass finishes the next of them
    runs everything queued as one batch. A batch of four short texts costs ~1.6x one text (the weights are
    read once), so under load each text costs less, and alone a call costs what it did. Results are exactly
    the wrapped encoder's.
    """

    class _Call:
        def __init__(self, texts: list[str]) -> None:
            self.texts = texts
            self.done = threading.Event()
            self.lead = False
            self.result: np.ndarray | None = None
            self.error: BaseException | None = None

    def __init__(self, inner: NumpyTextEncoder, max_texts: int = 64, parallel: int | None = None) -> None:
        import os

        self.inner = inner
        self.max_texts = max_texts
        self.parallel = max(1, parallel or os.cpu_count() or 1)  # batches running at once (BLAS: 1 thread each)
        self._lock = threading.Lock()
        self._queue: list[CoalescingTextEncoder._Call] = []
        self._running = 0

    def __getattr__(self, name: str) -> object:  # key, family, config...: the wrapped encoder's
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def encode_texts(self, texts: Iterable[str], language: str | None = None) -> np.ndarray:
        if language is not None:  # a code given for these texts only: not packed with others' texts
            return self.inner.encode_texts(texts, language)
        call = self._Call(list(texts))
        with self._lock:
            self._queue.append(call)
            call.lead = self._running < self.parallel
            self._running += call.lead
        if not call.lead:
            call.done.wait()  # answered by another caller's batch, or asked to run the next batch
        if call.lead:
            self._run_batch()
        if call.error is not None:
            raise call.error
        assert call.result is not None
        return call.result

    def _run_batch(self) -> None:
        with self._lock:
            batch: list[Any] = []
            count = 0
            while self._queue and (not batch or count + len(self._queue[0].texts) <= self.max_texts):
                batch.append(self._queue.pop(0))
                count += len(batch[-1].texts)
        try:
            out = self.inner.encode_texts([t for c in batch for t in c.texts])
            start = 0
            for c in batch:
                c.result, start = out[start:start + len(c.texts)], start + len(c.texts)
        except BaseException as exc:  # every caller of the batch gets the error
            for c in batch:
                c.error = exc
        with self._lock:
            if self._queue:
                self._queue[0].lead = True  # hand over: the next caller runs what queued meanwhile
                self._queue[0].done.set()
            else:
                self._running -= 1
        for c in batch:
            c.lead = False
            c.done.set()
