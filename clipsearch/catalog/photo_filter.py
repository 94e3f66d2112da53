"""Filters on photo metadata, as SQL both catalog dialects accept: capture time (falling back to the file's time),
camera, and a distance from a point (a bounding box in SQL, the exact great-circle distance after it); and the
time a listing without a query orders by (`when_sql`, `when_us`).

Capture times are compared in the frame each row has: a bound written without an offset (`2023-06-01`) is a
wall-clock time and meets a photo's own wall clock (what its camera showed, wherever it was); a bound with an
offset is an instant and meets a photo's UTC instant where its offset is known, its wall clock where not. A
file without a capture time is compared by its modification time, read as the bound's instant.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from clipsearch.catalog.codec import escape_like
from clipsearch.catalog.records import PhotoMeta

EARTH_KM = 6371.0088  # mean Earth radius
KM_PER_DEGREE = math.pi * EARTH_KM / 180


@dataclass(frozen=True)
class TimeBound:
    """One end of a capture-time range."""
    wall: int  # the bound's wall clock, microseconds since 1970-01-01T00:00 of that clock
    instant: int  # the bound as an instant, microseconds since the epoch (a naive bound: in this machine's zone)
    aware: bool  # the bound was written with a UTC offset


@dataclass(frozen=True)
class PhotoFilter:
    """What a query asks of the photos' metadata; None everywhere is no filter."""
    taken_after: TimeBound | None = None  # capture time >= (file time where there is none)
    taken_before: TimeBound | None = None  # capture time <
    camera: str | None = None  # a substring of "make model", any case
    near: tuple[float, float, float] | None = None  # (lat, lon, km)

    def __bool__(self) -> bool:
        return any(v is not None for v in (self.taken_after, self.taken_before, self.camera, self.near))

    @property
    def by_time(self) -> bool:
        return self.taken_after is not None or self.taken_before is not None


Bind = Callable[[Any], str]  # binds a value, returns its placeholder


def _time(bind: Bind, bound: TimeBound, op: str) -> str:
    instant_ns = max(-(2**63), min(bound.instant * 1000, 2**63 - 1))
    by_file = f"(taken_local IS NULL AND mtime_ns {op} {bind(instant_ns)})"
    if not bound.aware:
        return f"((taken_local IS NOT NULL AND taken_local {op} {bind(bound.wall)}) OR {by_file})"
    utc = "taken_local - CAST(taken_offset AS BIGINT) * 60000000"
    return (f"((taken_offset IS NOT NULL AND taken_local IS NOT NULL AND {utc} {op} {bind(bound.instant)}) OR "
            f"(taken_local IS NOT NULL AND taken_offset IS NULL AND taken_local {op} {bind(bound.wall)}) OR "
            f"{by_file})")


# --- a listing by capture time --------------------------------------------------------------------------------
# One instant per row, microseconds since the epoch: the capture instant where the offset is known; a capture
# time without one read in this machine's zone (as a bound without an offset is read against file times); a file
# without a capture time by its modification time. Integer division truncates towards zero in both dialects.
def zone_minutes() -> int:
    """This machine's UTC offset now, in minutes east (what a capture time without its own offset is read in)."""
    offset = dt.datetime.now().astimezone().utcoffset()
    return round(offset.total_seconds() / 60) if offset is not None else 0


def when_sql(bind: Bind, zone: int) -> str:
    """The SQL of each row's instant for ordering (`zone`: minutes east, for capture times without an offset)."""
    return ("CASE WHEN taken_local IS NULL THEN mtime_ns / 1000 "
            f"ELSE taken_local - CAST(COALESCE(taken_offset, {bind(zone)}) AS BIGINT) * 60000000 END")


def when_us(mtime_ns: int, meta: PhotoMeta | None, zone: int) -> int:
    """`when_sql` of one record, in Python (for listings filtered after SQL): the same instant, the same ties."""
    if meta is None or meta.taken_local is None:
        return mtime_ns // 1000 if mtime_ns >= 0 else -(-mtime_ns // 1000)
    offset = meta.taken_offset if meta.taken_offset is not None else zone
    return meta.taken_local - offset * 60_000_000


def bounding_box(lat: float, lon: float, km: float) -> tuple[float, float, list[tuple[float, float]]]:
    """(lat low, lat high, longitude ranges) that hold every point within `km` of (lat, lon); the longitudes
    split in two across the antimeridian, and span the globe near a pole."""
    dlat = km / KM_PER_DEGREE
    lo, hi = max(-90.0, lat - dlat), min(90.0, lat + dlat)
    if lo <= -90 or hi >= 90 or km >= math.pi * EARTH_KM / 2:
        return lo, hi, [(-180.0, 180.0)]
    # the widest longitude span within km is at the box's edge nearer the pole
    dlon = math.degrees(math.asin(min(1.0, math.sin(km / EARTH_KM) / math.cos(math.radians(max(abs(lo), abs(hi)))))))
    west, east = lon - dlon, lon + dlon
    if west < -180:
        return lo, hi, [(west + 360, 180.0), (-180.0, east)]
    if east > 180:
        return lo, hi, [(west, 180.0), (-180.0, east - 360)]
    return lo, hi, [(west, east)]


def where(bind: Bind, f: PhotoFilter) -> list[str]:
    """The SQL conditions of `f` (the distance only as its bounding box: `within` finishes it)."""
    out = []
    if f.taken_after is not None:
        out.append(_time(bind, f.taken_after, ">="))
    if f.taken_before is not None:
        out.append(_time(bind, f.taken_before, "<"))
    if f.camera:
        pattern = "%" + escape_like(f.camera.lower()) + "%"
        out.append("lower(COALESCE(camera_make, '') || ' ' || COALESCE(camera_model, '')) "
                   f"LIKE {bind(pattern)} ESCAPE '\\'")
    if f.near is not None:
        lo, hi, spans = bounding_box(*f.near)
        lons = " OR ".join(f"gps_lon BETWEEN {bind(w)} AND {bind(e)}" for w, e in spans)
        out.append(f"gps_lat BETWEEN {bind(lo)} AND {bind(hi)} AND ({lons})")
    return out


def distance_km(lat: float, lon: float, lats: np.ndarray, lons: np.ndarray) -> np.ndarray:
    """Great-circle (haversine) distances from one point to many, in km."""
    p1, p2 = math.radians(lat), np.radians(lats)
    dp, dl = p2 - p1, np.radians(lons - lon)
    a = np.sin(dp / 2) ** 2 + math.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
    return 2 * EARTH_KM * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))


def within(rows: Iterable[tuple[int, float, float]], near: tuple[float, float, float]) -> np.ndarray:
    """The ids of (id, lat, lon) rows that lie within the distance (the rows of the bounding box)."""
    data = np.asarray(list(rows), dtype=np.float64).reshape(-1, 3)
    if not len(data):
        return np.zeros(0, dtype=np.int64)
    lat, lon, km = near
    keep = distance_km(lat, lon, data[:, 1], data[:, 2]) <= km
    return data[keep, 0].astype(np.int64)
