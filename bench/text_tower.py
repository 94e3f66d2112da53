"""The text tower: NumPy against ONNX Runtime (fp32 and int8), cold and warm, and int8's agreement with fp32.

For each model (seeded weights where the spec has no tag) the text tower is exported as a store gets it (NumPy
weights + the ONNX graph, `encoders/text_export.py`, `encoders/onnx_text_export.py`), then:
  * exactness: the largest |difference| between torch, NumPy and ONNX Runtime fp32 over the query set;
  * int8 agreement: the mean top-10 overlap between fp32 and int8 query embeddings ranking a gallery of real
    photos (12 views of each skimage.data photo, embedded by the model's image tower); int8 is used only where
    it reaches 0.99 (`encoders/onnx_text_tower.DEFAULT_TEXT_PRECISION`);
  * warm: the median time of one distinct query in a loaded encoder, one thread (a server's setting);
  * cold: a fresh process from start to the first query's embedding (import, load, tokenise, embed), median of
    --cold-runs, the two runtimes alternating; the NumPy tower is the baseline of the ratios.

    python bench/text_tower.py                                   # offline-mini and ViT-B-32
    python bench/text_tower.py --models ViT-B-32 --cold-runs 5 --cold-only
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

SUBJECTS = ["a cat", "a dog", "an astronaut", "a rocket", "a cup of coffee", "a clock", "coins", "the moon",
            "a horse", "a man with a camera", "bricks", "grass", "gravel", "stars in deep space", "a red dress",
            "a bicycle", "a sailing boat", "a city at night", "a mountain lake", "a bowl of soup"]
FRAMES = ["{}", "a photo of {}", "{} in the sunset", "a close-up of {}", "{} on a wooden table",
          "a black and white picture of {}", "{} seen from above", "a blurry photo of {}", "two people and {}",
          "{} at the beach", "{} covered in snow", "an old painting of {}"]
OTHER = ["一只猫在草地上", "月亮", "一杯咖啡", "iPhone 手机 壳", "café crème", "tree " * 120, "<end_of_text> typed"]


def query_set() -> list[str]:
    """240 English queries (20 subjects in 12 frames) and a few in Chinese, mixed, or over the context length."""
    return [f.format(s) for s in SUBJECTS for f in FRAMES] + OTHER


COLD = """
import sys, time
t0 = time.perf_counter()
from pathlib import Path
runtime, folder = sys.argv[1], Path(sys.argv[2])
if runtime == "onnx":
    from clipsearch.encoders.onnx_text_tower import OnnxTextTower
    enc = OnnxTextTower(folder)
else:
    from clipsearch.encoders.numpy_text import NumpyTextEncoder
    enc = NumpyTextEncoder(folder)
