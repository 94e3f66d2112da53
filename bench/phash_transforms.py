"""Which perceptual hash, at which Hamming distance: recall per transform, false matches on look-alikes.

Sources: scikit-image's sample photos (those it ships: no download) and generated scenes (media/synthetic.py's
textured backgrounds with a shape, drawn at 384 px). Each source is written as a file (JPEG q92 for photos, PNG
for scenes) and every transform of it as another file; each file is decoded the way the indexing pipeline
decodes it (`open_image(data, draft_to=224)`: a JPEG at its reduced DCT scale) and hashed from those pixels.

Positives (the same picture): resize 0.25x / 0.5x / 2x, JPEG q30 / q50 / q70 / q95, half size at q70, PNG→JPEG,
→WebP, JPEG→WebP→PNG, centred crops of 5 / 10 / 15 % (of width and height), a 10 % crop from one corner,
brightness +25 %, contrast x1.3, rotation 2° and 5°, a watermark (text on a translucent band).
Negatives: bursts (two 85 % windows of one photo 15 % apart; a generated scene with the same background and its
shape moved or recoloured) and every pair of different sources.

For each hash it prints, per transform, the recall at each distance d (pairs at Hamming distance <= d), then the
false-match rate of bursts and of different sources, and the precision over all pairs.

    python bench/phash_transforms.py                 # ~1 min on 2 busy cores
    python bench/phash_transforms.py --scenes 60     # more generated scenes
"""

from __future__ import annotations

import argparse
import io
import sys
from collections.abc import Callable
from itertools import combinations
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from clipsearch.media.images import open_image  # noqa: E402
from clipsearch.media.phash import HASHES, distance, picture_distance, picture_hashes  # noqa: E402
from clipsearch.media.synthetic import COLORS, SHAPES, draw_shape  # noqa: E402

DISTANCES = (0, 2, 4, 6, 8, 10, 12, 14, 16, 20)
# each scheme: (hash of a decoded image, distance of two hashes); the store keeps the last one
SCHEMES: dict[str, tuple[Callable[[Image.Image], object], Callable[[object, object], int]]] = {
    **{name: (fn, distance) for name, fn in HASHES.items()},
    "phash + centred 92 %/85 % windows (stored)": (picture_hashes, picture_distance),
}
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "camera", "coins", "clock", "moon", "hubble_deep_field",
          "immunohistochemistry", "retina", "brick", "grass", "gravel", "horse", "page", "text", "colorwheel",
          "logo", "motorcycle")


def encode(im: Image.Image, fmt: str, **opts) -> bytes:
    buf = io.BytesIO()
    (im.convert("RGB") if fmt in ("JPEG", "WEBP") else im).save(buf, fmt, **opts)
    return buf.getvalue()


def decode(data: bytes) -> Image.Image:
    return open_image(data, draft_to=224)[0]


def photo_sources() -> list[Image.Image]:
    from skimage import data as samples

    out = []
    for name in PHOTOS:
        try:
            pixels = samples.stereo_motorcycle()[0] if name == "motorcycle" else getattr(samples, name)()
        except Exception:  # a sample this scikit-image would download, or lacks
            continue
        if pixels.ndim == 3 and pixels.shape[2] == 4:
            pixels = pixels[..., :3]
        if pixels.dtype != np.uint8:
            pixels = (255 * (pixels > 0)).astype(np.uint8) if pixels.dtype == bool else pixels.astype(np.uint8)
        out.append(Image.fromarray(pixels).convert("RGB"))
    return out


