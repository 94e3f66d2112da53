"""Generated, captioned image sets (coloured shapes on textured backgrounds) for tests, demos and benchmarks.

Nothing to download: a tiny model trained on these for seconds learns real text↔image alignment, so tests
can assert retrieval quality instead of comparing near-identical random-init embeddings.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (215, 35, 35),
    "green": (35, 170, 60),
    "blue": (35, 75, 215),
    "yellow": (235, 205, 30),
}
SHAPES = ("circle", "square", "triangle")


@dataclass(frozen=True)
class Sample:
    path: Path
    caption: str
    label: str
    class_id: int
    color: str
    shape: str


def draw_shape(d: ImageDraw.ImageDraw, shape: str, cx: int, cy: int, r: int, fill: tuple[int, ...]) -> None:
    """A filled circle, square or triangle of radius `r` centred on (cx, cy)."""
    if shape == "circle":
        d.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
    elif shape == "square":
        d.rectangle((cx - r, cy - r, cx + r, cy + r), fill=fill)
    else:
        d.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=fill)


def classes() -> list[tuple[str, str]]:
    return [(c, s) for c in COLORS for s in SHAPES]


def draw(color: str, shape: str, rng: np.random.Generator, size: int = 96) -> Image.Image:
    """One image: a textured grey-brown background with one filled shape of the given colour."""
    base = rng.integers(90, 170, size=3)
    noise = rng.normal(0, 18, size=(size // 8, size // 8, 3))
    bg = np.clip(base + np.kron(noise, np.ones((8, 8, 1))), 0, 255).astype(np.uint8)
    im = Image.fromarray(bg).filter(ImageFilter.GaussianBlur(2))
    d = ImageDraw.Draw(im)
    r = int(rng.integers(size // 4, int(size // 2.6)))
    cx, cy = (int(v) for v in rng.integers(r + 2, size - r - 2, size=2))
    jitter = rng.integers(-20, 21, size=3)
    fill = tuple(int(np.clip(c + j, 0, 255)) for c, j in zip(COLORS[color], jitter, strict=False))
    draw_shape(d, shape, cx, cy, r, fill)
    return im


def make_dataset(folder: Path, per_class: int = 10, seed: int = 0, size: int = 96, *,
                 class_folders: bool = False, fmt: str = "png") -> list[Sample]:
    """Write per_class images for each colour×shape class; class_folders=True gives folder-per-class layout."""
    folder = Path(folder)
    rng = np.random.default_rng(seed)
    samples: list[Sample] = []
    for class_id, (color, shape) in enumerate(classes()):
        label = f"{color} {shape}"
        target = folder / label.replace(" ", "_") if class_folders else folder
        target.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            path = target / f"{color}_{shape}_{i:03d}.{fmt}"
            im = draw(color, shape, rng, size)
            im.save(path, quality=92) if fmt in ("jpg", "jpeg") else im.save(path)
            samples.append(Sample(path, f"a {label}", label, class_id, color, shape))
    return samples


def make_photos(folder: Path, count: int, width: int = 4000, height: int = 3000, seed: int = 0,
                quality: int = 90, png_every: int = 0) -> list[Path]:
    """Camera-sized JPEGs (and optionally some PNGs) with photo-like detail, for throughput benchmarks."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths: list[Path] = []
    for i in range(count):
        small = draw(*classes()[i % len(classes())], rng, size=max(width, height) // 16)
        im = small.resize((width, height), Image.Resampling.BILINEAR)
        grain = rng.integers(-12, 13, size=(height // 4, width // 4, 1), dtype=np.int16)
        arr = np.asarray(im, dtype=np.int16) + np.kron(grain, np.ones((4, 4, 1), dtype=np.int16))[:height, :width]
        im = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
        if png_every and i % png_every == png_every - 1:
            path = folder / f"photo_{i:05d}.png"
            im.save(path, compress_level=1)
        else:
            path = folder / f"photo_{i:05d}.jpg"
            im.save(path, quality=quality)
        paths.append(path)
    return paths


DIGIT_NAMES = "zero one two three four five six seven eight nine".split()


def make_digits(root: Path, per_class: int, seed: int = 0) -> Path:
    """A real-image labelled set: scikit-learn's 8x8 handwritten digits, dark ink on white, upscaled to 64 px RGB,
    one folder per class ("digit_three"); `per_class` images of each, chosen by `seed`."""
    from sklearn.datasets import load_digits

    d = load_digits()
    rng = np.random.default_rng(seed)
    for c, name in enumerate(DIGIT_NAMES):
        folder = Path(root) / f"digit_{name}"
        folder.mkdir(parents=True, exist_ok=True)
        for i in rng.permutation(np.flatnonzero(d.target == c))[:per_class]:
            a = (255 - d.images[i] * 255 / 16).astype(np.uint8)
            Image.fromarray(a).resize((64, 64), Image.Resampling.BILINEAR).convert("RGB").save(folder / f"{i}.png")
    return Path(root)


@dataclass(frozen=True)
class ExifFacts:
    """What `exif_block` writes: a capture time (EXIF's 'YYYY:MM:DD HH:MM:SS'), its offset ('+09:00'), a camera,
    a lens and a position in decimal degrees; None leaves the tag out."""
    taken: str | None = None
    offset: str | None = None
    make: str | None = None
    model: str | None = None
    lens: str | None = None
    lat: float | None = None
    lon: float | None = None


def _dms(value: float) -> tuple[float, float, float]:
    value = abs(value)
    degrees = int(value)
    minutes = int((value - degrees) * 60)
    return float(degrees), float(minutes), round((value - degrees - minutes / 60) * 3600, 4)


def exif_block(facts: ExifFacts) -> Image.Exif:
    """An EXIF block as cameras write it (IFD0 make/model, the Exif IFD's times and lens, the GPS IFD)."""
    exif = Image.Exif()
    if facts.make:
        exif[0x010F] = facts.make
    if facts.model:
        exif[0x0110] = facts.model
    sub = exif.get_ifd(0x8769)
    if facts.taken:
        sub[0x9003] = facts.taken
    if facts.offset:
        sub[0x9011] = facts.offset
    if facts.lens:
        sub[0xA434] = facts.lens
    if facts.lat is not None and facts.lon is not None:
        gps = exif.get_ifd(0x8825)
        gps[1], gps[2] = ("N" if facts.lat >= 0 else "S"), _dms(facts.lat)
        gps[3], gps[4] = ("E" if facts.lon >= 0 else "W"), _dms(facts.lon)
    return exif


CAMERAS = (("Canon", "Canon EOS R5", "RF24-105mm F4 L IS USM"), ("NIKON CORPORATION", "NIKON Z 6", None),
           ("Apple", "iPhone 13", "iPhone 13 back camera 5.1mm f/1.6"))
PLACES = ((48.8584, 2.2945), (35.6586, 139.7454), (-33.8568, 151.2153), (40.6892, -74.0445))


def make_exif_photos(folder: Path, count: int, seed: int = 0, size: int = 640) -> list[tuple[Path, ExifFacts]]:
    """`count` JPEG photos (`size` px wide) with EXIF: capture times a day apart from 2020-01-01 with an offset
    on every other one, cameras and places in turn, and every fourth photo without a position."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        make, model, lens = CAMERAS[i % len(CAMERAS)]
        lat, lon = PLACES[i % len(PLACES)] if i % 4 != 3 else (None, None)
        day = np.datetime64("2020-01-01") + np.timedelta64(i, "D")
        taken = str(day).replace("-", ":") + f" {8 + i % 12:02d}:{i % 60:02d}:00"
        facts = ExifFacts(taken, "+01:00" if i % 2 == 0 else None, make, model, lens, lat, lon)
        color, shape = classes()[i % len(classes())]
        im = draw(color, shape, rng, 96).resize((size, size * 3 // 4), Image.Resampling.BICUBIC)
        path = folder / f"photo_{i:04d}.jpg"
        im.save(path, quality=88, exif=exif_block(facts))
        out.append((path, facts))
    return out
