"""A torch-free CLIP text encoder for cold queries.

`import torch` alone costs ~3.5 s on a 2-core machine and open_clip another ~5 s; building the model
more. A text query needs none of it: the store keeps the text tower's weights as plain .npy files
(memory-mapped, so only the token rows a query uses are read) and this module runs the forward pass in
NumPy. Because the text transformer is causal and pools at the end-of-text token, positions after it
cannot change the result: we compute only the real tokens, not all 77, which is exact and fast.

Exported: the standard open_clip text tower (TextTransformer with argmax pooling and the CLIP BPE
tokenizer) and the offline model's MiniLM (BERT, mean pooling, WordPiece via `tokenizers`); any other
model keeps the torch path. Tests check both paths agree to 1e-5.
"""

from __future__ import annotations

import functools
import gzip
import html
import json
import math
from pathlib import Path
from typing import Iterable

import numpy as np

FORMAT = 1
CONFIG = "config.json"
VOCAB = "bpe_simple_vocab_16e6.txt.gz"


# --- tokenizer (the CLIP BPE, as in open_clip.tokenizer.SimpleTokenizer with clean='lower') ------------
@functools.lru_cache()
def _bytes_to_unicode() -> dict[int, str]:
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


class BPETokenizer:
    def __init__(self, vocab_path: Path, context_length: int) -> None:
        import regex

        merges_text = gzip.open(vocab_path).read().decode("utf-8").split("\n")
        merges = [tuple(m.split()) for m in merges_text[1:49152 - 256 - 2 + 1]]
        vocab = list(_bytes_to_unicode().values())
        vocab = vocab + [v + "</w>" for v in vocab] + ["".join(m) for m in merges]
        vocab += ["<start_of_text>", "<end_of_text>"]
        self.encoder = {tok: i for i, tok in enumerate(vocab)}
        self.ranks = {m: i for i, m in enumerate(merges)}
        self.sot, self.eot = self.encoder["<start_of_text>"], self.encoder["<end_of_text>"]
        self.context_length = context_length
        self.pat = regex.compile(r"""<start_of_text>|<end_of_text>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""",
                                 regex.IGNORECASE)
        self.cache: dict[str, list[str]] = {}

    def _bpe(self, token: str) -> list[str]:
        if token in self.cache:
            return self.cache[token]
        word = list(token[:-1]) + [token[-1] + "</w>"]
        while len(word) > 1:
            pairs = {(a, b) for a, b in zip(word, word[1:])}
            best = min(pairs, key=lambda p: self.ranks.get(p, float("inf")))
            if best not in self.ranks:
                break
            merged: list[str] = []
            i = 0
            while i < len(word):
                if i < len(word) - 1 and (word[i], word[i + 1]) == best:
                    merged.append(word[i] + word[i + 1])
                    i += 2
                else:
                    merged.append(word[i])
                    i += 1
            word = merged
        self.cache[token] = word
        return word

    def encode(self, text: str) -> list[int]:
        import ftfy

        text = " ".join(html.unescape(html.unescape(ftfy.fix_text(text))).strip().split()).lower()
        byte_encoder = _bytes_to_unicode()
        ids: list[int] = []
        for token in self.pat.findall(text):
            if token in ("<start_of_text>", "<end_of_text>"):  # special tokens typed in the text, as open_clip
                ids.append(self.encoder[token])
                continue
            token = "".join(byte_encoder[b] for b in token.encode("utf-8"))
            ids.extend(self.encoder[t] for t in self._bpe(token))
        return ids

    def __call__(self, text: str) -> list[int]:
        tokens = [self.sot] + self.encode(text) + [self.eot]
        if len(tokens) > self.context_length:
            tokens = tokens[: self.context_length]
            tokens[-1] = self.eot
        return tokens


