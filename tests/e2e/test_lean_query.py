"""A cold text query loads only what it needs, and its lean catalog reads answer exactly as the full catalog."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import clipsearch

HEAVY = ("sqlalchemy", "torch", "open_clip", "onnxruntime", "ftfy", "regex")


def _modules_after_query(store: Path, text: str) -> dict:
    code = ("import json, sys, clipsearch\n"
            "with clipsearch.open(sys.argv[1], create=False) as s:\n"
            "    hits = s.search(sys.argv[2], k=3)\n"
            f"print(json.dumps({{'loaded': [m for m in {HEAVY!r} if m in sys.modules], 'hits': len(hits)}}))\n")
    out = subprocess.run([sys.executable, "-c", code, str(store), text], capture_output=True, text=True,
                         check=True, stdin=subprocess.DEVNULL)
    return json.loads(out.stdout)


def test_cold_text_query_imports_no_sqlalchemy_torch_or_unicode_text_fixers(indexed: Path) -> None:
    plain = _modules_after_query(indexed, "a red circle")
    assert plain == {"loaded": [], "hits": 3}
    # text that ftfy or the Unicode pattern could change still goes through them (and still no SQLAlchemy)
    accented = _modules_after_query(indexed, "un cercle rouge, très rond")
    assert accented["hits"] == 3 and set(accented["loaded"]) == {"ftfy", "regex"}


def _filtered_queries(store: clipsearch.Store, root: Path) -> list:
    sub = str(root / "sub")
    asks = [dict(text="a red circle"), dict(text="a blue square", under=[sub]),
            dict(text="a shape", ext=["png"], under=[str(root)]), dict(text="a shape", after="2001-01-01"),
            dict(text="a shape", before="2001-01-01"), dict(image=str(root / "sub" / "b0.png"), k=5)]
    return [[(h.id, h.path, round(h.score, 6), h.size, h.modified) for h in store.search(k=ask.pop("k", 8), **ask)]
            for ask in asks]


def test_lean_reads_equal_the_full_catalog(tmp_path: Path, shapes_source: Path, trained_model: Path) -> None:
    root = tmp_path / "col"
    (root / "sub").mkdir(parents=True)
    other = tmp_path / "other"  # a second root that vanishes: both paths hide it
    other.mkdir()
    sources = sorted(shapes_source.glob("*.png"))
    for i, src in enumerate(sources[:12]):
        shutil.copy(src, root / f"a{i}.png")
    for i, src in enumerate(sources[12:20]):
        shutil.copy(src, root / "sub" / f"b{i}.png")
    os.utime(root / "a0.png", (978307200, 978307200))  # 2001-01-01: the date filters split the set
    shutil.copy(sources[20], other / "c.png")
    weird = os.fsdecode(bytes(root) + b"/sub/caf\xe9_100%_x.png")
    shutil.copy(sources[21], weird)
    idx = tmp_path / "index"
    with clipsearch.open(idx, model=str(trained_model)) as store:
        store.add([root, other])
    shutil.rmtree(other)
    with clipsearch.open(idx, create=False) as lean:
        lean_answers = _filtered_queries(lean, root)
    with clipsearch.open(idx, create=False) as full:
        _ = full.catalog  # the full catalog is open: queries read through it
        full_answers = _filtered_queries(full, root)
    assert lean_answers == full_answers
    assert any(path == weird for path in (h[1] for answer in lean_answers for h in answer))
    assert all(answer for answer in lean_answers[:3])
    assert not any("other" in h[1] for answer in lean_answers for h in answer)
