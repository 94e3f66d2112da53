"""Indexing throughput: clipsearch `index` vs a seed-style baseline loop, same model, same files, same run.

The baseline is what the common tools do: PIL open at full size → convert → open_clip's torchvision
preprocess → encode, one batch of 8 at a time, no prefetch. We also time pure encoding on pre-decoded
tensors (the ceiling) and decoding alone, to show where the time goes.

    python bench/index_throughput.py                      # 48 JPEGs of 4000x3000, random-init ViT-B-32
    python bench/index_throughput.py --count 200 --png-every 10 --model clipsearch-tiny
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from clipsearch import synthetic  # noqa: E402
from clipsearch.images import decode_paths  # noqa: E402


def photo_set(folder: Path, count: int, png_every: int) -> list[Path]:
    marker = folder / f".complete-{count}-{png_every}"
    if marker.exists():
        return sorted(p for p in folder.iterdir() if p.suffix in (".jpg", ".png"))
    shutil.rmtree(folder, ignore_errors=True)
    t = time.perf_counter()
    paths = synthetic.make_photos(folder, count, png_every=png_every)
    marker.touch()
    print(f"generated {count} photos of 4000x3000 in {time.perf_counter() - t:.1f} s")
    return paths


def baseline(paths: list[Path], model_spec: str) -> float:
    """The seed-style loop: full-size decode, torchvision preprocess, batch 8, no overlap."""
    import torch
    from PIL import Image

    from clipsearch.models import load_encoder

    enc = load_encoder(model_spec, device="cpu")
    import open_clip

    preprocess = open_clip.image_transform(enc.image_size, is_train=False, mean=enc.mean, std=enc.std)
    t = time.perf_counter()
    for start in range(0, len(paths), 8):
        batch = torch.stack([preprocess(Image.open(p).convert("RGB")) for p in paths[start:start + 8]])
        with torch.inference_mode():
            enc.model.encode_image(batch)
    return len(paths) / (time.perf_counter() - t)


def pure_encode(paths: list[Path], model_spec: str, batch: int) -> tuple[float, float]:
    """(decode-only img/s with our threaded decoder, encode-only img/s on pre-decoded tensors)."""
    from clipsearch.models import load_encoder

    enc = load_encoder(model_spec, device="cpu")
    t = time.perf_counter()
    pixels, _kept, _failed = decode_paths(enc, [str(p) for p in paths], workers=2)
    decode_rate = len(paths) / (time.perf_counter() - t)
    enc.encode_images(pixels[:batch])  # warm-up
    t = time.perf_counter()
    for start in range(0, len(pixels), batch):
        enc.encode_images(pixels[start:start + batch])
    encode_rate = len(paths) / (time.perf_counter() - t)
    return decode_rate, encode_rate


def int8_comparison(paths: list[Path], model_spec: str, batch: int) -> tuple[float, float, float, float]:
    """(fp32 img/s, int8 img/s, mean cosine fp32↔int8, overlap@10 of image→image neighbours)."""
    from clipsearch.models import load_encoder

    enc = load_encoder(model_spec, device="cpu")
    pixels, _kept, _failed = decode_paths(enc, [str(p) for p in paths], workers=2)

    def run() -> tuple[np.ndarray, float]:
        enc.encode_images(pixels[:batch])
        t = time.perf_counter()
        out = np.concatenate([enc.encode_images(pixels[i:i + batch]) for i in range(0, len(pixels), batch)])
        return out, len(pixels) / (time.perf_counter() - t)

    fp32, fp32_rate = run()
    enc.quantize_int8()
    int8, int8_rate = run()
    k = min(10, len(pixels) - 1)
    s32, s8 = fp32 @ fp32.T, int8 @ int8.T
    overlap = np.mean([len(set(np.argsort(-s32[i])[1:k + 1]) & set(np.argsort(-s8[i])[1:k + 1])) / k
                       for i in range(len(pixels))])
    return fp32_rate, int8_rate, float((fp32 * int8).sum(1).mean()), float(overlap)


def clipsearch_index(paths_dir: Path, model_spec: str, batch: int | None) -> tuple[float, float, float]:
    """(end-to-end img/s of a first `index` run incl. model load, img/s excluding model load, re-run s)."""
    import clipsearch

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        store = clipsearch.open(Path(tmp) / "index", model=model_spec, device="cpu")
        store.encoder  # noqa: B018 - load the model
        t_model = time.perf_counter() - t0
        summary = store.add([paths_dir], batch_size=batch)
        total = time.perf_counter() - t0
        t1 = time.perf_counter()
        again = store.add([paths_dir])
        rerun = time.perf_counter() - t1
        assert again.encoded == 0
        store.close()
    return summary.encoded / total, summary.encoded / (total - t_model), rerun


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", type=int, default=48)
    ap.add_argument("--png-every", type=int, default=0, help="every Nth file a PNG (0: JPEG only)")
    ap.add_argument("--model", default="ViT-B-32", help="model spec (default: random-init ViT-B-32)")
    ap.add_argument("--batch", type=int, default=None)
    ap.add_argument("--int8", action="store_true", help="also compare int8 dynamic quantisation with fp32")
    ap.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "clipsearch-bench-photos")
    args = ap.parse_args()
    paths = photo_set(args.data, args.count, args.png_every)
    print(f"model {args.model}, {len(paths)} photos of 4000x3000 in {args.data}")
    base = baseline(paths, args.model)
    print(f"baseline (full decode, torchvision preprocess, batch 8):   {base:6.2f} img/s")
    ours_total, ours_net, rerun = clipsearch_index(args.data, args.model, args.batch)
    print(f"clipsearch index, end to end incl. model load:            {ours_total:6.2f} img/s")
    print(f"clipsearch index, excluding model load:                   {ours_net:6.2f} img/s")
    decode_rate, encode_rate = pure_encode(paths, args.model, args.batch or 32)
    print(f"decode only (draft JPEG, 2 threads):                      {decode_rate:6.2f} img/s")
    print(f"encode only (pre-decoded tensors):                        {encode_rate:6.2f} img/s")
    print(f"unchanged re-run:                                         {rerun:6.3f} s")
    print(f"RATIO clipsearch/baseline: {ours_total / base:.2f}x end to end, {ours_net / base:.2f}x excluding model load")
    print(f"RATIO clipsearch/pure-encode: {ours_net / encode_rate:.2f} (target >= 0.85: decoding is not the bottleneck)")
    if args.int8:
        f32, i8, cos, overlap = int8_comparison(paths, args.model, args.batch or 32)
        print(f"encode fp32 {f32:.2f} img/s, int8 {i8:.2f} img/s: RATIO {i8 / f32:.2f}x; "
              f"mean cosine fp32-int8 {cos:.5f}, neighbour overlap@10 {overlap:.3f}")


if __name__ == "__main__":
    main()