# --- forward -------------------------------------------------------------------------------------------
def _erf(x: np.ndarray) -> np.ndarray:
    """Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7): NumPy has no erf, and SciPy is not a dependency."""
    sign = np.sign(x)
    a = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * a)
    y = 1.0 - (((((1.061405429 * t - 1.453152027) * t) + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t * np.exp(-a * a)
    return sign * y


def _gelu(h: np.ndarray) -> np.ndarray:
    return 0.5 * h * (1.0 + _erf(h * (1.0 / math.sqrt(2.0))))  # python floats keep float32


def _attention(q: np.ndarray, k: np.ndarray, v: np.ndarray, heads: int, mask: np.ndarray | None = None) -> np.ndarray:
    """Multi-head scaled dot-product attention on (tokens, width) projections; returns (tokens, width)."""
    n, d = q.shape
    dh = d // heads
    q, k, v = (t.reshape(n, heads, dh).transpose(1, 0, 2) for t in (q, k, v))
    scores = (q * (1.0 / math.sqrt(dh))) @ k.transpose(0, 2, 1)
    if mask is not None:
        scores = scores + mask
    scores = np.exp(scores - scores.max(-1, keepdims=True))
    scores /= scores.sum(-1, keepdims=True)
    return (scores @ v).transpose(1, 0, 2).reshape(n, d)


def _layer_norm(x: np.ndarray, w: np.ndarray, b: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * w + b  # eps is a python float: stays float32


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
        else:
            self.tokenizer = BPETokenizer(self.folder / VOCAB, self.config["context_length"])
        self._w: dict[str, np.ndarray] = {}

    @classmethod
    def load(cls, folder: Path, key: str) -> "NumpyTextEncoder | None":
        try:
            enc = cls(folder)
        except (OSError, ValueError, KeyError):
            return None
        return enc if enc.config.get("format") == FORMAT and enc.key == key else None

    def w(self, name: str) -> np.ndarray:
        """Weights load on first use; the 100 MB token table stays memory-mapped (a query reads a few rows)."""
        if name not in self._w:
            mmap = "r" if name in ("token_embedding", "bert.embeddings.word_embeddings.weight") else None
            self._w[name] = np.load(self.folder / f"{name}.npy", mmap_mode=mmap)
        return self._w[name]

    def _encode_one(self, tokens: list[int]) -> np.ndarray:
        n = int(np.argmax(tokens)) + 1  # open_clip pools at the first end-of-text; later tokens cannot matter
        tokens = tokens[:n]
        x = np.asarray(self.w("token_embedding")[tokens], dtype=np.float32) + self.w("positional_embedding")[:n]
        mask = np.triu(np.full((n, n), -np.inf, dtype=np.float32), 1)
        for i, cfg in enumerate(self.config["blocks"]):
            p = f"block{i}."
            h = _layer_norm(x, self.w(p + "ln_1.weight"), self.w(p + "ln_1.bias"), cfg["eps"])
            qkv = h @ self.w(p + "in_proj_weight").T + self.w(p + "in_proj_bias")
            d = x.shape[1]
            attn = _attention(qkv[:, :d], qkv[:, d:2 * d], qkv[:, 2 * d:], cfg["heads"], mask)
            attn = attn @ self.w(p + "out_proj.weight").T + self.w(p + "out_proj.bias")
            x = x + (attn * self.w(p + "ls_1") if cfg["layer_scale"] else attn)
            h = _layer_norm(x, self.w(p + "ln_2.weight"), self.w(p + "ln_2.bias"), cfg["eps"])
            h = h @ self.w(p + "c_fc.weight").T + self.w(p + "c_fc.bias")
            h = h / (1.0 + np.exp(-1.702 * h)) if cfg["quick_gelu"] else _gelu(h)
            h = h @ self.w(p + "c_proj.weight").T + self.w(p + "c_proj.bias")
            x = x + (h * self.w(p + "ls_2") if cfg["layer_scale"] else h)
        pooled = _layer_norm(x[n - 1], self.w("ln_final.weight"), self.w("ln_final.bias"), self.config["ln_final_eps"])
        if self.config["has_projection"]:
            pooled = pooled @ self.w("text_projection")
            if self.config["projection_bias"]:
                pooled = pooled + self.w("text_projection_bias")
        return pooled.astype(np.float32)

    def _encode_bert(self, text: str) -> np.ndarray:
        """BERT encoder + mean pooling over the real tokens (no padding, so no mask is needed)."""
        ids = self.wordpiece.encode(text).ids
        n = len(ids)
        p = "bert.embeddings."
        x = (np.asarray(self.w(p + "word_embeddings.weight")[ids], dtype=np.float32)
             + self.w(p + "position_embeddings.weight")[:n] + self.w(p + "token_type_embeddings.weight")[0])
        eps = float(self.config["eps"])
        x = _layer_norm(x, self.w(p + "LayerNorm.weight"), self.w(p + "LayerNorm.bias"), eps)
        def dense(h: np.ndarray, name: str) -> np.ndarray:
            return h @ self.w(name + ".weight").T + self.w(name + ".bias")

        for i in range(self.config["layers"]):
            p = f"bert.encoder.layer.{i}."
            q, k, v = (dense(x, p + f"attention.self.{m}") for m in ("query", "key", "value"))
            ctx = _attention(q, k, v, self.config["heads"])
            x = _layer_norm(x + dense(ctx, p + "attention.output.dense"), self.w(p + "attention.output.LayerNorm.weight"),
                            self.w(p + "attention.output.LayerNorm.bias"), eps)
            h = _gelu(dense(x, p + "intermediate.dense"))
            x = _layer_norm(x + dense(h, p + "output.dense"), self.w(p + "output.LayerNorm.weight"),
                            self.w(p + "output.LayerNorm.bias"), eps)
        return x.mean(axis=0).astype(np.float32)

    def encode_texts(self, texts: Iterable[str]) -> np.ndarray:
        if self.family == "bert":
            out = np.stack([self._encode_bert(t) for t in texts])
        else:
            out = np.stack([self._encode_one(self.tokenizer(t)) for t in texts])
        return out / np.linalg.norm(out, axis=1, keepdims=True)
