"""The multilingual towers' fast path agrees with torch: the NumPy copy of XLM-R's and NLLB's text towers
(`numpy_hf_text`, the same `tokenizers` tokenizer.json) against open_clip's HFTextEncoder through transformers, on
Chinese, English, mixed and odd queries (cosine ≥ 0.9999), NLLB with the detected and a given language code; and
the tokenizers are the real formats' (XLM-R's <s> … </s>, NLLB's code … </s>)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests import multilingual_hub as mh

QUERIES = ["红色的圆形", "一张猫的照片", "蓝色的正方形在草地上", "a red circle", "a photo of a dog on the grass",
           "iPhone 手机 red 圆形", "2024年 Beijing 北京 café", "Ｃｈｉｎａ　中国", "中" * 80, "x " * 200, "。，！",
           "Tom &amp; Jerry  ", "красный круг", "赤い丸", "빨간 원"]
MIN_COSINE = 0.9999


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.mark.parametrize("spec", [mh.XLMR, mh.NLLB, mh.XLMR_LARGE])
def test_numpy_text_tower_agrees_with_torch(ml_cache: Path, tmp_path: Path, spec: str) -> None:
    from clipsearch.encoders.numpy_text import NumpyTextEncoder
    from clipsearch.encoders.text_export import export_text_tower, exportable
    from clipsearch.encoders.torch_encoder import load_encoder

    enc = load_encoder(spec, "cpu")
    assert exportable(enc) is None
    assert export_text_tower(enc, tmp_path / "text")
    fast = NumpyTextEncoder.load(tmp_path / "text", enc.spec.key)
    assert fast is not None
    assert _cos(fast.encode_texts(QUERIES), enc.encode_texts(QUERIES)).min() >= MIN_COSINE
    if spec == mh.NLLB:
        given = _cos(fast.encode_texts(QUERIES, language="fra_Latn"), enc.encode_texts(QUERIES, language="fra_Latn"))
        assert given.min() >= MIN_COSINE
        for text in QUERIES:  # the same ids as torch's tokenizer, its padding left out
            ids = enc.tokenize([text])[0].tolist()
            assert fast.hf.token_ids(text) == ids[:ids.index(2) + 1]


def test_tokenizer_files_are_the_real_formats(ml_cache: Path) -> None:
    from transformers import AutoTokenizer

    xlmr = AutoTokenizer.from_pretrained("xlm-roberta-base")
    assert type(xlmr).__name__ == "XLMRobertaTokenizer"
    ids = xlmr("红色的圆形").input_ids
    assert ids[0] == xlmr.bos_token_id == 0 and ids[-1] == xlmr.eos_token_id == 2 and xlmr.pad_token_id == 1
    assert xlmr.convert_ids_to_tokens(ids[1])[0] == "▁"  # SentencePiece's word start
    nllb = AutoTokenizer.from_pretrained("facebook/nllb-200-distilled-600M")
    assert type(nllb).__name__ == "NllbTokenizer" and len(mh.nllb_codes()) == 202
    nllb.src_lang = "zho_Hans"
    ids = nllb("红色的圆形").input_ids
    assert ids[0] == nllb.convert_tokens_to_ids("zho_Hans") and ids[-1] == nllb.eos_token_id
