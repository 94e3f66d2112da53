"""Photo-metadata filters from what a caller gives (strings from a command line or a form, or Python values) to
the catalog's `PhotoFilter`, with one clear error per bad value; and the notes a filtered query owes its user.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from typing import Any

from clipsearch.catalog.photo_filter import PhotoFilter, TimeBound
from clipsearch.catalog.records import ImageRecord
from clipsearch.errors import ClipsearchError

DEFAULT_NEAR_KM = 10.0
MAX_NEAR_KM = 20_038.0  # half the Earth's circumference: every point is this near
MAX_CAMERA_CHARS = 200
EPOCH = dt.datetime(1970, 1, 1)
EPOCH_UTC = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
NEAR_HINT = "give LAT,LON or LAT,LON,KM in decimal degrees, e.g. 48.8584,2.2945,5 (5 km around the Eiffel Tower)"


def taken_bound(value: str | dt.date | None, name: str) -> TimeBound | None:
    """'2023-06-01', '2023-06-01T14:00', '2023-06-01T14:00+09:00' (or a date / datetime) → a TimeBound."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        text = value
        try:
            value = dt.datetime.fromisoformat(text.strip())
        except ValueError as exc:
            raise ClipsearchError(f"{name} {text[:40]!r} is not a date",
                                  "use YYYY-MM-DD, YYYY-MM-DDTHH:MM, or with an offset: 2023-06-01T14:00+09:00",
                                  param=name) from exc
    if not isinstance(value, dt.datetime):
        value = dt.datetime.combine(value, dt.time())
    try:
        wall = (value.replace(tzinfo=None) - EPOCH) // dt.timedelta(microseconds=1)
        if value.tzinfo is not None:
            instant = (value - EPOCH_UTC) // dt.timedelta(microseconds=1)
        else:
            instant = round(value.timestamp() * 1e6)  # a naive bound is this machine's local time for file times
    except (OverflowError, ValueError, OSError) as exc:  # year 1 at local midnight, ...
        raise ClipsearchError(f"{name} {value.date().isoformat()} is out of range",
                              "use a date between 1900 and 9999", param=name) from exc
    return TimeBound(wall, instant, value.tzinfo is not None)


def _number(text: str, what: str) -> float:
    try:
        number = float(text)
    except ValueError:
        number = math.nan
    if not math.isfinite(number):
        raise ClipsearchError(f"near {what} {text.strip()[:40]!r} is not a number", NEAR_HINT, param="near")
    return number


def near_point(value: str | Sequence[float] | None) -> tuple[float, float, float] | None:
    """'LAT,LON[,KM]' (or a sequence of 2-3 numbers) → (lat, lon, km), checked."""
    if value is None or value == "":
        return None
    parts = [p for p in value.split(",")] if isinstance(value, str) else [str(v) for v in value]
    if len(parts) not in (2, 3):
        raise ClipsearchError(f"near {str(value)[:60]!r} is not LAT,LON[,KM]", NEAR_HINT, param="near")
    lat = _number(parts[0], "latitude")
    lon = _number(parts[1], "longitude")
    km = _number(parts[2], "distance") if len(parts) == 3 else DEFAULT_NEAR_KM
    if not -90 <= lat <= 90:
        raise ClipsearchError(f"near latitude {lat:g} is out of range (-90 to 90)", NEAR_HINT, param="near")
    if not -180 <= lon <= 180:
        raise ClipsearchError(f"near longitude {lon:g} is out of range (-180 to 180)", NEAR_HINT, param="near")
    if not 0 < km <= MAX_NEAR_KM:
        raise ClipsearchError(f"near distance {km:g} km is out of range (more than 0, at most "
                              f"{MAX_NEAR_KM:g})", NEAR_HINT, param="near")
    return lat, lon, km


def camera_text(value: str | None) -> str | None:
    if value is None or not value.strip():
        return None
    text = " ".join(value.split())
    if len(text) > MAX_CAMERA_CHARS or "\0" in text:
        raise ClipsearchError(f"camera takes at most {MAX_CAMERA_CHARS} characters, without NUL bytes",
                              "give part of a camera's make or model, e.g. canon or iphone", param="camera")
    return text


def photo_filter(taken_after: Any = None, taken_before: Any = None, camera: str | None = None,
                 near: Any = None) -> PhotoFilter:
    return PhotoFilter(taken_bound(taken_after, "taken_after"), taken_bound(taken_before, "taken_before"),
                       camera_text(camera), near_point(near))


def notes(f: PhotoFilter, records: Sequence[ImageRecord], unread: int) -> list[str]:
    """What the user should know about a query filtered by metadata: results matched by their file's time (no
    capture time), and images the store has not read metadata for yet."""
    out = []
    if f.by_time:
        by_file = sum(1 for r in records if r.meta is None or r.meta.taken_local is None)
        if by_file:
            out.append(f"{by_file} of {len(records)} results have no capture time: the capture-time filter "
                       "compared their file's modification time instead")
    if f and unread:
        out.append(f"{unread} images were indexed before photo metadata was read, so metadata filters do not see "
                   "it yet: index their folders again (it reads only their headers, nothing is re-encoded)")
    return out
