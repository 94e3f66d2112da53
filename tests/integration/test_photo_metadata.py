"""Photo metadata beside the vectors, on SQLite and PostgreSQL: EXIF written with Pillow is read at decode time,
stored as catalog columns, kept for unchanged and moved files and read again for changed ones; a store from
before schema 5 gets it from a metadata-only pass (headers, nothing encoded); the filters (capture time with the
file-time fallback, camera, distance) combine with every query kind and return min(k, matching) hits on flat,
IVF and HNSW indexes.

Random-init tiny model: only sets and counts are asserted, never relevance.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sqlalchemy.engine import make_url

import clipsearch
from clipsearch import ClipsearchError
from clipsearch.catalog.database import public_url
from clipsearch.catalog.photo_filter import distance_km
from clipsearch.media.synthetic import ExifFacts, exif_block, make_exif_photos
from clipsearch.store.manifest import MANIFEST
from tests.conftest import new_database
from tests.integration.test_migrations import connect, state

N_EXIF = 150  # IVF trains from 128 vectors (16 lists x 8) here
PLAIN_DAYS = (dt.datetime(2020, 1, 20, 12), dt.datetime(2020, 3, 1, 12))  # mtimes of the photos without EXIF
N = N_EXIF + len(PLAIN_DAYS)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def built(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest):
    """(photos, store, facts by path) — the store is never changed by a test (copy it with `fresh`)."""
    db = new_database(request.getfixturevalue("pg_server")) if request.param == "postgresql" else None
    base = tmp_path_factory.mktemp("photo-meta")
    photos = base / "photos"
    facts = {str(p): f for p, f in make_exif_photos(photos, N_EXIF, size=96)}
    for i, when in enumerate(PLAIN_DAYS):
        path = photos / f"plain_{i}.png"
        Image.new("RGB", (80, 60), (30 * i, 120, 200)).save(path)
        os.utime(path, (when.timestamp(), when.timestamp()))
        facts[str(path)] = ExifFacts()
    store = base / "index"
    with clipsearch.open(store, model="clipsearch-tiny", db=db) as s:
        summary = s.add([photos])
        assert (summary.added, summary.failed, summary.metadata_read) == (N, 0, 0)
    return photos, store, facts


@pytest.fixture()
def fresh(built, tmp_path: Path, request: pytest.FixtureRequest) -> Path:
    """A copy of the built store to change (on PostgreSQL with a copy of its database)."""
    dest = tmp_path / "index"
    shutil.copytree(built[1], dest)
    manifest = json.loads((dest / MANIFEST).read_text())
    if "catalog" in manifest:
        copy = new_database(request.getfixturevalue("pg_server"),
                            template=make_url(manifest["catalog"]["url"]).database)
        manifest["catalog"]["url"] = public_url(copy)
        (dest / MANIFEST).write_text(json.dumps(manifest))
    return dest


def matching(facts: dict[str, ExifFacts], camera: str | None = None,
             near: tuple[float, float, float] | None = None) -> set[str]:
    out = set()
    for path, f in facts.items():
        if camera and camera.lower() not in f"{f.make or ''} {f.model or ''}".lower():
            continue
        if near and (f.lat is None or distance_km(near[0], near[1], np.array([f.lat]),
                                                  np.array([f.lon]))[0] > near[2]):
            continue
        out.add(path)
    return out


def taken_between(facts: dict[str, ExifFacts], after: dt.datetime, before: dt.datetime) -> set[str]:
    """Wall-clock capture time in [after, before); a file without one by its modification time."""
    out = set()
    for path, f in facts.items():
        when = dt.datetime.strptime(f.taken, "%Y:%m:%d %H:%M:%S") if f.taken else \
            dt.datetime.fromtimestamp(os.stat(path).st_mtime)
        if after <= when < before:
            out.add(path)
    return out


def test_metadata_is_stored_and_shown(built) -> None:
    photos, store, facts = built
    with clipsearch.open(store) as s:
        info = s.info()
        assert info["photo_metadata"] == {"with_capture_time": N_EXIF, "with_camera": N_EXIF,
                                          "with_place": sum(1 for f in facts.values() if f.lat is not None),
                                          "metadata_unread": 0}
        hits = s.search("a photo", k=N)
        assert len(hits) == N
        for h in hits:
            f = facts[h.path]
            if f.taken is None:
                assert (h.taken, h.camera, h.gps) == (None, None, None)
                continue
            local = f.taken.replace(":", "-", 2).replace(" ", "T")
            assert h.taken == local + (f.offset or "")
            assert h.camera == (f.model if f.model.split()[0].lower() == f.make.split()[0].lower()
                                else f"{f.make} {f.model}")
            assert h.lens == f.lens
            assert (h.gps is None) == (f.lat is None)
            if h.gps:
                assert h.gps["lat"] == pytest.approx(f.lat, abs=1e-4) and h.gps["lon"] == pytest.approx(f.lon, abs=1e-4)
        assert s.image(hits[0].id)["taken"] == hits[0].taken


@pytest.mark.parametrize("filters", [
    {"camera": "nikon"}, {"camera": "IPHONE"}, {"camera": "canon eos"}, {"camera": "leica"},
    {"near": "48.8584,2.2945,5"}, {"near": (35.66, 139.75, 50)}, {"near": "-33.8568,151.2153,1", "camera": "canon"},
    {"taken_after": "2020-02-01", "taken_before": "2020-03-01"},
    {"taken_after": "2020-01-20", "taken_before": "2020-01-21", "ext": ["png"]},
])
def test_filters_alone_and_combined_return_min_k_matching(built, filters: dict) -> None:
    _photos, store, facts = built
    want = set(facts)
    if "camera" in filters or "near" in filters:
        near = filters.get("near")
        point = tuple(float(v) for v in near.split(",")) if isinstance(near, str) else near
        want &= matching(facts, filters.get("camera"), point)  # type: ignore[arg-type]
    if "taken_after" in filters:
        want &= taken_between(facts, dt.datetime.fromisoformat(filters["taken_after"]),
                              dt.datetime.fromisoformat(filters["taken_before"]))
    if "ext" in filters:
        want = {p for p in want if p.endswith(".png")}
    with clipsearch.open(store) as s:
        for k in {1, 7, max(len(want), 1), len(want) + 5, N}:
            hits = s.search("a red square", k=k, **filters)
            assert len(hits) == min(k, len(want)), (filters, k)
            assert {h.path for h in hits} <= want
        assert {h.path for h in s.search("a red square", k=N, **filters)} == want


def test_filters_combine_with_image_and_more_like_this_queries(built) -> None:
    _photos, store, facts = built
    nikon = matching(facts, "nikon")
    query_image = sorted(nikon)[0]
    with clipsearch.open(store) as s:
        by_image = s.search(image=query_image, k=N, camera="nikon")
        assert {h.path for h in by_image} == nikon - {query_image}  # the query image itself is left out
        like = s.search(like=[by_image[0].id], k=10, near="48.8584,2.2945,5")
        paris = matching(facts, near=(48.8584, 2.2945, 5))
        assert len(like) == min(10, len(paris - {by_image[0].path})) and {h.path for h in like} <= paris


def test_the_capture_time_filter_falls_back_to_the_file_time_and_says_so(built) -> None:
    _photos, store, facts = built
    with clipsearch.open(store) as s:
        hits = s.search("a photo", k=N, taken_after="2020-01-19", taken_before="2020-01-22")
        paths = {h.path for h in hits}
        plain = {p for p, f in facts.items() if f.taken is None and "plain_0" in p}
        assert plain <= paths and len(paths) == 4  # 3 photos taken those days + the file modified on the 20th
        assert any("1 of 4 results have no capture time" in n and "modification time" in n for n in hits.notes)
        assert not s.search("a photo", k=N, camera="canon").notes  # no time filter: nothing to say


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_min_k_matching_on_a_forced_index(built, fresh: Path, kind: str) -> None:
    _photos, _store, facts = built
    with clipsearch.open(fresh) as s:
        assert s.rebuild_vectors(kind).kind == kind
        for filters, want in (({"camera": "nikon"}, matching(facts, "nikon")),
                              ({"near": "35.6586,139.7454,1"}, matching(facts, near=(35.6586, 139.7454, 1))),
                              ({"camera": "apple", "near": "-33.8568,151.2153,3"},
                               matching(facts, "apple", (-33.8568, 151.2153, 3)))):
            assert len(want) > 3
            for k in (3, len(want) - 1, len(want), N):
                hits = s.search("a blue circle", k=k, **filters)
                assert len(hits) == min(k, len(want)) and {h.path for h in hits} <= want, (kind, filters, k)


def test_unchanged_moved_and_changed_files(tmp_path: Path, catalog_db: str | None) -> None:
    photos = tmp_path / "photos"
    facts = {str(p): f for p, f in make_exif_photos(photos, 12, size=96)}
    with clipsearch.open(tmp_path / "index", model="clipsearch-tiny", db=catalog_db) as s:
        s.add([photos])
        again = s.add([photos])
        assert (again.unchanged, again.encoded, again.metadata_read) == (12, 0, 0)

        nikon = sorted(matching(facts, "nikon"))
        moved_from = Path(nikon[0])
        moved_to = photos / "sub" / "moved.jpg"
        moved_to.parent.mkdir()
        shutil.move(moved_from, moved_to)
        changed = Path(nikon[1])
        Image.new("RGB", (96, 72), (5, 5, 5)).save(changed, exif=exif_block(
            ExifFacts("2024:05:05 05:05:05", "-03:00", "FUJIFILM", "X-T5", None, 64.1466, -21.9426)))
        summary = s.add([photos])
        assert (summary.moved, summary.updated, summary.encoded, summary.metadata_read) == (1, 1, 1, 0)

        fuji = s.search("x", k=12, camera="fujifilm")
        assert [h.path for h in fuji] == [str(changed)] and fuji[0].taken == "2024-05-05T05:05:05-03:00"
        assert [h.path for h in s.search("x", k=12, near="64.1466,-21.9426,1")] == [str(changed)]
        nikon_now = {h.path for h in s.search("x", k=12, camera="nikon")}
        assert nikon_now == (set(nikon) - {str(moved_from), str(changed)}) | {str(moved_to)}  # moved keeps its own
        moved_hit = s.search("x", k=12, camera="nikon", under=[str(moved_to.parent)])
        assert moved_hit[0].taken == facts[str(moved_from)].taken.replace(":", "-", 2).replace(" ", "T") + \
            (facts[str(moved_from)].offset or "")


def downgrade_to_schema_4(store: Path) -> None:
    """Make the catalog look like one written before photo metadata (schema 4)."""
    with connect(store) as con:
        con.exec_driver_sql("DROP INDEX ix_images_taken_local")
        con.exec_driver_sql("DROP INDEX ix_images_gps_lat")
        for column in ("meta_read", "taken_local", "taken_offset", "camera_make", "camera_model", "lens",
                       "gps_lat", "gps_lon"):
            con.exec_driver_sql(f"ALTER TABLE images DROP COLUMN {column}")
        con.exec_driver_sql("UPDATE meta SET value = '4' WHERE key = 'schema_version'")


def test_an_older_store_upgrades_and_reads_metadata_from_headers_only(built, fresh: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    photos, _store, facts = built
    original = state(fresh)
    downgrade_to_schema_4(fresh)
    assert "taken_local" not in state(fresh)["image_columns"]
    with clipsearch.open(fresh, create=False, readonly=True) as s:  # read-only: answers as it is, no metadata
        hits = s.search("a photo", k=5)
        assert len(hits) == 5 and all(h.taken is None for h in hits)
        with pytest.raises(ClipsearchError, match="before photo metadata was kept") as caught:
            s.search("a photo", camera="nikon")
        assert "writable" in (caught.value.hint or "")
    with clipsearch.open(fresh, create=False) as s:
        hits = s.search("a photo", k=N, camera="nikon")  # upgraded on open; nothing read yet
        assert len(hits) == 0 and any("before photo metadata was read" in n for n in hits.notes)
        assert s.info()["photo_metadata"]["metadata_unread"] == N

        from clipsearch.media import images

        def no_decoding(*args: object, **kwargs: object) -> None:
            raise AssertionError("the metadata pass decoded pixels")

        monkeypatch.setattr(images, "decode", no_decoding)
        summary = s.add([photos])
        assert (summary.unchanged, summary.encoded, summary.added, summary.updated) == (N, 0, 0, 0)
        assert summary.metadata_read == N
        assert {h.path for h in s.search("a photo", k=N, camera="nikon")} == matching(facts, "nikon")
        assert s.info()["photo_metadata"]["metadata_unread"] == 0
        assert s.add([photos]).metadata_read == 0  # read once
    upgraded = state(fresh)
    assert upgraded["embeddings"] == original["embeddings"]  # byte for byte: nothing re-encoded
    assert upgraded["meta"]["schema_version"] == original["meta"]["schema_version"]
