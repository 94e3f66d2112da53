"""Retrieval quality with a model that really learned something (not random-init)."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from clipsearch.media import synthetic
from tests.conftest import INDEX_PER_CLASS, cli_json, label_of

N_CLASSES = len(synthetic.classes())
CHANCE_P_AT_5 = INDEX_PER_CLASS / (INDEX_PER_CLASS * N_CLASSES)  # 1/12 ≈ 0.083: a random ranking


def test_text_queries_retrieve_matching_images(runner, indexed: Path) -> None:
    per_query = {}
    for color, shape in synthetic.classes():
        hits = cli_json(runner, "query", f"a {color} {shape}", "-k", "5", "--index", indexed)
        assert len(hits) == 5
        per_query[f"{color} {shape}"] = sum(label_of(h["path"]) == f"{color} {shape}" for h in hits) / 5
    mean = sum(per_query.values()) / len(per_query)
    print("precision@5 per query:", per_query, "mean", mean)
    # Chance is 0.083. Demand 6x chance on average and at least 2.4x chance (2 of 5) for every query.
    assert mean >= 0.5, per_query
    assert min(per_query.values()) >= 0.2, per_query


def test_image_query_finds_same_colour_and_shape(runner, indexed: Path, shapes_source: Path, tmp_path: Path) -> None:
    right = 0
    queries = sorted(shapes_source.glob("*_000.png"))
    for src in queries:
        query = tmp_path / f"q_{src.stem}.jpg"  # a resized, re-encoded copy kept outside the index
        Image.open(src).resize((80, 80)).save(query, quality=85)
        hits = cli_json(runner, "query", "--image", query, "-k", "5", "--index", indexed)
        assert src.name in [Path(h["path"]).name for h in hits]  # the original is among the nearest
        assert label_of(hits[0]["path"]).split()[0] == src.name.split("_")[0]  # same colour first, always
        right += label_of(hits[0]["path"]) == label_of(src.name)
    print("image query top-1 same class:", right, "of", len(queries))
    # the top hit shares colour and shape far above chance (5 of 60 ≈ 0.08)
    assert right / len(queries) >= 0.6


def test_image_query_leaves_itself_out(runner, indexed: Path, shapes_source: Path) -> None:
    src = next(iter(sorted(shapes_source.glob("*.png"))))
    hits = cli_json(runner, "query", "--image", src, "-k", "5", "--index", indexed)
    assert all(Path(h["path"]).name != src.name for h in hits)
    assert len(hits) == 5