enc.encode_texts(["a red dress on a chair"])
print(time.perf_counter() - t0)
"""


def export(spec: str, folder: Path):
    from clipsearch.encoders.onnx_text_export import export_text_onnx
    from clipsearch.encoders.text_export import export_text_tower
    from clipsearch.encoders.torch_encoder import load_encoder

    enc = load_encoder(spec, device="cpu")
    assert export_text_tower(enc, folder), f"{spec}: no text tower export"
    t = time.perf_counter()
    export_text_onnx(enc, folder)
    return enc, time.perf_counter() - t


def top10_overlap(a: np.ndarray, b: np.ndarray, gallery: np.ndarray, k: int = 10) -> float:
    ta = np.argsort(-(a @ gallery.T), axis=1)[:, :k]
    tb = np.argsort(-(b @ gallery.T), axis=1)[:, :k]
    return float(np.mean([len(set(x) & set(y)) / k for x, y in zip(ta, tb, strict=True)]))


def warm_ms(enc, queries: list[str]) -> float:
    enc.encode_texts(["warm up"])
    times = []
    for q in queries:
        t = time.perf_counter()
        enc.encode_texts([q])
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3


def cold_s(folder: Path, runs: int) -> dict[str, float]:
    out: dict[str, list[float]] = {"numpy": [], "onnx": []}
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "2"}
    import os

    env = {**os.environ, **env}
    for _ in range(runs):
        for runtime in out:
            run = subprocess.run([sys.executable, "-c", COLD, runtime, str(folder)], capture_output=True, text=True,
                                 check=True, env=env)
            out[runtime].append(float(run.stdout.strip().splitlines()[-1]))
    return {r: statistics.median(v) for r, v in out.items()}


def report(spec: str, cold_runs: int, warm_queries: int, cold_only: bool = False) -> None:
    from index_throughput import skimage_gallery
    from threadpoolctl import threadpool_limits

    from clipsearch.encoders.numpy_text import NumpyTextEncoder
    from clipsearch.encoders.onnx_text_tower import OnnxTextTower

    queries = query_set()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "text_encoder"
        enc, took = export(spec, folder)
        size = (folder / "text.onnx").stat().st_size / 2**20
        print(f"{spec}: text graph exported and checked in {took:.1f} s ({size:.0f} MB)")
        if cold_only:
            cold = cold_s(folder, cold_runs)
            print(f"  cold process, start to first embedding (median of {cold_runs}): numpy {cold['numpy'] * 1e3:.0f} "
                  f"ms, onnx fp32 {cold['onnx'] * 1e3:.0f} ms  RATIO onnx / numpy {cold['onnx'] / cold['numpy']:.2f}x")
            return
        pixels, _names = skimage_gallery(enc.image_size, enc.resize_mode)
        gallery = np.concatenate([enc.encode_images(pixels[i:i + 32]) for i in range(0, len(pixels), 32)])
        ref = enc.encode_texts(queries)
        numpy_enc = NumpyTextEncoder(folder)
        fp32, int8 = OnnxTextTower(folder, "fp32", threads=1), OnnxTextTower(folder, "int8", threads=1)
        e_np, e_fp32, e_int8 = (np.concatenate([e.encode_texts(queries[i:i + 16]) for i in range(0, len(queries), 16)])
                                for e in (numpy_enc, fp32, int8))
        print(f"  exactness over {len(queries)} queries: max |ORT fp32 - torch| {np.abs(e_fp32 - ref).max():.1e}, "
              f"|NumPy - torch| {np.abs(e_np - ref).max():.1e}, |ORT fp32 - NumPy| {np.abs(e_fp32 - e_np).max():.1e}")
        overlap = top10_overlap(e_fp32, e_int8, gallery)
        print(f"  int8 vs fp32 on {len(gallery)} views of skimage.data photos: top-10 overlap {overlap:.3f} "
              f"(used only at >= 0.99: {'passes' if overlap >= 0.99 else 'FAILS'}), mean cosine "
              f"{(e_fp32 * e_int8).sum(1).mean():.4f}, min {(e_fp32 * e_int8).sum(1).min():.4f}")
        distinct = [f"{q} {i}" for i, q in enumerate(queries[:warm_queries])]
        with threadpool_limits(1):
            base = warm_ms(numpy_enc, distinct)
            rows = {"numpy": base, "onnx fp32": warm_ms(fp32, distinct), "onnx int8": warm_ms(int8, distinct)}
        print(f"  warm, one query, 1 thread (median of {len(distinct)} distinct): "
              + ", ".join(f"{k} {v:.1f} ms" for k, v in rows.items())
              + f"  RATIO onnx fp32 / numpy {rows['onnx fp32'] / base:.2f}x, "
              f"int8 / numpy {rows['onnx int8'] / base:.2f}x")
        if cold_runs:
            cold = cold_s(folder, cold_runs)
            print(f"  cold process, start to first embedding (median of {cold_runs}): numpy {cold['numpy'] * 1e3:.0f} "
                  f"ms, onnx fp32 {cold['onnx'] * 1e3:.0f} ms  RATIO onnx / numpy {cold['onnx'] / cold['numpy']:.2f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="offline-mini,ViT-B-32")
    ap.add_argument("--cold-runs", type=int, default=5)
    ap.add_argument("--warm-queries", type=int, default=60)
    ap.add_argument("--cold-only", action="store_true", help="only the cold process rows (no gallery, no warm)")
    args = ap.parse_args()
    for spec in args.models.split(","):
        report(spec, args.cold_runs, args.warm_queries, args.cold_only)


if __name__ == "__main__":
    main()
