"""GPU throughput: encoding from pre-decoded pixels and from JPEG files end to end, decode workers swept, and
FAISS on the GPU against the CPU at 1M vectors; every ratio against a baseline measured in the same run.

Sections (each prints its rows; one SUMMARY block closes the run):
  * decode   the pipeline's decode (read, hash, JPEG draft, resize to 224) on a thread pool of 1..N workers over
             camera-sized JPEGs: images/s per worker count. Runs everywhere (no GPU needed).
  * encode   images/s of the library's torch encoder on CUDA (fp16 autocast) at batch 256 from pre-decoded uint8
             pixels, ViT-B-32 and ViT-L-14 with seeded random weights (no download); and ONNX Runtime's CUDA
             provider (fp32, the default GPU backend) for ViT-B-32 when onnxruntime-gpu is installed.
  * e2e      `Store.add` of the JPEG files into a new store (torch backend, fp16, batch 256) per model and worker
             count: images/s after the model load. Where it stays near the decode-only rate, decoding is the
             bottleneck; where it reaches the encode rate, the GPU is.
  * faiss    1M clustered 512-d vectors: flat search on the GPU copy against the CPU (same ids checked), p50 of
             single queries and a batch of 1000; IVF and IVF-PQ builds with their k-means on the GPU
             (`VectorIndex.build(device=...)`) against the CPU build, with recall@10 against exact search.

Without CUDA only `decode` runs, and the run says so.

    python bench/gpu_throughput.py                      # everything this machine can run
    python bench/gpu_throughput.py --decode-only --files 96 --unique 24 --workers 1,2,3,4
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from clipsearch.media import synthetic  # noqa: E402

SUMMARY: list[str] = []


def note(line: str) -> None:
    print(line, flush=True)
    SUMMARY.append(line)


def cuda_ready() -> str | None:
    """None when torch sees a CUDA GPU, else why not."""
    try:
        import torch
    except ImportError:
        return "torch is not installed"
    return None if torch.cuda.is_available() else "no CUDA GPU found (torch.cuda.is_available() is False)"


def _one_photo(args: tuple[Path, int, int, int]) -> Path:
    folder, index, width, height = args
    return synthetic.make_photos(folder / f"u{index:03d}", 1, width, height, seed=index)[0]


def photo_files(folder: Path, files: int, unique: int, width: int, height: int) -> list[str]:
    """`files` JPEGs made from `unique` generated camera-sized photos (in parallel); the copies differ by a
    trailing byte, so each is a distinct file to hash, and decodes to the same pixels."""
    t = time.perf_counter()
    with ProcessPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        originals = list(pool.map(_one_photo, [(folder, i, width, height) for i in range(unique)]))
    paths = []
    for i in range(files):
        data = originals[i % unique].read_bytes() + bytes([i % 251])
        path = folder / "photos" / f"{i // 1000:03d}" / f"p{i:06d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        paths.append(str(path))
    print(f"made {files} JPEGs of {width}x{height} from {unique} generated photos in {time.perf_counter() - t:.1f} s")
    return paths


class _File(NamedTuple):
    path: str  # what decode_stream reads of a scanned file's facts


def decode_rate(paths: list[str], workers: int, size: int = 224) -> float:
    """Images/s of the pipeline's decode stage alone (`decode_stream` + `read_and_decode`), as indexing runs it."""
    from clipsearch.indexing.pipeline import decode_stream
    from clipsearch.media.images import read_and_decode

    items: list[Any] = [(_File(p), None) for p in paths]
    t = time.perf_counter()
    for _f, _k, fut in decode_stream(items, lambda p: read_and_decode(p, size), workers, prefetch=256 * 3):
        fut.result()
    return len(paths) / (time.perf_counter() - t)


