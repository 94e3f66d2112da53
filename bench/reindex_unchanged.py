"""Unchanged re-index: after a first `index` of many small files, a second run must cost about a directory
walk (one stat per file): target <= 2% of the first run's time.

    python bench/reindex_unchanged.py               # 50,000 files, the tiny shipped model
    python bench/reindex_unchanged.py --count 5000
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import clipsearch  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", type=int, default=50_000)
    ap.add_argument("--model", default="clipsearch-tiny")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "photos"
        t = time.perf_counter()
        for i in range(args.count):
            folder = root / f"{i // 1000:03d}"
            if i % 1000 == 0:
                folder.mkdir(parents=True)
            Image.fromarray(rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)).save(folder / f"{i:06d}.png",
                                                                                    compress_level=0)
        print(f"generated {args.count} files in {time.perf_counter() - t:.1f} s")
        with clipsearch.open(Path(tmp) / "index", model=args.model) as store:
            t = time.perf_counter()
            first = store.add([root])
            first_s = time.perf_counter() - t
            t = time.perf_counter()
            second = store.add([root])
            second_s = time.perf_counter() - t
        t = time.perf_counter()
        n = sum(len(files) for _, _, files in os.walk(root))
        walk_s = time.perf_counter() - t
    assert first.added == args.count and second.unchanged == args.count and second.encoded == 0
    print(f"first run:  {first_s:8.2f} s ({first.images_per_second:.0f} img/s)")
    print(f"second run: {second_s:8.2f} s (nothing changed; a bare os.walk of the {n} files takes {walk_s:.2f} s)")
    print(f"RATIO second/first: {second_s / first_s:.2%} (target <= 2%)")


if __name__ == "__main__":
    main()
