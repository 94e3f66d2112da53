"""The one-command demo: real photos that ship with scikit-image, indexed with the default model, then queried.

Nothing is downloaded: the photos are scikit-image's own sample files (`skimage.data`: an astronaut, a cup of
coffee, Chelsea the cat, a rocket launch, ...), and a new store's default model falls back to the shipped
`offline-mini` when CLIP's weights cannot be had — which knows cats, cups and rockets.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from clipsearch.errors import ClipsearchError

if TYPE_CHECKING:  # pragma: no cover
    from clipsearch.indexing.writer import RunSummary
    from clipsearch.progress import Progress
    from clipsearch.query.engine import Hits
    from clipsearch.store.store import Store

# skimage.data function → file name (photos first; a few scientific images make the ranking less trivial)
SAMPLES = [
    ("chelsea", "cat-chelsea.jpg"), ("coffee", "coffee-cup.jpg"), ("rocket", "rocket-launch.jpg"),
    ("astronaut", "astronaut-eileen-collins.jpg"), ("camera", "cameraman.jpg"), ("coins", "coins.jpg"),
    ("clock", "clock.jpg"), ("moon", "moon-surface.jpg"), ("hubble_deep_field", "hubble-deep-field.jpg"),
    ("immunohistochemistry", "immunohistochemistry.jpg"), ("retina", "retina.jpg"), ("brick", "brick-wall.jpg"),
    ("colorwheel", "colour-wheel.png"), ("page", "book-page.png"),
]
QUERIES = ["a cat", "a cup of coffee", "a rocket", "a clock", "coins"]
FOLDER = "demo-photos"


@dataclass
class DemoReport:
    photos: Path
    written: int
    summary: RunSummary
    results: list[tuple[str, Hits]] = field(default_factory=list)


def photos_folder(store_path: Path) -> Path:
    """Where the demo puts its photos: beside the store (a store never indexes its own folder)."""
    return Path(store_path).expanduser().absolute().parent / FOLDER


def write_photos(folder: Path) -> tuple[list[Path], int]:
    """Write the sample photos (JPEG/PNG) into `folder`: (all sample files, how many were written now).

    Files already there are left alone, so a second demo run indexes nothing new.
    """
    try:
        from skimage import data as samples
    except ImportError as exc:
        raise ClipsearchError("the demo's sample photos come with scikit-image, which is not installed",
                              'pip install "clipsearch[demo]"') from exc
    from PIL import Image

    from clipsearch.fsutil import atomic_write

    folder.mkdir(parents=True, exist_ok=True)
    paths, written = [], 0
    for name, file_name in SAMPLES:
        path = folder / file_name
        paths.append(path)
        if path.exists():
            continue
        try:
            pixels = getattr(samples, name)()
        except Exception:  # a sample this scikit-image lacks or would download: skip it
            paths.pop()
            continue
        im = Image.fromarray(pixels).convert("RGB")
        buf = io.BytesIO()
        png = file_name.endswith(".png")
        im.save(buf, "PNG" if png else "JPEG", **({} if png else {"quality": 92}))
        atomic_write(path, _bytes_writer(buf.getvalue()))
        written += 1
    if not paths:
        raise ClipsearchError("scikit-image provided none of the sample photos", "reinstall scikit-image")
    return paths, written


def _bytes_writer(data: bytes) -> Callable[[Path], object]:
    return lambda tmp: tmp.write_bytes(data)


def run_demo(store: Store, photos: Path | None = None, progress: Progress | None = None,
             queries: list[str] | None = None, k: int = 3) -> DemoReport:
    """Write the sample photos, index them into `store` (its default model if new), run example queries.

    A store that already holds other folders is refused: the demo never mixes its photos into a collection.
    """
    from clipsearch.indexing.scan import canonical

    folder = photos or photos_folder(store.path)
    if store.manifest is not None:
        others = [r["path"] for r in store.catalog.roots() if r["path"] != canonical(str(folder))]
        if others:
            raise ClipsearchError(f"the store {store.path} already holds other images (e.g. {others[0]})",
                                  "run the demo in a store of its own, e.g. with the index option "
                                  "set to /tmp/clipsearch-demo")
    _paths, written = write_photos(folder)
    summary = store.add([folder], progress=progress, thumbnails=True)
    report = DemoReport(folder, written, summary)
    for query in queries or QUERIES:
        report.results.append((query, store.search(query, k=k)))
    return report
