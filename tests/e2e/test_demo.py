"""`clipsearch demo` on a machine with no photos and no model hub: scikit-image's sample photos, the default model
(offline-mini when CLIP's weights cannot be had), example queries. One test: it loads a real model (~20-40 s)."""

from __future__ import annotations

from pathlib import Path

import clipsearch
from tests.conftest import cli


def test_demo_indexes_sample_photos_and_answers(runner, tmp_path: Path) -> None:
    idx = tmp_path / "index"
    result = cli(runner, "demo", "--index", idx)
    photos = tmp_path / "demo-photos"
    files = sorted(p.name for p in photos.iterdir())
    assert len(files) >= 10 and "cat-chelsea.jpg" in files and "coffee-cup.jpg" in files
    out = result.stdout
    for query, top in (("a cat", "cat-chelsea.jpg"), ("a cup of coffee", "coffee-cup.jpg"),
                       ("a rocket", "rocket-launch.jpg")):
        block = out.split(f"\n{query}\n", 1)[1]
        assert block.splitlines()[0].strip().endswith(top), block  # the right photo first
    assert f"{len(files)} added" in out and "clipsearch serve --index" in out
    with clipsearch.open(idx, create=False) as store:
        info = store.info()
        assert info["images"] == len(files) and info["roots"] == [str(photos)]
        assert len(list((idx / "thumbnails").rglob("*.webp"))) == len(files)
    # a store that holds someone's own photos is not mixed with the demo's
    other = cli(runner, "demo", "--index", idx, "--photos", tmp_path / "elsewhere", ok=False)
    assert other.exit_code == 1 and "already holds other images" in other.stderr
