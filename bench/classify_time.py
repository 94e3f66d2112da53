"""How long `clipsearch classify` and `clipsearch eval` take: the fast path (ONNX Runtime image tower + NumPy
text tower from the export cache, the default) against `--backend torch` (PyTorch + open_clip), measured in the
same run as whole processes, and where the time goes in each (imports, model load, decode + encode).

    python bench/classify_time.py                       # offline-mini, 3 runs of each, 36-image eval set
    python bench/classify_time.py --model ViT-B-32 --runs 5

The first, untimed run of the fast path makes the model's export when the cache has none (once per model).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from clipsearch.media import synthetic  # noqa: E402

LABELS = ",".join(f"{c} {s}" for c, s in synthetic.classes())

# One process, phase by phase: what the CLI does for `classify` (argv: model backend image labels).
PHASES = """
import json, sys, time
t0 = time.perf_counter()
model, backend, image, labels = sys.argv[1:5]
import numpy
import clipsearch.cli.model_commands
from clipsearch.tune.evaluate import class_embeddings, embed_images, load_scorer
from clipsearch.media.images import decode_paths
t_base = time.perf_counter()
if backend == "torch":
    import torch, open_clip  # what load_encoder imports first
else:
    import onnxruntime
t_import = time.perf_counter()
enc = load_scorer(model, backend=backend)
t_load = time.perf_counter()
pixels, _kept, _failed = decode_paths(enc, [image])
img = embed_images(enc, pixels)
t_image = time.perf_counter()
cls = class_embeddings(enc, labels.split(","))
t_text = time.perf_counter()
print(json.dumps({"python + clipsearch + numpy": t_base - t0, "import runtime (torch+open_clip | onnxruntime)":
                  t_import - t_base, "load model": t_load - t_import, "decode + encode image": t_image - t_load,
                  "encode 12 labels x templates": t_text - t_image}))
"""


def timed(cmd: list[str], runs: int) -> tuple[float, float]:
    """(median wall seconds, median CPU seconds) of whole processes."""
    walls, cpus = [], []
    for _ in range(runs):
        t = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _pid, status, usage = os.wait4(proc.pid, 0)
        walls.append(time.perf_counter() - t)
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"failed: {' '.join(cmd)}\n{proc.stderr.read().decode() if proc.stderr else ''}")
        cpus.append(usage.ru_utime + usage.ru_stime)
    return statistics.median(walls), statistics.median(cpus)


def top_imports(code: str, n: int = 5) -> list[tuple[str, float]]:
    """The top-level packages that cost most to import in `code` (`python -X importtime`), cumulative seconds."""
    run = subprocess.run([sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    cost: dict[str, float] = {}
    for line in run.stderr.splitlines():
        parts = line.split("|")
        if len(parts) != 3 or not parts[1].strip().isdigit():
            continue
        name = parts[2].rstrip()
        if name.startswith(" ") and not name.startswith("  "):  # a top-level import (one space of indent)
            top = name.strip().partition(".")[0]
            cost[top] = cost.get(top, 0.0) + int(parts[1]) / 1e6
    return sorted(cost.items(), key=lambda kv: -kv[1])[:n]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="offline-mini")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--per-class", type=int, default=3, help="eval set: images per class (12 classes)")
    args = ap.parse_args()

    env_cmd = [sys.executable, "-m", "clipsearch"]
    os.environ["PYTHONPATH"] = str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")
    with tempfile.TemporaryDirectory(prefix="cs-classify-bench-") as tmp:
        data = Path(tmp) / "set"
        synthetic.make_dataset(data, per_class=args.per_class, seed=3, class_folders=True)
        image = str(next(data.glob("red_circle/*.png")))
        classify = [*env_cmd, "classify", image, "--labels", LABELS, "--model", args.model, "--json"]
        evaluate = [*env_cmd, "eval", str(data), "--model", args.model, "--json"]
        subprocess.run(classify, check=True, capture_output=True)  # warm-up: the export, the page cache

        print(f"model {args.model}, median of {args.runs} runs each (wall s / CPU s), eval on "
              f"{12 * args.per_class} images, on {os.cpu_count()} CPUs")
        rows = {}
        for name, cmd in (("classify 1 image", classify), ("eval", evaluate)):
            torch_wall, torch_cpu = timed([*cmd, "--backend", "torch"], args.runs)
            fast_wall, fast_cpu = timed(cmd, args.runs)
            rows[name] = (fast_wall, torch_wall)
            print(f"{name:18s} fast {fast_wall:6.2f} / {fast_cpu:5.2f}   torch {torch_wall:6.2f} / {torch_cpu:5.2f}"
                  f"   -> {torch_wall / fast_wall:4.1f}x faster (CPU {torch_cpu / fast_cpu:4.1f}x)")

        print("\nwhere the time goes in `classify` (one process, seconds)")
        phases = {}
        for backend in ("onnx", "torch"):
            run = subprocess.run([sys.executable, "-c", PHASES, args.model, backend, image, LABELS],
                                 capture_output=True, text=True, check=True)
            phases[backend] = json.loads(run.stdout.strip().splitlines()[-1])
        print(f"{'phase':48s} {'fast':>6s} {'torch':>6s}")
        for phase in phases["onnx"]:
            print(f"{phase:48s} {phases['onnx'][phase]:6.2f} {phases['torch'][phase]:6.2f}")
        print(f"{'total':48s} {sum(phases['onnx'].values()):6.2f} {sum(phases['torch'].values()):6.2f}")

        for label, code in (("torch path", "import torch, open_clip"),
                            ("fast path", "import onnxruntime, clipsearch.cli.model_commands, "
                                          "clipsearch.encoders.numpy_text")):
            costs = ", ".join(f"{name} {sec:.2f}" for name, sec in top_imports(code))
            print(f"top imports, {label} (python -X importtime, cumulative s): {costs}")


if __name__ == "__main__":
    main()
