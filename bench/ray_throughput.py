"""Indexing on Ray on one machine against the plain local run, same photos, same model, same process.

Both rows index the same generated JPEGs into an empty store with `Store.add` (model load included: the Ray
actors load their own copy) at the store's default precision (int8 on a CPU); the Ray row uses a local Ray
with `--cpus` CPUs started beforehand (its start-up is printed apart). The two stores' embeddings are compared.
On one small machine Ray can only add overhead (actor start, a second model, serialising results); the point of
Ray is more machines.

    python bench/ray_throughput.py                      # 96 photos of 1600x1200, ViT-B-32-256 (random init)
    python bench/ray_throughput.py --count 192 --runs 2
"""

from __future__ import annotations

import argparse
import logging
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import clipsearch  # noqa: E402
from clipsearch.media import synthetic  # noqa: E402


def index_once(data: Path, store_path: Path, model: str, ray_address: str | None) -> tuple[float, int]:
    shutil.rmtree(store_path, ignore_errors=True)
    t = time.perf_counter()
    with clipsearch.open(store_path, model=model) as store:
        summary = store.add([data], ray_address=ray_address)
    return time.perf_counter() - t, summary.encoded


def embeddings(store_path: Path) -> dict[str, np.ndarray]:
    with clipsearch.open(store_path) as store:
        _v, ids, vecs = store.catalog.all_embeddings(store.dim)
        recs = store.catalog.images([int(i) for i in ids])
        return {recs[int(i)].path: v for i, v in zip(ids, vecs, strict=False)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", type=int, default=96)
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray")
    ap.add_argument("--model", default="ViT-B-32-256")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="clipsearch-ray-bench-"))
    try:
        data = work / "photos"
        t = time.perf_counter()
        synthetic.make_photos(data, args.count, width=1600, height=1200)
        print(f"generated {args.count} photos of 1600x1200 in {time.perf_counter() - t:.1f} s")
        t = time.perf_counter()
        with clipsearch.open(work / "warm", model=args.model) as store:  # the model export, made once
            store.add([data / sorted(p.name for p in data.iterdir())[0]])
        print(f"model export ready in {time.perf_counter() - t:.1f} s (not timed below)")

        import ray

        t = time.perf_counter()
        ray.init(num_cpus=args.cpus, include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
        print(f"ray.init(num_cpus={args.cpus}) in {time.perf_counter() - t:.1f} s (not timed below)")
        rows: dict[str, list[float]] = {"local": [], "ray": []}
        for _ in range(args.runs):
            for name, address in (("local", None), ("ray", "local")):
                seconds, encoded = index_once(data, work / name, args.model, address)
                assert encoded == args.count, (name, encoded)
                rows[name].append(seconds)
        a, b = embeddings(work / "local"), embeddings(work / "ray")
        diff = max(float(np.abs(a[p] - b[p]).max()) for p in a)
        base = statistics.median(rows["local"])
        print(f"{'':8} {'seconds':>8} {'img/s':>7} {'ratio':>6}   ({args.count} photos, {args.model}, "
              f"median of {args.runs}, model load included)")
        for name, times in rows.items():
            med = statistics.median(times)
            print(f"{name:8} {med:8.2f} {args.count / med:7.2f} {base / med:6.2f}x")
        print(f"same paths in both stores: {sorted(a) == sorted(b)}; largest embedding difference {diff:.2e}")
        ray.shutdown()
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
