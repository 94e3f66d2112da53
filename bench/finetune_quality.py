"""Does `clipsearch finetune` with its defaults help on real images it has never seen? Builds held-out domain
sets from images that ship with packages, fine-tunes each model with the CLI's defaults (no flags), and prints
base → fine-tuned → shipped on the test split with n, Wilson 95% intervals, the paired gain interval and the
settings the defaults chose.

    flock /tmp/clipsearch-bench.lock python bench/finetune_quality.py [--models offline-mini clipsearch-tiny]
        [--sets digits textures] [--per-class 30] [--json results.json]

Sets: `digits` — scikit-learn's 8×8 handwritten digits upscaled to 64 px RGB (10 classes, "digit three");
`digits-small` — the same with 8 per class (80 images: small enough that the defaults cross-validate);
`textures` — non-overlapping 64 px tiles of scikit-image photos (brick wall, grass, gravel, moon craters,
star field, stained tissue: 6 classes); `captions` — 300 of those digits inked in colour on coloured paper,
each with a one-line caption ("a red handwritten seven on yellow paper"), scored by text→image recall@5.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from clipsearch.media.synthetic import make_digits  # noqa: E402

TEXTURES = {"brick_wall": "brick", "grass": "grass", "gravel": "gravel", "moon_craters": "moon",
            "star_field": "hubble_deep_field", "stained_tissue": "immunohistochemistry"}


def make_textures(root: Path, per_class: int, seed: int = 0, tile: int = 64) -> Path:
    import skimage.data
    from PIL import Image

    rng = np.random.default_rng(seed)
    for name, source in TEXTURES.items():
        img = getattr(skimage.data, source)()
        h, w = img.shape[:2]
        tiles = [(y, x) for y in range(0, h - tile + 1, tile) for x in range(0, w - tile + 1, tile)]
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for k in rng.permutation(len(tiles))[:per_class]:
            y, x = tiles[k]
            Image.fromarray(img[y:y + tile, x:x + tile]).convert("RGB").save(folder / f"{y}_{x}.png")
    return root


INKS = {"red": (200, 30, 30), "green": (30, 150, 40), "blue": (30, 50, 200), "black": (20, 20, 20)}
PAPERS = {"white": (250, 250, 250), "yellow": (245, 225, 90), "grey": (150, 150, 150)}


def make_captions(root: Path, count: int, seed: int = 0) -> Path:
    """A caption set from real handwriting: digit, ink and paper vary independently, so a caption names three
    things an image must match. Written as captions.csv (image, caption)."""
    from PIL import Image
    from sklearn.datasets import load_digits

    from clipsearch.media.synthetic import DIGIT_NAMES

    d = load_digits()
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    rows = ["image,caption"]
    for n, i in enumerate(rng.permutation(len(d.images))[:count]):
        ink, paper = rng.choice(list(INKS)), rng.choice(list(PAPERS))
        mask = (d.images[i] / 16.0)[:, :, None]
        pixels = (mask * np.asarray(INKS[ink]) + (1 - mask) * np.asarray(PAPERS[paper])).astype(np.uint8)
        Image.fromarray(pixels).resize((64, 64), Image.BILINEAR).save(root / f"{n}.png")
        rows.append(f"{n}.png,a {ink} handwritten {DIGIT_NAMES[d.target[i]]} on {paper} paper")
    (root / "captions.csv").write_text("\n".join(rows) + "\n")
    return root / "captions.csv"


MAKERS = {"digits": make_digits, "digits-small": make_digits, "textures": make_textures, "captions": make_captions}
DEFAULT_SIZE = {"digits": 30, "digits-small": 8, "textures": 50, "captions": 300}


def run(set_dir: Path, model: str, out: Path) -> dict:
    cmd = [sys.executable, "-m", "clipsearch", "finetune", str(set_dir), "--out", str(out), "--model", model, "--json"]
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy())
    if done.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr[-2000:]}")
    report = json.loads(done.stdout)
    report["wall_seconds"] = time.perf_counter() - start
    return report


def row(set_name: str, model: str, r: dict) -> str:
    k = r["key_metric"]
    iv = r["intervals"]
    cell = {name: f"{r[name][k]:.3f} [{iv[name][0]:.2f}-{iv[name][1]:.2f}]"
            for name in ("base", "finetuned", "blended")}
    g = r["gain"]
    s = r["settings"]
    return (f"| {set_name} | {model} | {r['train_images']}/{r['val_images']}/{r['test_images']} | {cell['base']} | "
            f"{cell['finetuned']} | {cell['blended']} (α {r['alpha']:g}, {r['shipped']}) | "
            f"{g['difference']:+.3f} [{g['low']:+.3f}..{g['high']:+.3f}] | lr {s['lr']:g}, batch {s['batch_size']}, "
            f"{s['epochs_run']}/{s['epochs']} ep × {s['steps_per_epoch']} steps, best {r['best_epoch']}, "
            f"{'{:d}-fold CV, '.format(r['folds']) if r.get('folds', 1) > 1 else ''}"
            f"locks img {s['lock_image']}/txt {s['lock_text']}, BN {'frozen' if s['freeze_bn'] else 'updated'} | "
            f"{r['wall_seconds']:.0f} s |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["offline-mini", "clipsearch-tiny"])
    ap.add_argument("--sets", nargs="+", default=list(MAKERS), choices=list(MAKERS))
    ap.add_argument("--per-class", type=int, default=0,
                    help="images per class, or images for captions (default: 30 digits, 8 digits-small, 50 textures, "
                         "300 captions)")
    ap.add_argument("--json", type=Path, help="also write every report here")
    args = ap.parse_args()
    reports = []
    print("| set | model | train/val/test | base (test, 95% CI) | fine-tuned | shipped | gain [95% CI] | "
          "settings chosen by the defaults | time |")
    print("|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for set_name in args.sets:
            per_class = args.per_class or DEFAULT_SIZE[set_name]
            set_dir = MAKERS[set_name](Path(tmp) / set_name, per_class)
            for model in args.models:
                r = run(set_dir, model, Path(tmp) / f"{set_name}-{model}")
                print(row(set_name, model, r), flush=True)
                for w in r["warnings"]:
                    print(f"|  | warning: {w} |||||||")
                reports.append({"set": set_name, "model": model, **r})
    if args.json:
        args.json.write_text(json.dumps(reports, indent=2))


if __name__ == "__main__":
    main()
