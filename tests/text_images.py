"""Images with text drawn at test time on real photo backgrounds (scikit-image's samples), in WenQuanYi Micro Hei
(English and Chinese; scripts/install-system-deps.sh installs it), for the tests of the text read inside images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

FONT = Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc")
BACKGROUNDS = ("coffee", "chelsea", "astronaut", "rocket")


def font(size: int = 34) -> ImageFont.FreeTypeFont:
    if not FONT.is_file():
        pytest.fail(f"{FONT} is missing: run scripts/install-system-deps.sh (it installs fonts-wqy-microhei)")
    return ImageFont.truetype(str(FONT), size)


def background(name: str, size: tuple[int, int] = (480, 320)) -> Image.Image:
    from skimage import data

    pixels = getattr(data, name)()
    return Image.fromarray(np.asarray(pixels, dtype=np.uint8)).convert("RGB").resize(size)


def render(path: Path, lines: list[str], photo: str = "coffee", size: tuple[int, int] = (480, 320),
           fmt: str = "PNG") -> Path:
    """A photo with `lines` of dark text on a light label (as on a sign, a receipt or a screenshot)."""
    im = background(photo, size)
    if lines:
        draw = ImageDraw.Draw(im)
        f = font()
        height = 48 * len(lines) + 24
        draw.rectangle((24, 40, size[0] - 24, 40 + height), fill=(248, 246, 240))
        for i, line in enumerate(lines):
            draw.text((40, 52 + 48 * i), line, font=f, fill=(15, 15, 15))
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path, fmt)
    return path
