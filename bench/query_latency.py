"""Query latency, cold and warm, against baselines measured in the same run.

Cold: wall time of `clipsearch query "..."` from process start to output, next to `python -c "import torch"`
(the floor for anything that loads torch) and to the same query answered through the torch/open_clip
model (what a tool without the NumPy text tower pays). Warm: text query p50/p99 inside one process.

    python bench/query_latency.py                  # random-init ViT-B-32 (no weights download needed)
    python bench/query_latency.py --model offline-mini
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

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import clipsearch  # noqa: E402
from clipsearch import synthetic  # noqa: E402


def wall(cmd: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="ViT-B-32")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--query", default="a dog on grass")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        photos = Path(tmp) / "photos"
        synthetic.make_dataset(photos, per_class=4, seed=0, size=256, fmt="jpg")
        store = Path(tmp) / "index"
        with clipsearch.open(store, model=args.model) as s:
            s.add([photos])
        py = sys.executable
        floor = wall([py, "-c", "import torch"], args.runs)
        cold = wall([py, "-m", "clipsearch", "query", args.query, "--index", str(store), "--paths"], args.runs)
        torch_path = wall([py, "-c", "import sys, clipsearch; s = clipsearch.open(sys.argv[1], create=False); "
                               "s.encoder; print(s.search(sys.argv[2], k=10)[0].path)", str(store), args.query], args.runs)
        with clipsearch.open(store, create=False) as s:
            s.search("warm-up")
            lat = []
            for i in range(50):
                t = time.perf_counter()
                s.search(f"{args.query} {i}", k=10)
                lat.append((time.perf_counter() - t) * 1e3)
            fast = type(s.text_encoder()).__name__
    print(f"model {args.model}; medians of {args.runs} runs")
    print(f"python -c 'import torch' (floor for torch tools): {floor:6.2f} s")
    print(f"cold query through the torch model:               {torch_path:6.2f} s")
    print(f"cold clipsearch query (CLI, start to output):     {cold:6.2f} s")
    print(f"warm text query in-process ({fast}): p50 {np.percentile(lat, 50):.1f} ms, p99 {np.percentile(lat, 99):.1f} ms")
    print(f"RATIO cold CLI / torch path: {cold / torch_path:.2f}; cold CLI / import-torch floor: {cold / floor:.2f}")


if __name__ == "__main__":
    main()
