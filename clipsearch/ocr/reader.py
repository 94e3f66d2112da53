"""One image → the lines of text in it, with their boxes: RapidOCR (PP-OCRv4 detection, direction and
recognition models, Chinese and English) on ONNX Runtime.

Detection runs first on every image; RapidOCR runs the direction and recognition models only on the boxes it
finds, so a photo without text costs one detection pass (most photos). Images are read at a bounded size: a
JPEG is decoded at reduced scale (draft) and the longer side is held to `MAX_SIDE`, which keeps screenshot
text legible while a 24-megapixel photo does not cost seconds.
"""

from __future__ import annotations

import importlib.util
import threading
from typing import TYPE_CHECKING, Any

from clipsearch.catalog.records import TextLine
from clipsearch.errors import ClipsearchError

if TYPE_CHECKING:  # pragma: no cover
    from PIL import Image

MAX_SIDE = 1920  # longer side an image is read at (a 1080p screenshot's text at full size)
DRAFT_TO = 1080  # a JPEG's shorter side is decoded at the smallest DCT scale still covering this
MIN_SCORE = 0.5  # recognition confidence a line needs to be kept


def check_available() -> None:
    """Fail early, with the fix, when the OCR extra is not installed."""
    if importlib.util.find_spec("rapidocr_onnxruntime") is None:
        raise ClipsearchError("reading the text inside images needs RapidOCR, which is not installed",
                              "pip install 'clipsearch[ocr]'", param="ocr")


class TextReader:
    """Reads lines of text in images; the models load on the first image. One reader is used by one thread at a
    time (a lock keeps it so); `threads` is ONNX Runtime's intra-op thread count (0: its default, all cores)."""

    def __init__(self, threads: int = 0) -> None:
        self.threads = threads
        self._engine: Any = None
        self._lock = threading.Lock()

    def _load(self) -> Any:
        if self._engine is None:
            check_available()
            from rapidocr_onnxruntime import RapidOCR

            options = {"intra_op_num_threads": self.threads} if self.threads > 0 else {}
            self._engine = RapidOCR(text_score=MIN_SCORE, **options)
        return self._engine

    def read(self, image: Image.Image) -> tuple[TextLine, ...]:
        """The lines found in `image` (RGB), top to bottom; boxes as fractions of the image's size."""
        image = bounded(image)
        width, height = image.size
        with self._lock:
            result, _elapsed = self._load()(image)
        lines = []
        for points, text, _score in result or ():
            text = " ".join(str(text).split())
            if not text:
                continue
            xs = [float(p[0]) for p in points]
            ys = [float(p[1]) for p in points]
            box = (_frac(min(xs), width), _frac(min(ys), height), _frac(max(xs), width), _frac(max(ys), height))
            lines.append(TextLine(text, box))
        return tuple(lines)


def bounded(image: Image.Image) -> Image.Image:
    """The image with its longer side at most MAX_SIDE (aspect kept)."""
    longer = max(image.size)
    if longer <= MAX_SIDE:
        return image
    scale = MAX_SIDE / longer
    return image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))))


def _frac(value: float, size: int) -> float:
    return min(1.0, max(0.0, value / size)) if size else 0.0
