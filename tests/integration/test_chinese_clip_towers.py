"""Chinese-CLIP's towers as clipsearch runs them agree with transformers' own ChineseCLIPModel, and the fast
paths agree with torch: the NumPy text tower (WordPiece by `tokenizers`) on Chinese, English and mixed queries,
and the ONNX Runtime image tower."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tests import chinese_hub as ch

QUERIES = ["红色的圆形", "一张猫的照片", "蓝色的正方形在草地上", "a red circle", "a photo of a dog on the grass",
           "iPhone 手机 red 圆形", "2024年 Beijing 北京 café", "Ｃｈｉｎａ　中国", "中" * 80, "x " * 200, "。，！"]
MIN_COSINE = 0.9999


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def test_wrapper_matches_transformers_features(hf_cache: Path) -> None:
    import torch

    from clipsearch.encoders.torch_encoder import load_encoder

    enc = load_encoder(ch.SPEC, "cpu")
    assert enc.tokenizer.context_length == 52 and enc.resize_mode == "squash" and enc.image_size == ch.IMAGE_SIZE
    tokens = enc.tokenizer(["红色的圆形"])
    assert tokens[0, :7].tolist() == [101, 5273, 5682, 4638, 1749, 2501, 102]  # [CLS] 红 色 的 圆 形 [SEP]
    inputs = enc.tokenizer.tok(QUERIES, padding=True, truncation=True, max_length=52, return_tensors="pt")
    pixels = np.random.default_rng(0).integers(0, 256, (3, ch.IMAGE_SIZE, ch.IMAGE_SIZE, 3), dtype=np.uint8)
    with torch.no_grad():
        text_ref = enc.model.clip.get_text_features(**inputs).pooler_output.numpy()
        image_ref = enc.model.clip.get_image_features(pixel_values=enc.images_to_tensor(pixels)).pooler_output.numpy()
    assert _cos(enc.encode_texts(QUERIES), text_ref).min() > 0.99999
    assert _cos(enc.encode_images(pixels), image_ref).min() > 0.99999


def test_numpy_text_tower_agrees_with_torch(hf_cache: Path, tmp_path: Path) -> None:
    from clipsearch.encoders.numpy_text import NumpyTextEncoder
    from clipsearch.encoders.text_export import export_text_tower
    from clipsearch.encoders.torch_encoder import load_encoder

    enc = load_encoder(ch.SPEC, "cpu")
    assert export_text_tower(enc, tmp_path / "text")
    fast = NumpyTextEncoder(tmp_path / "text")
    cosines = _cos(fast.encode_texts(QUERIES), enc.encode_texts(QUERIES))
    print("numpy vs torch cosine, min:", float(cosines.min()))
    assert cosines.min() >= MIN_COSINE
    one_by_one = np.concatenate([fast.encode_texts([q]) for q in QUERIES])
    assert np.allclose(one_by_one, fast.encode_texts(QUERIES), atol=1e-5)  # packed batches change nothing


def test_onnx_image_tower_agrees_with_torch(hf_cache: Path) -> None:
    from clipsearch.encoders.factory import load_image_encoder
    from clipsearch.encoders.onnx_export import probe_pixels
    from clipsearch.encoders.spec import parse_spec
    from clipsearch.encoders.torch_encoder import load_encoder

    onnx = load_image_encoder(parse_spec(ch.SPEC), backend="onnx", precision="fp32")
    torch_enc = load_encoder(ch.SPEC, "cpu")
    pixels = probe_pixels(ch.IMAGE_SIZE, 4, seed=3)
    cosines = _cos(onnx.encode_images(pixels), torch_enc.encode_images(pixels))
    print("onnx vs torch image cosine, min:", float(cosines.min()))
    assert cosines.min() >= 0.99999
