"""More like this, from the library, the HTTP API and the CLI: a video's moment never lists the same video's other
moments, on every vector index type, and still gives min(k, eligible) results; several "similar to" ids combine
into one query (their embeddings summed, as weighted terms are), each left out of the results."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

import clipsearch
from clipsearch.server import create_app
from clipsearch.vectors.kinds import INDEX_TYPES
from tests.conftest import cli, cli_json
from tests.e2e.test_video_outputs import mixed_store  # noqa: F401 (a fixture)

FILES = 6  # four photos, walk.webm (6 moments) and clip.mp4 (2 moments): 12 vectors


def _moments(store: clipsearch.Store, name: str) -> list[dict]:
    hits = store.search("a green triangle", k=20, all_frames=True)
    return [h.to_dict() for h in hits if h.path.endswith(name)]


# the kinds a store of 12 vectors builds (IVF needs 39 training points a list, IVF-PQ 9,984 vectors: the exclusion
# is the same id set before the index for every kind, and min(k, allowed) on each is tests/unit/vectors')
@pytest.mark.parametrize("kind", [k for k in INDEX_TYPES if k in ("flat", "hnsw")])
def test_more_like_a_video_moment_leaves_the_video_out(tmp_path: Path, mixed_store: Path,  # noqa: F811
                                                       kind: str) -> None:
    index = tmp_path / "index"
    shutil.copytree(mixed_store, index)
    with clipsearch.open(index, create=False) as store:
        assert store.rebuild_vectors(kind).kind == kind
        walk = _moments(store, "walk.webm")
        assert len(walk) == 6
        source = walk[2]["id"]
        for k in (2, 5, 20):
            hits = store.search(like=source, k=k)
            assert not [h for h in hits if h.path.endswith("walk.webm")]
            assert len(hits) == min(k, FILES - 1) and len({h.path for h in hits}) == len(hits)
        every = store.search(like=[source], k=20, all_frames=True)  # every moment: still none of the video's
        assert len(every) == 12 - 6 and not [h for h in every if h.path.endswith("walk.webm")]
        # a filter narrows the ids in SQL: the video's moments are left out there too
        filtered = store.search(like=[source], k=20, ext=["webm", "mp4", "png"])
        assert len(filtered) == FILES - 1 and not [h for h in filtered if h.path.endswith("walk.webm")]


def test_similar_over_http_and_the_cli_leaves_the_video_out(runner, mixed_store: Path) -> None:  # noqa: F811
    client = TestClient(create_app(mixed_store))
    moments = [h for h in client.get("/api/search", params={"q": "a green triangle", "k": 20}).json()["results"]
               if h["path"].endswith("walk.webm")]
    source = moments[0]["id"]
    similar = client.get(f"/api/images/{source}/similar", params={"k": 20}).json()["results"]
    assert len(similar) == FILES - 1 and not [h for h in similar if h["path"].endswith("walk.webm")]
    few = client.get(f"/api/images/{source}/similar", params={"k": 3}).json()["results"]
    assert [h["id"] for h in few] == [h["id"] for h in similar[:3]]
    hits = cli_json(runner, "query", "--like", str(source), "-k", "20", "--index", mixed_store)
    assert [h["id"] for h in hits] == [h["id"] for h in similar]
    missing = cli(runner, "query", "--like", "999999", "--index", mixed_store, ok=False)
    assert missing.exit_code != 0 and "no image with id 999999" in missing.stderr and "--like" in missing.stderr


def test_several_similar_ids_combine(runner, mixed_store: Path) -> None:  # noqa: F811
    client = TestClient(create_app(mixed_store))
    photos = [h for h in client.get("/api/search", params={"q": "a red circle", "k": 20}).json()["results"]
              if h["path"].endswith(".png")]
    a, b = photos[0]["id"], photos[1]["id"]
    both = client.get("/api/search", params=[("like", str(a)), ("like", str(b)), ("k", "20")])
    assert both.status_code == 200, both.text
    results = both.json()["results"]
    assert len(results) == FILES - 2 and {a, b}.isdisjoint(h["id"] for h in results)
    with clipsearch.open(mixed_store, create=False) as store:
        assert [h.id for h in store.search(like=[a, b], k=20)] == [h["id"] for h in results]
        dim = store.vectors.dim
        vecs = store.reads.embeddings_by_id([a, b, *(h["id"] for h in results)], dim)
    query = vecs[a] + vecs[b]
    query /= np.linalg.norm(query)
    for hit in results:  # each score is the cosine with the sum of both: one query, not two lists
        assert hit["score"] == pytest.approx(float(vecs[hit["id"]] @ query), abs=2e-3)
    with_text = client.get("/api/search", params=[("q", "a blue square"), ("like", str(a)), ("like", str(b))])
    assert with_text.status_code == 200 and {a, b}.isdisjoint(h["id"] for h in with_text.json()["results"])
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 30, 30)).save(buf, "PNG")
    upload = client.post("/api/search", files={"image": ("q.png", buf.getvalue(), "image/png")},
                         data={"k": "20", "like": [str(a), str(b)]})
    assert upload.status_code == 200, upload.text
    assert {a, b}.isdisjoint(h["id"] for h in upload.json()["results"])
    hits = cli_json(runner, "query", "--like", str(a), "--like", str(b), "-k", "20", "--index", mixed_store)
    assert [h["id"] for h in hits] == [h["id"] for h in results]
