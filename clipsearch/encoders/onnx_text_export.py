"""Export a model's text tower to ONNX (`onnx_text_tower`), checked against torch (torch needed here only).

The graph takes token ids (and, for a BERT, the attention mask) with both axes dynamic and returns L2-normalised
embeddings. It goes into the text tower folder of the model's export cache, beside the NumPy weights and the
tokenizer, once per model: every store of that model uses it from there.

Before it is kept, ONNX Runtime's embeddings are compared with torch's on English, Chinese, mixed and over-length
texts, one at a time and as one padded batch: a graph whose largest difference exceeds `MAX_ABS_DIFF` is refused
(the model's text then stays on NumPy).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from clipsearch.encoders.onnx_text_tower import ATTENTION_MASK, INPUT_IDS, TEXT_FP32, tokenizer_of, write_record

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from clipsearch.encoders.torch_encoder import Encoder

MAX_ABS_DIFF = 1e-5
# what the check embeds: short and long English, Chinese, mixed scripts, markup, a text over the context length
PROBE_TEXTS = ["a dog", "a red dress on a wooden chair at the beach in the evening", "一只猫在草地上", "iPhone 手机 壳",
               "café &amp; crème brûlée", "<end_of_text> typed", "", "tree " * 120]


def _clip_graph(model: Any) -> torch.nn.Module:
    """open_clip's `encode_text` for a dynamic sequence length: positions and causal mask cut to it. Attention
    is written out (the blocks' own weights; `text_export.exportable` admits only standard blocks) because the
    traced `nn.MultiheadAttention` keeps the example's sequence length in its reshapes."""
    import torch

    def attention(block: Any, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        attn = block.attn
        heads = attn.num_heads
        q, k, v = torch.nn.functional.linear(h, attn.in_proj_weight, attn.in_proj_bias).chunk(3, dim=-1)
        q, k, v = (t.unflatten(-1, (heads, -1)).transpose(1, 2) for t in (q, k, v))  # (batch, heads, n, dh)
        scores = (q * (1.0 / float(q.shape[-1]) ** 0.5)) @ k.transpose(-1, -2) + mask
        out = (scores.softmax(dim=-1) @ v).transpose(1, 2).flatten(2)
        return attn.out_proj(out)

    class ClipText(torch.nn.Module):
        def __init__(self, clip: Any) -> None:
            super().__init__()
            self.clip = clip

        def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
            m = self.clip
            n = input_ids.shape[1]
            x = m.token_embedding(input_ids) + m.positional_embedding[:n]
            mask = m.attn_mask[:n, :n]
            for b in m.transformer.resblocks:
                x = x + b.ls_1(attention(b, b.ln_1(x), mask))
                x = x + b.ls_2(b.mlp(b.ln_2(x)))
            x = m.ln_final(x)
            x = x[torch.arange(x.shape[0]), input_ids.argmax(dim=-1)]  # the (first) end-of-text token
            proj = m.text_projection
            if isinstance(proj, torch.nn.Linear):
                x = proj(x)
            elif proj is not None:
                x = x @ proj
            return x / x.norm(dim=-1, keepdim=True).clamp_min(1e-12)

    return ClipText(model)


def _bert_graph(model: Any) -> torch.nn.Module:
    """The offline model's MiniLM (masked mean pooling) or Chinese-CLIP's BERT (the CLS token, projected)."""
    import torch

    class BertText(torch.nn.Module):
        def __init__(self, owner: Any) -> None:
            super().__init__()
            self.owner = owner
            self.chinese = type(owner).__name__ == "ChineseClip"

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            if self.chinese:
                clip = self.owner.clip
                hidden = clip.text_model(input_ids=input_ids, attention_mask=attention_mask,
                                         token_type_ids=torch.zeros_like(input_ids)).last_hidden_state
                x = clip.text_projection(hidden[:, 0, :])
            else:
                hidden = self.owner.text(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
                m = attention_mask.unsqueeze(-1).to(hidden.dtype)
                x = (hidden * m).sum(dim=1) / m.sum(dim=1).clamp(min=1e-9)
            return x / x.norm(dim=-1, keepdim=True).clamp_min(1e-12)

    return BertText(model)


def _graph(encoder: Encoder) -> tuple[torch.nn.Module, list[str]]:
    if type(encoder.model).__name__ in ("ChineseClip", "OfflineDualEncoder"):
        return _bert_graph(encoder.model).eval(), [INPUT_IDS, ATTENTION_MASK]
    return _clip_graph(encoder.model).eval(), [INPUT_IDS]


def export_graph(module: torch.nn.Module, inputs: list[str], example: tuple, path: Path) -> None:
    """torch.onnx (TorchScript exporter) with the batch and token axes dynamic: how any text tower whose
    forward takes `inputs` (ids, and an attention mask) and returns embeddings becomes `text.onnx`."""
    import torch

    from clipsearch.encoders.onnx_encoder import OPSET

    axes = {name: {0: "batch", 1: "tokens"} for name in inputs}
    fastpath = torch.backends.mha.get_fastpath_enabled()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer warnings about the shapes the graph keeps dynamic
        torch.backends.mha.set_fastpath_enabled(False)  # the fused attention kernel has no ONNX form
        try:
            torch.onnx.export(module, example, str(path), dynamo=False, opset_version=OPSET, input_names=inputs,
                              output_names=["embedding"], dynamic_axes={**axes, "embedding": {0: "batch"}},
                              do_constant_folding=True, verbose=False)
        finally:
            torch.backends.mha.set_fastpath_enabled(fastpath)


def check(encoder: Encoder, folder: Path, texts: list[str] | None = None) -> float:
    """The largest |ONNX Runtime − torch| over `texts` (default PROBE_TEXTS), one at a time and batched."""
    from clipsearch.encoders.onnx_text_tower import OnnxTextTower

    texts = texts or PROBE_TEXTS
    ort = OnnxTextTower(folder)
    ref = encoder.encode_texts(texts)
    batched = ort.encode_texts(texts)
    single = np.concatenate([ort.encode_texts([t]) for t in texts])
    return float(max(np.abs(batched - ref).max(), np.abs(single - ref).max()))


class TextExportRefused(Exception):
    """The text graph could not be made or disagrees with torch; the message says why."""


def export_text_onnx(encoder: Encoder, folder: Path) -> float:
    """Write `text.onnx` + its record into `folder` (a text tower folder: config and tokenizer already there);
    returns the largest difference from torch.

    Raises TextExportRefused (nothing kept) when the exporter fails or the graph disagrees with torch by more
    than MAX_ABS_DIFF: the model's text then stays on the NumPy tower."""
    import json

    import torch

    from clipsearch.encoders.onnx_text_tower import RECORD, REFUSED
    from clipsearch.encoders.torch_encoder import cpu_encoder
    from clipsearch.fsutil import atomic_write_text

    folder = Path(folder)
    config = json.loads((folder / "config.json").read_text())
    encoder = cpu_encoder(encoder)
    module, inputs = _graph(encoder)
    tokenize = tokenizer_of(folder, config)
    rows = [tokenize(t) for t in PROBE_TEXTS[:2]]
    ids = torch.zeros((len(rows), max(len(r) for r in rows)), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, :len(r)] = torch.tensor(r)
    example = (ids,) if inputs == [INPUT_IDS] else (ids, (ids != 0).long())
    tmp = folder / f"text.tmp{os.getpid()}.onnx"
    final = folder / TEXT_FP32
    key = str(config["key"])
    try:
        try:
            export_graph(module, inputs, example, tmp)
        except Exception as exc:  # any exporter failure means: this model's text stays on NumPy
            first = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
            raise TextExportRefused(f"the exporter failed: {first}") from exc
        os.replace(tmp, final)
        write_record(folder, key, inputs, pad_id=0)
        diff = check(encoder, folder)
        if diff > MAX_ABS_DIFF:
            raise TextExportRefused(f"ONNX and torch text embeddings differ by {diff:.2e} > {MAX_ABS_DIFF}")
    except BaseException as exc:
        (folder / RECORD).unlink(missing_ok=True)
        final.unlink(missing_ok=True)
        if isinstance(exc, TextExportRefused):  # remembered: no process tries this model again
            atomic_write_text(folder / REFUSED, str(exc))
        raise
    finally:
        tmp.unlink(missing_ok=True)
    write_record(folder, key, inputs, pad_id=0, checked_max_abs_diff=diff, torch=torch.__version__)
    (folder / REFUSED).unlink(missing_ok=True)
    return diff
