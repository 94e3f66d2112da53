"""Export a model's text tower as NumPy arrays for `textfast.NumpyTextEncoder` (torch needed here only).

Written once per store and model at index time, into the store's text_encoder/ folder.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from clipsearch.encoders.text_folder import CONFIG, FORMAT, VOCAB
from clipsearch.fsutil import atomic_write_text, replace_dir

if TYPE_CHECKING:  # pragma: no cover
    from clipsearch.encoders.torch_encoder import Encoder

def exportable(encoder: Encoder) -> str | None:
    """None if the text tower is the standard one we can run in NumPy, else the reason it is not."""
    import open_clip
    import torch
    from open_clip.tokenizer import SimpleTokenizer

    model: Any = encoder.model
    if type(model).__name__ == "ChineseClip":
        cfg = model.clip.text_model.config
        if cfg.hidden_act != "gelu" or getattr(cfg, "position_embedding_type", "absolute") != "absolute":
            return f"BERT activation {cfg.hidden_act}, positions {cfg.position_embedding_type}"
        return "projection bias" if model.clip.text_projection.bias is not None else None
    if type(model).__name__ == "OfflineDualEncoder":
        act = getattr(getattr(model.text, "config", None), "hidden_act", None)
        return None if act == "gelu" else f"BERT activation {act}"
    if type(model).__name__ == "CustomTextCLIP" and type(getattr(model, "text", None)).__name__ == "HFTextEncoder":
        return _hf_exportable(encoder)
    if type(model) is not open_clip.CLIP:
        return f"model class {type(model).__name__}"
    if getattr(model, "text_pool_type", "argmax") != "argmax" or model.attn_mask is None:
        return "text pooling is not causal argmax"
    tok = encoder.tokenizer
    if not isinstance(tok, SimpleTokenizer) or tok.reduction_fn is not None or tok.vocab_size != 49408:
        return f"tokenizer {type(tok).__name__}"
    if getattr(tok.clean_fn, "__name__", "") != "_clean_lower":
        return "tokenizer cleaning"
    for block in model.transformer.resblocks:
        if type(block).__name__ != "ResidualAttentionBlock" or hasattr(block, "ln_1_kv"):
            return f"block {type(block).__name__}"
        act = block.mlp.gelu
        if not (type(act).__name__ == "QuickGELU" or (isinstance(act, torch.nn.GELU) and act.approximate == "none")):
            return f"activation {type(act).__name__}"
    return None


def export_text_tower(encoder: Encoder, folder: Path) -> bool:
    """Write the text tower as .npy files + config into `folder` (atomically); False if unsupported."""
    if exportable(encoder) is not None:
        return False
    import torch

    model = encoder.model
    folder = Path(folder)
    tmp = folder.with_name(folder.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)

    def save(name: str, t: torch.Tensor) -> None:
        np.save(tmp / f"{name}.npy", t.detach().float().cpu().numpy())

    if type(model).__name__ == "ChineseClip":
        config = _export_chinese_clip(model, encoder, tmp, save)
    elif type(model).__name__ == "OfflineDualEncoder":
        config = _export_bert(model, encoder, tmp, save)
    elif type(model).__name__ == "CustomTextCLIP":
        config = _export_hf(model, encoder, tmp, save)
    else:
        config = _export_clip(model, encoder, tmp, save)
    atomic_write_text(tmp / CONFIG, json.dumps(config))
    replace_dir(tmp, folder)
    return True


def _export_bert(model, encoder: Encoder, tmp: Path, save) -> dict:
    """MiniLM (BERT) text tower of the offline model: weights by their HF names, plus tokenizer.json."""
    import torch

    with torch.no_grad():
        for name, tensor in model.text.state_dict().items():
            save("bert." + name, tensor)
    cfg = model.text.config
    tok_dir = Path(encoder.tokenizer.tok.name_or_path)
    shutil.copyfile(tok_dir / "tokenizer.json", tmp / "tokenizer.json")
    return {"format": FORMAT, "family": "bert", "key": encoder.spec.key, "layers": cfg.num_hidden_layers,
            "heads": cfg.num_attention_heads, "eps": cfg.layer_norm_eps,
            "context_length": encoder.tokenizer.context_length}


def _export_chinese_clip(model, encoder: Encoder, tmp: Path, save) -> dict:
    """Chinese-CLIP's text tower: its BERT by the HF names, the projection, the WordPiece tokenizer.json (the
    same `tokenizers` object the torch tokenizer runs, so both read a query alike)."""
    import torch

    text = model.clip.text_model
    with torch.no_grad():
        for name, tensor in text.state_dict().items():
            if not name.startswith("pooler."):  # CLIP pools the CLS token's hidden state, not BERT's pooler
                save("bert." + name, tensor)
        save("text_projection", model.clip.text_projection.weight.t())
    encoder.tokenizer.tok.backend_tokenizer.save(str(tmp / "tokenizer.json"))
    cfg = text.config
    return {"format": FORMAT, "family": "bert", "pooling": "cls", "key": encoder.spec.key,
            "layers": cfg.num_hidden_layers, "heads": cfg.num_attention_heads, "eps": cfg.layer_norm_eps,
            "context_length": encoder.tokenizer.context_length, "has_projection": True}


def _export_clip(model, encoder: Encoder, tmp: Path, save) -> dict:
    import torch
    from open_clip.tokenizer import default_bpe

    with torch.no_grad():
        save("token_embedding", model.token_embedding.weight)
        save("positional_embedding", model.positional_embedding)
        blocks = []
        for i, b in enumerate(model.transformer.resblocks):
            p = f"block{i}."
            save(p + "ln_1.weight", b.ln_1.weight)
            save(p + "ln_1.bias", b.ln_1.bias)
            save(p + "in_proj_weight", b.attn.in_proj_weight)
            save(p + "in_proj_bias", b.attn.in_proj_bias)
            save(p + "out_proj.weight", b.attn.out_proj.weight)
            save(p + "out_proj.bias", b.attn.out_proj.bias)
            save(p + "ln_2.weight", b.ln_2.weight)
            save(p + "ln_2.bias", b.ln_2.bias)
            save(p + "c_fc.weight", b.mlp.c_fc.weight)
            save(p + "c_fc.bias", b.mlp.c_fc.bias)
            save(p + "c_proj.weight", b.mlp.c_proj.weight)
            save(p + "c_proj.bias", b.mlp.c_proj.bias)
            for ls in ("ls_1", "ls_2"):
                gamma = getattr(getattr(b, ls), "gamma", None)
                if gamma is not None:
                    save(p + ls, gamma)
            blocks.append({"heads": b.attn.num_heads, "eps": b.ln_1.eps,
                           "quick_gelu": type(b.mlp.gelu).__name__ == "QuickGELU",
                           "layer_scale": getattr(b.ls_1, "gamma", None) is not None})
        save("ln_final.weight", model.ln_final.weight)
        save("ln_final.bias", model.ln_final.bias)
        proj = model.text_projection
        if isinstance(proj, torch.nn.Linear):
            save("text_projection", proj.weight.t())
            if proj.bias is not None:
                save("text_projection_bias", proj.bias)
        elif proj is not None:
            save("text_projection", proj)
    shutil.copyfile(default_bpe(), tmp / VOCAB)
    return {"format": FORMAT, "family": "clip", "key": encoder.spec.key, "blocks": blocks,
            "ln_final_eps": model.ln_final.eps, "context_length": int(model.positional_embedding.shape[0]),
            "has_projection": proj is not None,
            "projection_bias": isinstance(proj, torch.nn.Linear) and proj.bias is not None}


def _hf_exportable(encoder: Encoder) -> str | None:
    """None for an XLM-R or NLLB text tower as open_clip builds them (mean or CLS pooling; no, linear or MLP
    projection; the tokenizer's own cleaning), else what differs."""
    import torch

    text: Any = encoder.model.text
    cfg = text.config
    if cfg.model_type == "xlm-roberta":
        if cfg.hidden_act != "gelu" or getattr(cfg, "position_embedding_type", "absolute") != "absolute":
            return f"XLM-R activation {cfg.hidden_act}"
        if type(text.pooler).__name__ != "MeanPooler":
            return f"XLM-R pooling {type(text.pooler).__name__}"
    elif cfg.model_type == "m2m_100":
        if cfg.activation_function not in ("relu", "gelu") or type(text.pooler).__name__ != "ClsPooler":
            return f"M2M-100 activation {cfg.activation_function}, pooling {type(text.pooler).__name__}"
    else:
        return f"text tower {cfg.model_type}"
    proj = text.proj
    plain = isinstance(proj, (torch.nn.Identity, torch.nn.Linear)) and getattr(proj, "bias", None) is None
    mlp = (isinstance(proj, torch.nn.Sequential) and len(proj) == 3 and isinstance(proj[1], torch.nn.GELU)
           and proj[1].approximate == "none" and all(p.bias is None for p in (proj[0], proj[2])))
    if not (plain or mlp):
        return "text projection"
    tok = encoder.tokenizer
    if tok.tokenizer_mode or tok.strip_sep_token or getattr(tok.clean_fn, "__name__", "") != "_clean_whitespace":
        return "tokenizer mode or cleaning"
    return None


def _export_hf(model, encoder: Encoder, tmp: Path, save) -> dict:
    """An XLM-R or NLLB text tower (`numpy_hf_text`): the transformer's weights by their HF names (and M2M-100's
    sinusoidal position table, a buffer outside its state dict), the projection, the tokenizer.json its torch
    tokenizer runs."""
    import torch

    from clipsearch.encoders.numpy_hf_text import FAMILY, TOKENIZER, scale_of

    text = model.text
    cfg = text.config
    with torch.no_grad():
        for name, tensor in text.transformer.state_dict().items():
            if not name.startswith("pooler."):
                save("hf." + name, tensor)
        if cfg.model_type == "m2m_100":
            save("hf.embed_positions.weights", text.transformer.embed_positions.weights)
        for name, tensor in text.proj.state_dict().items():
            save("proj." + name, tensor)
    hf = encoder.tokenizer.tokenizer
    hf.backend_tokenizer.save(str(tmp / TOKENIZER))
    m2m = cfg.model_type == "m2m_100"
    return {"format": FORMAT, "family": FAMILY, "key": encoder.spec.key, "model_type": cfg.model_type,
            "layers": cfg.encoder_layers if m2m else cfg.num_hidden_layers,
            "heads": cfg.encoder_attention_heads if m2m else cfg.num_attention_heads,
            "eps": 1e-5 if m2m else cfg.layer_norm_eps, "pad_id": cfg.pad_token_id,
            "bos_id": hf.bos_token_id, "eos_id": hf.eos_token_id,
            "activation": cfg.activation_function if m2m else cfg.hidden_act,
            "embed_scale": scale_of(text.transformer) if m2m else 1.0,
            "pooling": "cls" if m2m else "mean",
            "projection": ("mlp" if isinstance(text.proj, torch.nn.Sequential) else
                           "linear" if isinstance(text.proj, torch.nn.Linear) else "none"),
            "context_length": encoder.tokenizer.context_length}