def bench_decode(paths: list[str], sweep: list[int]) -> dict[int, float]:
    """Each worker count decodes 48 files per worker (at least 64): about a second per point on any machine."""
    decode_rate(paths[: max(8, len(paths) // 8)], max(sweep))  # page cache and imports warm
    rates = {w: decode_rate(paths[: max(64, 48 * w)], w) for w in sweep}
    base = rates[sweep[0]]
    note("decode only (read + hash + decode + resize to 224), images/s by workers: "
         + ", ".join(f"{w}: {r:.0f} ({r / base:.2f}x)" for w, r in rates.items()))
    return rates


def encode_rate(encoder: Any, batch: int, batches: int) -> float:
    pixels = np.random.default_rng(0).integers(0, 256, (batch, encoder.image_size, encoder.image_size, 3),
                                               dtype=np.uint8)
    for _ in range(2):
        encoder.encode_images(pixels)  # warm-up: kernels chosen, memory pools filled
    t = time.perf_counter()
    for _ in range(batches):
        encoder.encode_images(pixels)  # returns numpy: the GPU work is finished when it returns
    return batch * batches / (time.perf_counter() - t)


def bench_encode(models: list[str], batch: int, batches: int) -> dict[str, float]:
    from clipsearch.encoders.torch_encoder import load_encoder

    rates = {}
    for arch in models:
        enc = load_encoder(arch, device="cuda")
        rates[arch] = encode_rate(enc, batch, batches)
        note(f"encode {arch} torch fp16 (autocast) on CUDA, batch {batch}, pre-decoded: {rates[arch]:.0f} images/s")
        del enc
        _free_cuda()
    try:
        from clipsearch.encoders import onnx_encoder as ox
        from clipsearch.encoders.factory import load_image_encoder
        from clipsearch.encoders.spec import parse_spec

        if ox.cuda_runtime():
            t = time.perf_counter()
            onnx = load_image_encoder(parse_spec(models[0]), backend="onnx", precision="fp32", device="cuda")
            load = time.perf_counter() - t
            rate = encode_rate(onnx, batch, batches)
            note(f"encode {models[0]} onnx fp32 on CUDAExecutionProvider, batch {batch}: {rate:.0f} images/s "
                 f"({rate / rates[models[0]]:.2f}x torch fp16; export + load {load:.0f} s)")
        else:
            note("encode onnx on CUDA: skipped (this onnxruntime has no CUDAExecutionProvider)")
    except Exception as exc:  # a failure here is a finding to report, not a reason to lose the other rows
        note(f"encode onnx on CUDA: FAILED {type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
    return rates


def _free_cuda() -> None:
    import gc

    import torch

    gc.collect()
    torch.cuda.empty_cache()


def bench_e2e(paths: list[str], models: list[str], sweep: list[int], batch: int, decode: dict[int, float],
              encode: dict[str, float], work: Path) -> None:
    import clipsearch

    e2e_sweep = [w for w in sweep if w >= max(1, max(sweep) // 8)]  # 1 or 2 workers only show the decode floor
    for arch in models:
        row = []
        for w in e2e_sweep:
            store = work / f"store-{arch}-{w}"
            with clipsearch.open(store, model=arch, device="cuda", backend="torch") as s:
                summary = s.add([str(Path(paths[0]).parent.parent)], batch_size=batch, workers=w)
            shutil.rmtree(store, ignore_errors=True)
            rate = summary.encoded / max(summary.seconds - summary.model_seconds, 1e-9)
            bound = "decode-bound" if rate < 0.8 * encode[arch] and rate >= 0.7 * decode[w] else \
                "encode-bound" if rate >= 0.8 * encode[arch] else "other"
            row.append(f"{w}: {rate:.0f} ({bound})")
            _free_cuda()
        note(f"end to end {arch} fp16 from JPEG files (Store.add, batch {batch}), images/s by decode workers: "
             + ", ".join(row))


def clustered(n: int, dim: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((max(16, n // 1000), dim), dtype=np.float32)
    vecs = centers[rng.integers(0, len(centers), n)] + 0.6 * rng.standard_normal((n, dim), dtype=np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    return vecs


def _p50_ms(index: Any, queries: np.ndarray, k: int) -> float:
    times = []
    for q in queries:
        t = time.perf_counter()
        index.search(q[None], k)
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def bench_faiss(n: int, dim: int = 512, k: int = 10) -> None:
    from clipsearch.vectors.index import VectorIndex

    t = time.perf_counter()
    vecs = clustered(n, dim, seed=1)
    ids = np.arange(n, dtype=np.int64)
    queries = clustered(1000, dim, seed=2)
    print(f"made {n} vectors in {time.perf_counter() - t:.1f} s")
    cpu = VectorIndex.build(ids, vecs, dim, "flat", device="cpu")
    gpu = VectorIndex.build(ids, vecs, dim, "flat", device="cuda")
    if not gpu.searches_on_gpu:
        note("faiss: skipped (this faiss is not the GPU build, or sees no GPU)")
        return
    exact = cpu.search(queries, k)[1]
    same = float(np.mean([set(a) == set(b) for a, b in zip(exact, gpu.search(queries, k)[1], strict=True)]))
    cpu_p50, gpu_p50 = _p50_ms(cpu, queries[:20], k), _p50_ms(gpu, queries[:200], k)
    t = time.perf_counter()
    cpu.search(queries, k)
    cpu_batch = time.perf_counter() - t
    t = time.perf_counter()
    gpu.search(queries, k)
    gpu_batch = time.perf_counter() - t
    note(f"faiss flat {n}: one query p50 cpu {cpu_p50:.1f} ms, gpu {gpu_p50:.2f} ms ({cpu_p50 / gpu_p50:.0f}x); "
         f"1000 queries cpu {cpu_batch:.2f} s, gpu {gpu_batch:.3f} s ({cpu_batch / gpu_batch:.0f}x); "
         f"same top-{k} ids {same:.3f}")
    del cpu, gpu
    for kind in ("ivf", "ivfpq"):
        built = {}
        for device in ("cpu", "cuda"):
            t = time.perf_counter()
            vi = VectorIndex.build(ids, vecs, dim, kind, device=device)
            seconds = time.perf_counter() - t
            got = vi.search(queries[:200], k)[1]
            recall = float(np.mean([len(set(a) & set(b)) / k for a, b in zip(exact[:200], got, strict=True)]))
            built[device] = (seconds, recall, _p50_ms(vi, queries[:50], k))
            del vi
        (cs, cr, cq), (gs, gr, gq) = built["cpu"], built["cuda"]
        note(f"faiss {kind} {n}: build cpu {cs:.1f} s, gpu k-means {gs:.1f} s ({cs / gs:.1f}x); recall@{k} "
             f"cpu-built {cr:.3f}, gpu-built {gr:.3f}; one query p50 {cq:.2f} / {gq:.2f} ms")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", type=int, default=1024, help="JPEG files for decode and end to end")
    ap.add_argument("--unique", type=int, default=64, help="distinct generated photos among them")
    ap.add_argument("--photo", default="4000x3000", help="photo size WxH (camera-sized by default)")
    ap.add_argument("--workers", default="", help="decode worker counts to sweep (default: 1, 2, 4, ... CPUs)")
    ap.add_argument("--models", default="ViT-B-32,ViT-L-14")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--batches", type=int, default=10, help="timed batches per encode row")
    ap.add_argument("--faiss-n", type=int, default=1_000_000)
    ap.add_argument("--decode-only", action="store_true")
    ap.add_argument("--json", type=Path, help="also write the summary lines here")
    args = ap.parse_args()
    cpus = len(os.sched_getaffinity(0))
    sweep = [int(w) for w in args.workers.split(",")] if args.workers else \
        sorted({1, *[2 ** i for i in range(1, 8) if 2 ** i < cpus], cpus, 2 * cpus})
    width, height = (int(v) for v in args.photo.split("x"))
    models = [m for m in args.models.split(",") if m]
    why = None if args.decode_only else cuda_ready()
    note(f"machine: {cpus} CPUs" + (f", {_gpu_name()}" if why is None and not args.decode_only else ""))
    with tempfile.TemporaryDirectory(prefix="clipsearch-gpu-bench-") as tmp:
        work = Path(tmp)
        paths = photo_files(work, args.files, args.unique, width, height)
        decode = bench_decode(paths, sweep)
        if args.decode_only:
            pass
        elif why is not None:
            note(f"{why}: the encode, end-to-end and FAISS GPU rows were not run")
        else:
            encode = bench_encode(models, args.batch, args.batches)
            bench_e2e(paths, models, sweep, args.batch, decode, encode, work)
            bench_faiss(args.faiss_n)
    print("\n===== gpu_throughput summary =====")
    print("\n".join(SUMMARY))
    if args.json:
        args.json.write_text(json.dumps(SUMMARY, indent=1))
    return 0


def _gpu_name() -> str:
    import torch

    return f"{torch.cuda.get_device_name(0)} (torch {torch.__version__}, CUDA {torch.version.cuda})"


if __name__ == "__main__":
    sys.exit(main())
