"""What gradient checkpointing and cached-feature accumulation buy: peak memory and time of training steps.

Each mode runs in a fresh process (peak RSS is a process's high-water mark): a randomly initialised CLIP
(no weights to download) trains a few steps on random 224 px images at one contrastive batch size. Baseline:
the plain step in the same run. Ratios are what to read; absolute numbers depend on the machine's load.

    flock /tmp/clipsearch-bench.lock python bench/finetune_memory.py [--model ViT-B-32] [--batch 64] [--steps 2]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

CHILD = r"""
import json, resource, sys, time
import numpy as np
from clipsearch.encoders.torch_encoder import load_encoder
from clipsearch.tune.config import TrainConfig, resolve_config
from clipsearch.tune.training import train_contrastive

model, batch, steps, checkpointing, accumulate = (sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1",
                                                  int(sys.argv[5]))
enc = load_encoder(model, device="cpu")
size = enc.image_size
n = batch * steps
images = np.random.default_rng(0).integers(0, 256, (n, size, size, 3), dtype=np.uint8)
captions = [f"photo number {i % 97}" for i in range(n)]
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
cfg = resolve_config(TrainConfig(epochs=1, batch_size=batch // accumulate, accumulate=accumulate, hflip=False,
                                 grad_checkpointing=checkpointing, freeze_bn=True), "random-init", n)
start = time.perf_counter()
history = train_contrastive(enc, images, captions, None, cfg)
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"peak_mb": peak, "loaded_mb": before, "seconds_per_step": seconds / history.steps,
                  "steps": history.steps, "loss": history.losses[-1]}))
"""


def measure(model: str, batch: int, steps: int, checkpointing: bool, accumulate: int) -> dict:
    done = subprocess.run([sys.executable, "-c", CHILD, model, str(batch), str(steps), "1" if checkpointing else "0",
                           str(accumulate)], capture_output=True, text=True, cwd=Path(__file__).resolve().parent.parent)
    if done.returncode:
        raise SystemExit(done.stderr[-2000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="ViT-B-32")
    ap.add_argument("--batch", type=int, default=64, help="contrastive batch size (images per optimizer step)")
    ap.add_argument("--steps", type=int, default=2)
    args = ap.parse_args()
    modes = [("plain (baseline)", False, 1), ("--grad-checkpointing", True, 1), ("--accumulate 4", False, 4),
             ("both", True, 4)]
    base = None
    print(f"{args.model}, contrastive batch {args.batch}, {args.steps} steps, CPU")
    print("| mode | peak RSS | above the loaded model | × baseline | s/step | × baseline |")
    print("|---|---|---|---|---|---|")
    for name, ckpt, acc in modes:
        r = measure(args.model, args.batch, args.steps, ckpt, acc)
        r["train_mb"] = r["peak_mb"] - r["loaded_mb"]
        base = base or r
        print(f"| {name} | {r['peak_mb']:.0f} MB | {r['train_mb']:.0f} MB | {r['train_mb'] / base['train_mb']:.2f} | "
              f"{r['seconds_per_step']:.1f} | {r['seconds_per_step'] / base['seconds_per_step']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
