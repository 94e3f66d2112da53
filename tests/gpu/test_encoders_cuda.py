"""The image encoders on CUDA against the CPU: torch in fp16 (autocast) and ONNX Runtime's CUDA provider."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from clipsearch.media.images import decode_paths

QUERIES = [f"a {c} {s}" for c in ("red", "green", "blue") for s in ("circle", "square", "triangle")]


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def _pixels(encoder, shapes_source: Path) -> tuple[np.ndarray, list[str]]:
    paths = sorted(str(p) for p in shapes_source.glob("*.png"))
    pixels, kept, failed = decode_paths(encoder, paths)
    assert not failed
    return pixels, [paths[i] for i in kept]


def test_torch_fp16_on_cuda_matches_fp32_on_cpu(trained_model: Path, shapes_source: Path) -> None:
    """cosine >= 0.999 for every image and caption, and the same top-10 images for every caption."""
    import torch

    from clipsearch.encoders.torch_encoder import load_encoder

    cpu, cuda = load_encoder(str(trained_model), device="cpu"), load_encoder(str(trained_model), device="cuda")
    assert cuda.device_name == "cuda:0" and cuda.use_autocast and next(cuda.model.parameters()).is_cuda
    assert torch.get_autocast_dtype("cuda") == torch.float16  # what the encoder's autocast computes in
    pixels, _paths = _pixels(cpu, shapes_source)
    img_cpu, img_gpu = cpu.encode_images(pixels), cuda.encode_images(pixels)
    txt_cpu, txt_gpu = cpu.encode_texts(QUERIES), cuda.encode_texts(QUERIES)
    assert _cosines(img_cpu, img_gpu).min() >= 0.999
    assert _cosines(txt_cpu, txt_gpu).min() >= 0.999
    for q in range(len(QUERIES)):
        top_cpu = set(np.argsort(-(img_cpu @ txt_cpu[q]))[:10])
        assert set(np.argsort(-(img_gpu @ txt_gpu[q]))[:10]) == top_cpu, QUERIES[q]


def test_vit_b_32_fp16_on_cuda_matches_fp32_on_cpu() -> None:
    """The real architecture (seeded random weights): 12 layers of fp16 stay within cosine 0.999 of fp32."""
    from clipsearch.encoders.torch_encoder import load_encoder

    cpu, cuda = load_encoder("ViT-B-32", device="cpu"), load_encoder("ViT-B-32", device="cuda")
    pixels = np.random.default_rng(3).integers(0, 256, (16, 224, 224, 3), dtype=np.uint8)
    assert _cosines(cpu.encode_images(pixels), cuda.encode_images(pixels)).min() >= 0.999
    assert _cosines(cpu.encode_texts(QUERIES), cuda.encode_texts(QUERIES)).min() >= 0.999


def test_onnx_runtime_cuda_provider_matches_cpu(ort_cuda, trained_model: Path, shapes_source: Path,
                                                tmp_path: Path) -> None:
    from clipsearch.encoders import onnx_encoder, onnx_export
    from clipsearch.encoders.torch_encoder import load_encoder

    enc = load_encoder(str(trained_model), device="cpu")
    onnx_export.export(enc, cache_root=tmp_path)
    export = onnx_encoder.find_export(enc.spec.cache_key, cache_root=tmp_path)
    assert export is not None
    on_cpu = onnx_encoder.OnnxImageEncoder(enc.spec, export, "fp32", "cpu")
    on_gpu = onnx_encoder.OnnxImageEncoder(enc.spec, export, "fp32", "cuda")
    assert on_gpu.session.get_providers()[0] == "CUDAExecutionProvider" and on_gpu.device_name == "cuda:0"
    assert on_cpu.device_name == "cpu" and on_gpu.default_batch_size > on_cpu.default_batch_size
    assert onnx_encoder.default_precision("cuda") == "fp32"  # a GPU store keeps fp32 embeddings
    pixels, _paths = _pixels(enc, shapes_source)
    assert _cosines(on_cpu.encode_images(pixels), on_gpu.encode_images(pixels)).min() >= 0.9999
    assert _cosines(enc.encode_images(pixels), on_gpu.encode_images(pixels)).min() >= 0.9999
