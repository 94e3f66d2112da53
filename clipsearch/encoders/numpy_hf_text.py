"""The Hugging Face text towers of the multilingual open_clip models in NumPy, for cold and warm queries.

open_clip builds `xlm-roberta-*-ViT-*` and NLLB-CLIP with a transformers text tower (`HFTextEncoder`): XLM-R (a
RoBERTa: post-LayerNorm BERT layers, positions counted from the padding id + 1, mean pooling over the tokens)
and NLLB's encoder (M2M-100: pre-LayerNorm layers, scaled token embeddings, sinusoidal positions, a final
LayerNorm, the first token – the language code – pooled). Both then project (linear, or Linear-GELU-Linear).
A query runs here on the store's .npy copy with the same `tokenizers` object the torch tokenizer runs
(`tokenizer.json`), cleaned as open_clip cleans it (ftfy, HTML entities, whitespace), without torch or
transformers. Only the real tokens are computed: torch pads to the context length and masks the padding out,
which changes nothing for them, so both paths agree (tests: cosine ≥ 0.9999 on Chinese, English, mixed text).

NLLB is told each text's language: the code token goes before the text and </s> after it, as NllbTokenizer's
non-legacy template does; the code is the caller's, or detected from the text's script (`nllb_language`).
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from clipsearch.encoders.numpy_ops import attention, gelu, layer_norm

TOKENIZER = "tokenizer.json"
FAMILY = "hf"  # the `family` a NumpyTextEncoder config names for these towers
XLMR, M2M100 = "xlm-roberta", "m2m_100"


def clean(text: str) -> str:
    """open_clip's `whitespace` cleaning of HFTokenizer input: ftfy, HTML entities twice, whitespace runs to one
    space (ftfy is skipped for printable ASCII without '&', which it leaves as it is)."""
    if not (text.isascii() and text.isprintable() and "&" not in text):
        import ftfy

        text = ftfy.fix_text(text)
    return " ".join(html.unescape(html.unescape(text)).split())


class HFTextTower:
    """One exported tower: `config` is the store's text_encoder config, `w(name)` its weights by name."""

    def __init__(self, folder: Path, config: dict[str, Any], w: Callable[[str], np.ndarray]) -> None:
        from tokenizers import Tokenizer

        self.config, self.w = config, w
        self.model_type = str(config["model_type"])
        if self.model_type not in (XLMR, M2M100):
            raise ValueError(f"unknown text tower {self.model_type}")
        self.tokenizer = Tokenizer.from_file(str(Path(folder) / TOKENIZER))
        self.tokenizer.no_padding()
        self.tokenizer.no_truncation()
        self.context_length = int(config["context_length"])

    # --- tokens ---------------------------------------------------------------------------------------
    def token_ids(self, text: str, language: str | None = None) -> list[int]:
        """The ids torch's tokenizer gives `text` without its padding: XLM-R's <s> … </s>, NLLB's code … </s>."""
        pieces = self.tokenizer.encode(clean(text), add_special_tokens=False).ids[:self.context_length - 2]
        if self.model_type == M2M100:
            from clipsearch.encoders.languages import nllb_language

            code = self.tokenizer.token_to_id(language or nllb_language(text))
            if code is None:
                raise ValueError(f"language code {language!r} is not in the tokenizer")
            return [code, *pieces, int(self.config["eos_id"])]
        return [int(self.config["bos_id"]), *pieces, int(self.config["eos_id"])]

    # --- forward --------------------------------------------------------------------------------------
    def encode(self, texts: list[str], language: str | None = None) -> np.ndarray:
        """Unnormalised embeddings of `texts` (packed: one matrix for all texts' tokens, attention per text)."""
        ids = [self.token_ids(t, language) for t in texts]
        bounds = np.cumsum([0] + [len(i) for i in ids])
        x = self._xlmr(ids, bounds) if self.model_type == XLMR else self._m2m100(ids, bounds)
        if self.config["pooling"] == "cls":
            pooled = x[bounds[:-1]]
        else:
            pooled = np.stack([x[a:b].mean(axis=0) for a, b in zip(bounds[:-1], bounds[1:], strict=False)])
        return self._project(pooled).astype(np.float32)

    def _dense(self, h: np.ndarray, name: str) -> np.ndarray:
        return h @ self.w(name + ".weight").T + self.w(name + ".bias")

    def _attention(self, x: np.ndarray, bounds: np.ndarray, q: str, k: str, v: str, out: str) -> np.ndarray:

        qs, ks, vs = (self._dense(x, n) for n in (q, k, v))
        ctx = np.concatenate([attention(qs[a:b], ks[a:b], vs[a:b], int(self.config["heads"]))
                              for a, b in zip(bounds[:-1], bounds[1:], strict=False)])
        return self._dense(ctx, out)

    def _xlmr(self, ids: list[list[int]], bounds: np.ndarray) -> np.ndarray:

        eps, first = float(self.config["eps"]), int(self.config["pad_id"]) + 1  # positions start after padding
        p = "hf.embeddings."
        x = (np.concatenate([np.asarray(self.w(p + "word_embeddings.weight")[i], dtype=np.float32)
                             + self.w(p + "position_embeddings.weight")[first:first + len(i)] for i in ids])
             + self.w(p + "token_type_embeddings.weight")[0])
        x = layer_norm(x, self.w(p + "LayerNorm.weight"), self.w(p + "LayerNorm.bias"), eps)
        for i in range(int(self.config["layers"])):
            p = f"hf.encoder.layer.{i}."
            s = p + "attention.self."
            attn = self._attention(x, bounds, s + "query", s + "key", s + "value", p + "attention.output.dense")
            norm = p + "attention.output.LayerNorm."
            x = layer_norm(x + attn, self.w(norm + "weight"), self.w(norm + "bias"), eps)
            h = gelu(self._dense(x, p + "intermediate.dense"))
            x = layer_norm(x + self._dense(h, p + "output.dense"), self.w(p + "output.LayerNorm.weight"),
                            self.w(p + "output.LayerNorm.bias"), eps)
        return x

    def _m2m100(self, ids: list[list[int]], bounds: np.ndarray) -> np.ndarray:

        eps, first = float(self.config["eps"]), int(self.config["pad_id"]) + 1
        scale = float(self.config["embed_scale"])
        x = np.concatenate([np.asarray(self.w("hf.embed_tokens.weight")[i], dtype=np.float32) * scale
                            + self.w("hf.embed_positions.weights")[first:first + len(i)] for i in ids])
        act = gelu if self.config["activation"] == "gelu" else (lambda h: np.maximum(h, 0))
        for i in range(int(self.config["layers"])):
            p = f"hf.layers.{i}."
            h = layer_norm(x, self.w(p + "self_attn_layer_norm.weight"), self.w(p + "self_attn_layer_norm.bias"),
                            eps)
            s = p + "self_attn."
            x = x + self._attention(h, bounds, s + "q_proj", s + "k_proj", s + "v_proj", s + "out_proj")
            h = layer_norm(x, self.w(p + "final_layer_norm.weight"), self.w(p + "final_layer_norm.bias"), eps)
            x = x + self._dense(act(self._dense(h, p + "fc1")), p + "fc2")
        return layer_norm(x, self.w("hf.layer_norm.weight"), self.w("hf.layer_norm.bias"), eps)

    def _project(self, pooled: np.ndarray) -> np.ndarray:

        kind = self.config["projection"]
        if kind == "linear":
            return pooled @ self.w("proj.weight").T
        if kind == "mlp":
            return gelu(pooled @ self.w("proj.0.weight").T) @ self.w("proj.2.weight").T
        return pooled


def scale_of(transformer: Any) -> float:
    """M2M-100's token embedding scale (sqrt(d_model) where the config scales embeddings)."""
    scale = getattr(getattr(transformer, "embed_tokens", None), "embed_scale", None)
    if scale is None:
        scale = getattr(transformer, "embed_scale", None)
    if scale is None:
        cfg = transformer.config
        scale = math.sqrt(cfg.d_model) if getattr(cfg, "scale_embedding", False) else 1.0
    return float(scale)
