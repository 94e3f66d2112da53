"""Query latency and memory, cold and warm, against baselines measured in the same run.

Cold: wall time and peak RSS of `clipsearch query "..."` from process start to output, next to
`python -c "import torch"` (the floor for anything that loads torch) and to the same query answered through
the torch/open_clip model (what a tool without the NumPy text tower pays); a cold image query per backend.
Warm: text query p50/p99 inside one process, on the small store and on one grown to --vectors embeddings
(synthetic rows: the FAISS search and the catalog lookups at that size).

    python bench/query_latency.py                  # random-init ViT-B-32 (no weights download needed)
    python bench/query_latency.py --model offline-mini --vectors 0
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import clipsearch  # noqa: E402
from clipsearch.media import synthetic  # noqa: E402


def wall(cmd: list[str], runs: int) -> float:
    return wall_rss(cmd, runs)[0]


CPU: dict[str, float] = {}  # median CPU seconds (user + system) of each command measured: steadier than wall time
                            # on a shared machine, where waiting for a core counts in wall time only


def wall_rss(cmd: list[str], runs: int) -> tuple[float, float]:
    """(median wall seconds, peak RSS MB of the child itself) of whole processes; CPU[cmd] gets the median CPU.

    Linux carries a parent's RSS high-water mark into a forked child across exec, so this process stays small
    until every cold row is measured: the store is built and grown in subprocesses, warm rows come last."""
    times, cpu, peak = [], [], 0.0
    for _ in range(runs):
        t = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _pid, status, usage = os.wait4(proc.pid, 0)
        times.append(time.perf_counter() - t)
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"failed: {' '.join(cmd)}")
        cpu.append(usage.ru_utime + usage.ru_stime)
        peak = max(peak, usage.ru_maxrss / 1024)
    CPU[" ".join(cmd)] = statistics.median(cpu)
    return statistics.median(times), peak


def grow(store: Path, photos: Path, n: int, dim: int) -> None:
    """Add `n` synthetic rows with random unit embeddings under the store's root (files need not exist)."""
    from clipsearch.catalog.records import Encoded

    rng = np.random.default_rng(0)
    with clipsearch.open(store, create=False) as s:
        for start in range(0, n, 10_000):
            vecs = rng.standard_normal((min(10_000, n - start), dim)).astype(np.float32)
            vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
            rows = [Encoded(str(photos / f"synthetic/{start + i:07d}.jpg"), 1000, 1, f"{start + i:032x}", 256, 256,
                            "JPEG", v, None) for i, v in enumerate(vecs)]
            s.catalog.commit_chunk(rows, [], [])
        s.rebuild_vectors()


def warm(store: Path, query: str, n: int = 50) -> tuple[float, float, str]:
    with clipsearch.open(store, create=False) as s:
        s.search("warm-up")
        lat = []
        for i in range(n):
            t = time.perf_counter()
            s.search(f"{query} {i}", k=10)
            lat.append((time.perf_counter() - t) * 1e3)
        return float(np.percentile(lat, 50)), float(np.percentile(lat, 99)), type(s.text_encoder()).__name__


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="ViT-B-32")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--query", default="a dog on grass")
    ap.add_argument("--vectors", type=int, default=100_000, help="grow the store to this many for the warm row")
    ap.add_argument("--grow", nargs=3, metavar=("STORE", "PHOTOS", "N"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.grow:  # the subprocess that grows the store
        store_arg, photos_arg, n = args.grow
        with clipsearch.open(store_arg, create=False) as s:
            dim = s.dim
        grow(Path(store_arg), Path(photos_arg), int(n), dim)
        return
    with tempfile.TemporaryDirectory() as tmp:
        photos = Path(tmp) / "photos"
        synthetic.make_dataset(photos, per_class=4, seed=0, size=256, fmt="jpg")
        store = Path(tmp) / "index"
        py = sys.executable
        subprocess.run([py, "-m", "clipsearch", "index", str(photos), "--index", str(store), "--model", args.model],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        example = str(sorted(photos.glob("*.jpg"))[0])
        floor = wall([py, "-c", "import torch"], args.runs)
        bare = wall([py, "-c", "pass"], args.runs)
        cold, cold_rss = wall_rss([py, "-m", "clipsearch", "query", args.query, "--index", str(store), "--paths"],
                                  args.runs)
        cold_cpu = CPU[" ".join([py, "-m", "clipsearch", "query", args.query, "--index", str(store), "--paths"])]
        torch_path = wall([py, "-c", "import sys, clipsearch; "
                                     "s = clipsearch.open(sys.argv[1], create=False, backend='torch'); "
                                     "s.encoder; print(s.search(sys.argv[2], k=10)[0].path)",
                           str(store), args.query], args.runs)
        images = {b: wall_rss([py, "-m", "clipsearch", "query", "--image", example, "--index", str(store), "--paths",
                               "--backend", b], args.runs) for b in ("torch", "onnx")}
        small = Path(tmp) / "small"
        shutil.copytree(store, small)
        if args.vectors:
            subprocess.run([py, __file__, "--grow", str(store), str(photos), str(args.vectors)], check=True)
            big_cold, big_rss = wall_rss([py, "-m", "clipsearch", "query", args.query, "--index", str(store),
                                          "--paths"], args.runs)
        p50, p99, fast = warm(small, args.query)
        if args.vectors:
            big50, big99, _ = warm(store, args.query)
    print(f"model {args.model}; medians of {args.runs} runs")
    print(f"python -c 'pass' (interpreter start):             {bare:6.2f} s")
    print(f"python -c 'import torch' (floor for torch tools): {floor:6.2f} s")
    print(f"cold query through the torch model:               {torch_path:6.2f} s")
    print(f"cold clipsearch query (CLI, start to output):     {cold:6.2f} s   peak RSS {cold_rss:5.0f} MB   "
          f"CPU {cold_cpu:.2f} s (python -c pass: {CPU[' '.join([py, '-c', 'pass'])]:.2f} s)")
    for backend, (seconds, rss) in images.items():
        print(f"cold image query, --backend {backend:5s}:             {seconds:6.2f} s   peak RSS {rss:5.0f} MB")
    print(f"warm text query in-process ({fast}): p50 {p50:.1f} ms, p99 {p99:.1f} ms")
    if args.vectors:
        print(f"at {args.vectors + 48} vectors: warm p50 {big50:.1f} ms, p99 {big99:.1f} ms; "
              f"cold CLI query {big_cold:.2f} s, peak RSS {big_rss:.0f} MB")
    print(f"RATIO cold CLI / torch path: {cold / torch_path:.2f}; cold CLI / import-torch floor: {cold / floor:.2f}; "
          f"cold image query onnx / torch: {images['onnx'][0] / images['torch'][0]:.2f}")


if __name__ == "__main__":
    main()
