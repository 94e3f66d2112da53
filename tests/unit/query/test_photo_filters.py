"""Photo-metadata filters: parsing (one clear error per bad value), time bounds in their frames, and the distance
filter's geometry (bounding box across the antimeridian and near the poles, exact great-circle distance)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from clipsearch.catalog.photo_filter import bounding_box, distance_km, within
from clipsearch.errors import ClipsearchError
from clipsearch.query.photo_filters import DEFAULT_NEAR_KM, near_point, photo_filter, taken_bound


@pytest.mark.parametrize("value, message", [
    ("200,0", "latitude 200 is out of range"), ("0,181", "longitude 181 is out of range"),
    ("48.8,2.3,0", "distance 0 km is out of range"), ("48.8,2.3,-5", "distance -5 km"),
    ("48.8,2.3,30000", "distance 30000 km"), ("48.8", "is not LAT,LON"), ("1,2,3,4", "is not LAT,LON"),
    ("north,2", "near latitude 'north' is not a number"), ("nan,2", "latitude 'nan' is not a number"),
    ("1,inf", "longitude 'inf' is not a number")])
def test_bad_near_is_one_clear_error(value: str, message: str) -> None:
    with pytest.raises(ClipsearchError, match=message) as caught:
        near_point(value)
    assert caught.value.param == "near" and "LAT,LON" in (caught.value.hint or "")


def test_near_defaults_and_forms() -> None:
    assert near_point("48.8584, 2.2945") == (48.8584, 2.2945, DEFAULT_NEAR_KM)
    assert near_point((-33.85, 151.21, 2)) == (-33.85, 151.21, 2.0)
    assert near_point("") is None and near_point(None) is None


def test_time_bounds_keep_wall_clock_and_instant() -> None:
    naive = taken_bound("2023-06-01", "taken_after")
    assert naive is not None and not naive.aware
    assert naive.wall == (dt.datetime(2023, 6, 1) - dt.datetime(1970, 1, 1)) // dt.timedelta(microseconds=1)
    assert naive.instant == round(dt.datetime(2023, 6, 1).timestamp() * 1e6)  # this machine's local midnight
    aware = taken_bound("2023-06-01T09:00+09:00", "taken_after")
    assert aware is not None and aware.aware
    assert aware.instant == round(dt.datetime(2023, 6, 1, tzinfo=dt.timezone.utc).timestamp() * 1e6)
    assert aware.wall - aware.instant == 9 * 3600 * 10**6
    with pytest.raises(ClipsearchError, match="taken_before 'june' is not a date") as caught:
        taken_bound("june", "taken_before")
    assert caught.value.param == "taken_before"


def test_camera_text_and_empty_filter() -> None:
    assert not photo_filter()
    assert photo_filter(camera="  Canon   EOS ").camera == "Canon EOS"
    with pytest.raises(ClipsearchError, match="camera"):
        photo_filter(camera="x" * 201)


@pytest.mark.parametrize("lat, lon, km", [(48.85, 2.29, 5), (0, 179.99, 50), (0, -179.99, 50), (89.9, 10, 30),
                                          (-89.95, 0, 20), (60, 30, 1000)])
def test_the_bounding_box_holds_every_point_within_the_distance(lat: float, lon: float, km: float) -> None:
    rng = np.random.default_rng(0)
    # points all around the centre, some just inside and some just outside the distance
    bearings = rng.uniform(0, 2 * np.pi, 2000)
    dist = rng.uniform(0, km * 1.2, 2000) / 6371.0088
    p1, l1 = np.radians(lat), np.radians(lon)
    p2 = np.arcsin(np.sin(p1) * np.cos(dist) + np.cos(p1) * np.sin(dist) * np.cos(bearings))
    l2 = l1 + np.arctan2(np.sin(bearings) * np.sin(dist) * np.cos(p1), np.cos(dist) - np.sin(p1) * np.sin(p2))
    lats, lons = np.degrees(p2), (np.degrees(l2) + 540) % 360 - 180
    inside = distance_km(lat, lon, lats, lons) <= km
    lo, hi, spans = bounding_box(lat, lon, km)
    boxed = (lats >= lo) & (lats <= hi) & np.any([(lons >= w) & (lons <= e) for w, e in spans], axis=0)
    assert boxed[inside].all()  # nothing within the distance falls outside the box
    ids = within(((i, a, b) for i, (a, b) in enumerate(zip(lats, lons, strict=True)) if boxed[i]), (lat, lon, km))
    assert sorted(ids.tolist()) == np.flatnonzero(inside).tolist()


def test_distance_is_the_great_circle() -> None:
    paris, london = (48.8566, 2.3522), (51.5074, -0.1278)
    assert distance_km(*paris, np.array([london[0]]), np.array([london[1]]))[0] == pytest.approx(343.5, abs=1)
