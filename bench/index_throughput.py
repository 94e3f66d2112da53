"""Indexing throughput and memory: whole `clipsearch index` processes per backend, against baselines measured
in the same run.

Rows (each a fresh `python -m clipsearch index DATA` subprocess into an empty store, start to exit, median of
--runs; peak RSS from the child's own rusage):
  * torch       --backend torch: today's path before ONNX (import torch + open_clip, build the model);
  * onnx fp32   --backend onnx --fp32 (the export exists: it is made once, before the timed runs);
  * onnx int8   --backend onnx --int8;
  * unchanged re-run of the default store (nothing to encode: the cost of a stat per file);
and, in this process, the seed-style loop the common tools run (full-size PIL decode, torchvision preprocess,
batch 8, no overlap). `--profile` adds where the time goes (decode-only and encode-only rates); `--int8`
adds int8's agreement with fp32 on real photos (skimage.data) and encode speeds per backend.

    python bench/index_throughput.py                                  # 48 JPEGs of 4000x3000, ViT-B-32-256
    python bench/index_throughput.py --count 192 --runs 3
    python bench/index_throughput.py --int8 --skip-index              # agreement + encode speeds only
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from clipsearch.media import synthetic  # noqa: E402
from clipsearch.media.images import decode_paths  # noqa: E402

# real photos of skimage.data (scans, drawings and tiny images left out)
SKIMAGE_PHOTOS = ("astronaut", "brick", "camera", "cell", "chelsea", "clock", "coffee", "coins", "grass", "gravel",
                  "hubble_deep_field", "immunohistochemistry", "moon", "retina", "rocket", "horse")


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


def run_process(cmd: list[str], env: dict | None = None) -> tuple[float, float, str]:
    """(wall seconds, peak RSS in MB of that child alone, stdout) of one whole process."""
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    out = proc.stdout.read() if proc.stdout else b""
    _pid, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(cmd)}")
    return wall, usage.ru_maxrss / 1024, out.decode()


def index_cmd(data: Path, store: Path, model: str, extra: list[str]) -> list[str]:
    return [sys.executable, "-m", "clipsearch", "index", str(data), "--index", str(store), "--model", model,
            "--json", *extra]


def whole_process_rows(data: Path, count: int, model: str, runs: int, batch: int | None) -> dict[str, dict]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    extra = ["--batch-size", str(batch)] if batch else []
    variants = {"torch": ["--backend", "torch"], "onnx fp32": ["--backend", "onnx", "--fp32"],
                "onnx int8": ["--backend", "onnx", "--int8"]}
    with tempfile.TemporaryDirectory() as tmp:
        warm = Path(tmp) / "warm"  # the one-time export and int8 quantisation, before the timed runs
        warm.mkdir()
        shutil.copy(sorted(data.glob("*.jpg"))[0], warm)
        for name in ("onnx fp32", "onnx int8"):
            wall, _rss, _ = run_process(index_cmd(warm, Path(tmp) / f"w-{name[-4:]}", model, variants[name]), env)
            print(f"first use of {name} (exports when the cache has no export yet): {wall:.1f} s")
        rows: dict[str, dict] = {name: {"wall": [], "rss": []} for name in variants}
        for r in range(runs):  # interleaved, so that load changes on the machine hit every variant alike
            for name, flags in variants.items():
                store = Path(tmp) / f"s-{r}-{name.replace(' ', '-')}"
                wall, rss, out = run_process(index_cmd(data, store, model, flags + extra), env)
                summary = json.loads(out)
                assert summary["encoded"] == count, summary
                rows[name]["wall"].append(wall)
                rows[name]["rss"].append(rss)
                print(f"  run {r + 1} {name}: {wall:.1f} s, {count / wall:.2f} img/s, peak RSS {rss:.0f} MB",
                      flush=True)
        rerun = [run_process(index_cmd(data, Path(tmp) / f"s-{r}-onnx-int8", model, []), env)
                 for r in range(runs)]
        rows["unchanged re-run"] = {"wall": [w for w, _r, _o in rerun], "rss": [r for _w, r, _o in rerun]}
    return rows


def baseline(paths: list[Path], model_spec: str) -> float:
    """The seed-style loop: full-size decode, torchvision preprocess, batch 8, no overlap."""
    import torch
    from PIL import Image

    from clipsearch.encoders.torch_encoder import load_encoder

    enc = load_encoder(model_spec, device="cpu")
    import open_clip

    preprocess = open_clip.image_transform(enc.image_size, is_train=False, mean=enc.mean, std=enc.std)
    t = time.perf_counter()
    for start in range(0, len(paths), 8):
        batch = torch.stack([preprocess(Image.open(p).convert("RGB")) for p in paths[start:start + 8]])
        with torch.inference_mode():
            enc.model.encode_image(batch)
    return len(paths) / (time.perf_counter() - t)


def onnx_encoder_for(model_spec: str, precision: str):
    from clipsearch.encoders.onnx_encoder import OnnxImageEncoder, find_export
    from clipsearch.encoders.spec import parse_spec

    spec = parse_spec(model_spec)
    export = find_export(spec.cache_key)
    assert export is not None, "run the index rows first (they export the model)"
    return OnnxImageEncoder(spec, export, precision, "cpu")


def encode_rate(enc, pixels: np.ndarray, batch: int) -> tuple[np.ndarray, float]:
    enc.encode_images(pixels[:batch])  # warm-up
    t = time.perf_counter()
    out = np.concatenate([enc.encode_images(pixels[i:i + batch]) for i in range(0, len(pixels), batch)])
    return out, len(pixels) / (time.perf_counter() - t)


def profile(paths: list[Path], model_spec: str, batch: int) -> None:
    """Where the time goes: decoding alone (threads) and encoding alone per backend, on the same images."""
    from clipsearch.encoders.torch_encoder import load_encoder

    torch_enc = load_encoder(model_spec, device="cpu")
    t = time.perf_counter()
    pixels, _kept, _failed = decode_paths(torch_enc, [str(p) for p in paths], workers=2)
    print(f"decode only (draft JPEG, 2 threads):        {len(paths) / (time.perf_counter() - t):6.2f} img/s")
    _, torch_rate = encode_rate(torch_enc, pixels, batch)
    print(f"encode only, torch fp32 (pre-decoded):      {torch_rate:6.2f} img/s")
    for precision in ("fp32", "int8"):
        _, rate = encode_rate(onnx_encoder_for(model_spec, precision), pixels, batch)
        print(f"encode only, onnx {precision} (pre-decoded):       {rate:6.2f} img/s  "
              f"RATIO {rate / torch_rate:.2f}x torch")


def skimage_gallery(size: int, resize_mode: str) -> tuple[np.ndarray, list[str]]:
    """12 views of each skimage.data photo (crops, flips, exposure, a small rotation) at the model's input size."""
    import skimage.data
    from PIL import Image, ImageEnhance

    from clipsearch.media.images import fit

    pixels, names = [], []
    for name in SKIMAGE_PHOTOS:
        arr = getattr(skimage.data, name)()
        if arr.dtype == bool:
            arr = arr.astype(np.uint8) * 255
        im = Image.fromarray(arr).convert("RGB")
        w, h = im.size
        views = [im, im.transpose(Image.Transpose.FLIP_LEFT_RIGHT), im.rotate(8, expand=False, fillcolor=(0, 0, 0)),
                 ImageEnhance.Brightness(im).enhance(0.7), ImageEnhance.Brightness(im).enhance(1.3),
                 ImageEnhance.Contrast(im).enhance(0.6), im.crop((w // 4, h // 4, w * 3 // 4, h * 3 // 4))]
        for fx, fy in ((0, 0), (1, 0), (0, 1), (1, 1)):  # 65% corner crops
            cw, ch = int(w * 0.65), int(h * 0.65)
            views.append(im.crop((fx * (w - cw), fy * (h - ch), fx * (w - cw) + cw, fy * (h - ch) + ch)))
        views.append(im.convert("L").convert("RGB"))
        for i, view in enumerate(views):
            pixels.append(np.asarray(fit(view, size, resize_mode), dtype=np.uint8))
            names.append(f"{name}#{i}")
    return np.stack(pixels), names


def topk_overlap(a: np.ndarray, b: np.ndarray, k: int = 10) -> float:
    """Mean |top-k(a) ∩ top-k(b)| / k, every image querying the others (itself left out)."""
    sa, sb = a @ a.T, b @ b.T
    np.fill_diagonal(sa, -np.inf)
    np.fill_diagonal(sb, -np.inf)
    ta, tb = np.argsort(-sa, axis=1)[:, :k], np.argsort(-sb, axis=1)[:, :k]
    return float(np.mean([len(set(x) & set(y)) / k for x, y in zip(ta, tb, strict=False)]))


def int8_report(model_spec: str, batch: int) -> None:
    """int8 against fp32 on real photos: cosine, top-10 agreement, and encode speeds (torch int8 beside)."""
    fp32_enc = onnx_encoder_for(model_spec, "fp32")
    pixels, _names = skimage_gallery(fp32_enc.image_size, fp32_enc.resize_mode)
    fp32, fp32_rate = encode_rate(fp32_enc, pixels, batch)
    int8, int8_rate = encode_rate(onnx_encoder_for(model_spec, "int8"), pixels, batch)
    from clipsearch.encoders.torch_encoder import load_encoder

    torch_enc = load_encoder(model_spec, device="cpu")
    tfp32, torch_rate = encode_rate(torch_enc, pixels, batch)
    print(f"int8 on {len(pixels)} views of {len(SKIMAGE_PHOTOS)} skimage.data photos, "
          f"model {model_spec}, batch {batch}:")
    print(f"  onnx fp32 vs torch fp32: min cosine {((fp32 * tfp32).sum(1)).min():.7f}, "
          f"top-10 overlap {topk_overlap(fp32, tfp32):.3f}")
    print(f"  onnx int8 vs onnx fp32:  mean cosine {(fp32 * int8).sum(1).mean():.5f}, "
          f"min {(fp32 * int8).sum(1).min():.5f}; top-10 overlap {topk_overlap(fp32, int8):.3f} "
          f"(default needs >= 0.98)")
    try:
        torch_enc.quantize_int8()
        t8, t8_rate = encode_rate(torch_enc, pixels, batch)
        torch_int8 = (f"; torch int8 {t8_rate:.2f} img/s (top-10 overlap with fp32 {topk_overlap(tfp32, t8):.3f})")
    except Exception as exc:  # noqa: BLE001 - e.g. a ResNet tower torch cannot quantise this way
        torch_int8 = f"; torch int8: {exc}"
    print(f"  encode: torch fp32 {torch_rate:.2f} img/s, onnx fp32 {fp32_rate:.2f} img/s, "
          f"onnx int8 {int8_rate:.2f} img/s{torch_int8}")
    print(f"  RATIO onnx int8 / onnx fp32 {int8_rate / fp32_rate:.2f}x, "
          f"onnx int8 / torch fp32 {int8_rate / torch_rate:.2f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", type=int, default=48)
    ap.add_argument("--png-every", type=int, default=0, help="every Nth file a PNG (0: JPEG only)")
    ap.add_argument("--model", default="ViT-B-32-256", help="model spec (default: random-init ViT-B-32-256)")
    ap.add_argument("--batch", type=int, default=None)
    ap.add_argument("--runs", type=int, default=3, help="whole-process runs per variant (median)")
    ap.add_argument("--no-baseline", action="store_true", help="skip the in-process seed-style loop")
    ap.add_argument("--profile", action="store_true", help="also decode-only and encode-only rates")
    ap.add_argument("--int8", action="store_true", help="also int8 agreement with fp32 on skimage.data photos")
    ap.add_argument("--skip-index", action="store_true", help="no index rows (with --int8: agreement only)")
    ap.add_argument("--data", type=Path, default=None)
    args = ap.parse_args()
    data = args.data or Path(tempfile.gettempdir()) / f"clipsearch-bench-photos-{args.count}"
    paths = photo_set(data, args.count, args.png_every)
    print(f"model {args.model}, {len(paths)} photos of 4000x3000 in {data}, {os.cpu_count()} cores")
    if not args.skip_index:
        rows = whole_process_rows(data, len(paths), args.model, args.runs, args.batch)
        base = None if args.no_baseline else baseline(paths, args.model)
        torch_rate = len(paths) / statistics.median(rows["torch"]["wall"])
        print(f"\nwhole processes, medians of {args.runs} (start to exit, model load included):")
        if base:
            print(f"  {'seed-style loop (in-process, no load)':38s} {base:6.2f} img/s")
        for name, row in rows.items():
            wall, rss = statistics.median(row["wall"]), max(row["rss"])
            if name == "unchanged re-run":
                print(f"  {name:38s} {wall:6.3f} s        peak RSS {rss:6.0f} MB")
                continue
            rate = len(paths) / wall
            ratios = f"RATIO {rate / torch_rate:.2f}x torch" + (f", {rate / base:.2f}x seed-style" if base else "")
            print(f"  {name:38s} {rate:6.2f} img/s   peak RSS {rss:6.0f} MB   {ratios}   "
                  f"(runs: {', '.join(f'{w:.1f}' for w in row['wall'])} s)")
    if args.profile:
        profile(paths, args.model, args.batch or 32)
    if args.int8:
        int8_report(args.model, args.batch or 32)


if __name__ == "__main__":
    main()