def scene(rng_seed: int, shape: str, color: str, centre: tuple[float, float], size: int = 384) -> Image.Image:
    """A textured background (from its seed) with one shape at a relative centre."""
    rng = np.random.default_rng(rng_seed)
    base = rng.integers(70, 190, size=3)
    noise = rng.normal(0, 30, size=(size // 32, size // 32, 3))
    bg = np.clip(base + np.kron(noise, np.ones((32, 32, 1))), 0, 255).astype(np.uint8)
    im = Image.fromarray(bg).resize((size, size), Image.Resampling.BICUBIC)
    d = ImageDraw.Draw(im)
    r = size // 5
    cx, cy = int(centre[0] * size), int(centre[1] * size)
    fill = COLORS[color]
    draw_shape(d, shape, cx, cy, r, fill)
    return im


def crop(im: Image.Image, fraction: float, corner: bool = False) -> Image.Image:
    w, h = im.size
    dw, dh = round(w * fraction), round(h * fraction)
    if corner:
        return im.crop((dw, dh, w, h))
    return im.crop((dw // 2, dh // 2, w - (dw - dw // 2), h - (dh - dh // 2)))


def resized(im: Image.Image, scale: float) -> Image.Image:
    return im.resize((max(8, round(im.width * scale)), max(8, round(im.height * scale))), Image.Resampling.LANCZOS)


def watermark(im: Image.Image) -> Image.Image:
    rgba = im.convert("RGBA")
    band = Image.new("RGBA", rgba.size, (0, 0, 0, 0))
    d = ImageDraw.Draw(band)
    w, h = rgba.size
    d.rectangle((0, int(h * 0.85), w, h), fill=(255, 255, 255, 110))
    d.text((int(w * 0.05), int(h * 0.88)), "(c) 2026 clipsearch photo", fill=(0, 0, 0, 220))
    return Image.alpha_composite(rgba, band).convert("RGB")


def rotated(im: Image.Image, degrees: float) -> Image.Image:
    return im.rotate(degrees, Image.Resampling.BICUBIC, expand=False, fillcolor=(0, 0, 0))


# name → bytes of the transformed file, from (the source image, the source file's bytes, its format)
Transform = Callable[[Image.Image, bytes, str], bytes]
TRANSFORMS: dict[str, Transform] = {
    "resize 0.25x": lambda im, _b, f: encode(resized(im, 0.25), f, **({"quality": 92} if f == "JPEG" else {})),
    "resize 0.5x": lambda im, _b, f: encode(resized(im, 0.5), f, **({"quality": 92} if f == "JPEG" else {})),
    "resize 2x": lambda im, _b, f: encode(resized(im, 2.0), f, **({"quality": 92} if f == "JPEG" else {})),
    "JPEG q30": lambda im, _b, _f: encode(im, "JPEG", quality=30),
    "JPEG q50": lambda im, _b, _f: encode(im, "JPEG", quality=50),
    "JPEG q70": lambda im, _b, _f: encode(im, "JPEG", quality=70),
    "JPEG q95": lambda im, _b, _f: encode(im, "JPEG", quality=95),
    "half size q70": lambda im, _b, _f: encode(resized(im, 0.5), "JPEG", quality=70),
    "to PNG / to JPEG q90": lambda im, b, f: encode(decode(b), "PNG" if f == "JPEG" else "JPEG", quality=90),
    "to WebP q80": lambda im, b, _f: encode(decode(b), "WEBP", quality=80),
    "WebP q80 then PNG": lambda im, b, _f: encode(decode(encode(decode(b), "WEBP", quality=80)), "PNG"),
    "crop 5%": lambda im, _b, _f: encode(crop(im, 0.05), "JPEG", quality=90),
    "crop 10%": lambda im, _b, _f: encode(crop(im, 0.10), "JPEG", quality=90),
    "crop 15%": lambda im, _b, _f: encode(crop(im, 0.15), "JPEG", quality=90),
    "crop 10% corner": lambda im, _b, _f: encode(crop(im, 0.10, corner=True), "JPEG", quality=90),
    "brightness +25%": lambda im, _b, _f: encode(ImageEnhance.Brightness(im).enhance(1.25), "JPEG", quality=90),
    "contrast x1.3": lambda im, _b, _f: encode(ImageEnhance.Contrast(im).enhance(1.3), "JPEG", quality=90),
    "rotate 2°": lambda im, _b, _f: encode(rotated(im, 2), "JPEG", quality=90),
    "rotate 5°": lambda im, _b, _f: encode(rotated(im, 5), "JPEG", quality=90),
    "watermark": lambda im, _b, _f: encode(watermark(im), "JPEG", quality=90),
}


def burst_pairs(photos: list[Image.Image], n_scenes: int, seed: int) -> list[tuple[bytes, bytes]]:
    """Different-but-similar pictures: two 85 % windows of one photo 15 % apart; a scene with its shape moved,
    or recoloured."""
    pairs = []
    for im in photos:
        w, h = im.size
        a = im.crop((0, 0, round(w * 0.85), round(h * 0.85)))
        b = im.crop((round(w * 0.15), round(h * 0.15), w, h))
        pairs.append((encode(a, "JPEG", quality=92), encode(b, "JPEG", quality=92)))
    rng = np.random.default_rng(seed)
    colors = list(COLORS)
    for i in range(n_scenes):
        shape, color = SHAPES[i % len(SHAPES)], colors[i % len(colors)]
        cx, cy = rng.uniform(0.3, 0.7, size=2)
        first = scene(seed + i, shape, color, (cx, cy))
        if i % 2:
            moved = scene(seed + i, shape, color, (cx + 0.15, cy))
        else:
            moved = scene(seed + i, shape, colors[(i + 1) % len(colors)], (cx, cy))
        pairs.append((encode(first, "PNG"), encode(moved, "PNG")))
    return pairs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenes", type=int, default=24, help="generated scenes beside the photos")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    photos = photo_sources()
    rng = np.random.default_rng(args.seed)
    colors = list(COLORS)
    scenes = [scene(args.seed + 1000 + i, SHAPES[i % 3], colors[(i // 3) % len(colors)],
                    tuple(rng.uniform(0.3, 0.7, size=2))) for i in range(args.scenes)]
    sources = [(im, encode(im, "JPEG", quality=92), "JPEG") for im in photos] + \
              [(im, encode(im, "PNG"), "PNG") for im in scenes]
    print(f"{len(photos)} photos, {len(scenes)} generated scenes, {len(TRANSFORMS)} transforms; "
          f"{len(sources) * len(TRANSFORMS)} positive pairs")

    def hashes(data: bytes) -> dict[str, object]:
        im = decode(data)
        return {name: fn(im) for name, (fn, _d) in SCHEMES.items()}

    def dists(a: dict[str, object], b: dict[str, object]) -> dict[str, int]:
        return {name: d(a[name], b[name]) for name, (_fn, d) in SCHEMES.items()}

    src_hashes = [hashes(b) for _im, b, _f in sources]
    pos: dict[str, list[dict[str, int]]] = {t: [] for t in TRANSFORMS}
    for (im, data, fmt), h0 in zip(sources, src_hashes, strict=True):
        for t, fn in TRANSFORMS.items():
            h1 = hashes(fn(im, data, fmt))
            pos[t].append(dists(h0, h1))
    bursts = [dists(hashes(a), hashes(b)) for a, b in burst_pairs(photos, args.scenes, args.seed + 7)]
    others = [dists(a, b) for a, b in combinations(src_hashes, 2)]

    for name in SCHEMES:
        print(f"\n## {name}: recall (share of pairs at Hamming distance <= d), 64 bits")
        print("| transform | " + " | ".join(f"d<={d}" for d in DISTANCES) + " |")
        print("| --- |" + " ---: |" * len(DISTANCES))
        for t, rows in pos.items():
            dists = np.array([r[name] for r in rows])
            print(f"| {t} | " + " | ".join(f"{(dists <= d).mean():.2f}" for d in DISTANCES) + " |")
        all_pos = np.array([r[name] for rows in pos.values() for r in rows])
        print("| **all transforms** | " + " | ".join(f"{(all_pos <= d).mean():.2f}" for d in DISTANCES) + " |")
        b = np.array([r[name] for r in bursts])
        o = np.array([r[name] for r in others])
        print(f"| bursts ({len(b)}): false matches | " + " | ".join(f"{(b <= d).mean():.2f}" for d in DISTANCES)
              + " |")
        print(f"| different sources ({len(o)}): false matches | "
              + " | ".join(f"{(o <= d).mean():.3f}" for d in DISTANCES) + " |")
        prec = []
        for d in DISTANCES:
            tp = int((all_pos <= d).sum())
            fp = int((b <= d).sum() + (o <= d).sum())
            prec.append(f"{tp / (tp + fp):.3f}" if tp + fp else "-")
        print("| **precision** (all pairs) | " + " | ".join(prec) + " |")


if __name__ == "__main__":
    main()
