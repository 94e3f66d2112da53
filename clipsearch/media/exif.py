"""Photo metadata from EXIF (stills) and container tags (videos): capture time with its UTC offset, camera make
and model, lens, GPS position.

Everything here reads data a stranger wrote, so every field is parsed on its own and a field that is missing,
malformed or hostile (wrong types, NUL bytes, control characters, zero denominators, impossible dates, huge
strings) is simply absent: reading metadata never fails a file, let alone a run.

Stills are read from the `Image` that decoding already opened for its orientation (no second open); an existing
store's files are read from their headers alone (`read_header`: no pixel decoded, nothing encoded); videos from
the container's tags through PyAV, without decoding a frame.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import warnings
from collections.abc import Mapping
from typing import Any

from PIL import Image

from clipsearch.catalog.records import NO_META, PhotoMeta

EXIF_IFD = 0x8769
GPS_IFD = 0x8825
MAKE, MODEL = 0x010F, 0x0110
DATETIME_ORIGINAL, DATETIME_DIGITIZED = 0x9003, 0x9004
OFFSET_ORIGINAL, OFFSET_DIGITIZED = 0x9011, 0x9012
SUBSEC_ORIGINAL, SUBSEC_DIGITIZED = 0x9291, 0x9292
LENS_MAKE, LENS_MODEL = 0xA433, 0xA434
GPS_LAT_REF, GPS_LAT, GPS_LON_REF, GPS_LON = 1, 2, 3, 4
MAX_TEXT = 64  # characters kept of a make, model or lens name
MAX_OFFSET_MIN = 14 * 60  # the widest UTC offsets in use are -12:00 and +14:00
EPOCH = dt.datetime(1970, 1, 1)

_DATETIME = re.compile(r"\s*(\d{4})[:-](\d{2})[:-](\d{2})[ T](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?\s*(.*)")
_OFFSET = re.compile(r"([+-])(\d{2}):?(\d{2})")
_ISO6709 = re.compile(r"([+-]\d+(?:\.\d+)?)([+-]\d+(?:\.\d+)?)")


def local_micros(value: dt.datetime) -> int:
    """A naive wall-clock time → microseconds since 1970-01-01T00:00 of the same (naive) clock."""
    return (value - EPOCH) // dt.timedelta(microseconds=1)


def _text(value: Any) -> str | None:
    """A printable, trimmed, bounded name from an ASCII/UTF-8 tag; None for anything else."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if not isinstance(value, str):
        return None
    cleaned = "".join(c for c in value.split("\0", 1)[0] if c.isprintable()).strip()
    return " ".join(cleaned.split())[:MAX_TEXT] or None


def parse_offset(value: Any) -> int | None:
    """'+09:00', '-0530', 'Z' → minutes east of UTC; None when absent or implausible."""
    text = _text(value)
    if text in ("Z", "z"):
        return 0
    m = _OFFSET.fullmatch(text or "")
    if not m:
        return None
    hours, minutes = int(m.group(2)), int(m.group(3))
    total = hours * 60 + minutes
    if minutes >= 60 or total > MAX_OFFSET_MIN:
        return None
    return -total if m.group(1) == "-" else total


def parse_datetime(value: Any, subsec: Any = None) -> tuple[dt.datetime, str] | None:
    """EXIF's 'YYYY:MM:DD HH:MM:SS' (also ISO's '-' and 'T') → (naive datetime, what follows it); None when
    absent, blank ('    :  :  ') or impossible. `subsec` (SubSecTime digits) adds the fraction."""
    m = _DATETIME.fullmatch(_text(value) or "")
    if not m:
        return None
    fraction = m.group(7) or (_text(subsec) or "")
    micros = int((fraction if fraction.isdigit() else "0")[:6].ljust(6, "0"))
    try:
        year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
        when = dt.datetime(year, month, day, hour, minute, second, micros)
    except ValueError:  # month 13, 0000:00:00, ...
        return None
    return when, m.group(8)


def _rational(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError, ZeroDivisionError, OverflowError):
        return None
    return number if math.isfinite(number) else None


def _degrees(value: Any, ref: Any, limit: float, negative: str) -> float | None:
    """GPS (degrees, minutes, seconds) rationals and an N/S or E/W reference → signed decimal degrees."""
    if not isinstance(value, tuple | list) or not 1 <= len(value) <= 3:
        return None
    parts = [_rational(v) for v in value]
    if any(p is None or p < 0 for p in parts):
        return None
    degrees = sum(p / 60 ** i for i, p in enumerate(parts) if p is not None)
    if degrees > limit:
        return None
    ref_text = (_text(ref) or "").upper()[:1]
    return -degrees if ref_text == negative else degrees


def _position(lat: float | None, lon: float | None) -> tuple[float | None, float | None]:
    """Both or neither; (0, 0) is what cameras write without a fix, so it counts as no position."""
    if lat is None or lon is None or (lat == 0 and lon == 0):
        return None, None
    return round(lat, 7), round(lon, 7)


def _field(read: Any, *args: Any) -> Any:
    """One tag, or None when reading it fails in any way (a hostile IFD must cost only that field)."""
    try:
        return read(*args)
    except Exception:
        return None


def from_exif(exif: Image.Exif) -> PhotoMeta:
    """The metadata in an EXIF block (as `Image.getexif()` returns it)."""
    if not exif:
        return NO_META
    sub: Mapping[int, Any] = _field(exif.get_ifd, EXIF_IFD) or {}
    gps: Mapping[int, Any] = _field(exif.get_ifd, GPS_IFD) or {}
    taken_local = offset = None
    for when_tag, sub_tag, offset_tag in ((DATETIME_ORIGINAL, SUBSEC_ORIGINAL, OFFSET_ORIGINAL),
                                          (DATETIME_DIGITIZED, SUBSEC_DIGITIZED, OFFSET_DIGITIZED)):
        parsed = _field(parse_datetime, _field(sub.get, when_tag), _field(sub.get, sub_tag))
        if parsed:
            taken_local = local_micros(parsed[0])
            offset = _field(parse_offset, _field(sub.get, offset_tag))
            break
    lat = _field(_degrees, _field(gps.get, GPS_LAT), _field(gps.get, GPS_LAT_REF), 90.0, "S")
    lon = _field(_degrees, _field(gps.get, GPS_LON), _field(gps.get, GPS_LON_REF), 180.0, "W")
    lat, lon = _position(lat, lon)
    return PhotoMeta(taken_local, offset, _field(_text, _field(exif.get, MAKE)),
                     _field(_text, _field(exif.get, MODEL)),
                     _field(_text, _field(sub.get, LENS_MODEL)), lat, lon)


def of_image(im: Image.Image, header_only: bool = False) -> PhotoMeta:
    """The metadata of an opened image. `header_only`: never decode pixels to find it (a PNG whose EXIF chunk
    comes after its pixels then has none; Pillow would load the image to look)."""
    try:
        if header_only and im.format == "PNG" and "exif" not in im.info:
            return NO_META
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow warns of each corrupt tag; a bad field is simply absent
            return from_exif(im.getexif())
    except Exception:  # a broken EXIF block: no metadata, the image itself is fine
        return NO_META


def read_header(path: str) -> PhotoMeta:
    """A still image's metadata from its file's header alone: no pixel is decoded (the metadata-only pass of a
    store indexed before metadata was read). A file that cannot be opened has none."""
    try:
        with open(path, "rb") as f, warnings.catch_warnings():
            warnings.simplefilter("ignore")  # bomb warnings: nothing is decoded here
            with Image.open(f) as im:
                return of_image(im, header_only=True)
    except Exception:
        return NO_META


# --- videos -----------------------------------------------------------------------------------------------
_UNSET_TIMES = {dt.datetime(1904, 1, 1), dt.datetime(1970, 1, 1)}  # QuickTime's and Unix's zero: never set
_VIDEO_MAKE = ("com.apple.quicktime.make", "com.android.manufacturer", "make")
_VIDEO_MODEL = ("com.apple.quicktime.model", "com.android.model", "model")
_VIDEO_PLACE = ("com.apple.quicktime.location.ISO6709", "location", "location-eng")


def _first(tags: Mapping[str, Any], keys: tuple[str, ...]) -> Any:
    return next((tags[k] for k in keys if k in tags), None)


def _video_time(tags: Mapping[str, Any]) -> tuple[int | None, int | None]:
    """QuickTime's creationdate keeps the local time and its offset; creation_time is UTC ('Z')."""
    for key in ("com.apple.quicktime.creationdate", "creation_time", "date"):
        parsed = parse_datetime(tags.get(key))
        if parsed is None or parsed[0].replace(microsecond=0) in _UNSET_TIMES:
            continue
        when, rest = parsed
        return local_micros(when), parse_offset(rest.strip())
    return None, None


def _iso6709(value: Any) -> tuple[float | None, float | None]:
    m = _ISO6709.match(_text(value) or "")
    if not m:
        return None, None
    lat, lon = float(m.group(1)), float(m.group(2))
    if abs(lat) > 90 or abs(lon) > 180:
        return None, None
    return _position(lat, lon)


def from_video_tags(tags: Mapping[str, Any]) -> PhotoMeta:
    """The metadata in a container's tags (PyAV's `container.metadata`, stream tags merged in)."""
    taken_local, offset = _field(_video_time, tags) or (None, None)
    lat, lon = _field(_iso6709, _first(tags, _VIDEO_PLACE)) or (None, None)
    return PhotoMeta(taken_local, offset, _field(_text, _first(tags, _VIDEO_MAKE)),
                     _field(_text, _first(tags, _VIDEO_MODEL)), None, lat, lon)


def of_container(container: Any) -> PhotoMeta:
    """The metadata of an open PyAV container (its own tags first, then its video stream's)."""
    try:
        tags: dict[str, Any] = {}
        for stream in container.streams.video[:1]:
            tags.update(dict(stream.metadata or {}))
        tags.update(dict(container.metadata or {}))
        return from_video_tags(tags)
    except Exception:
        return NO_META


def read_video_header(path: str) -> PhotoMeta:
    """A video's metadata from its container, no frame decoded (the metadata-only pass)."""
    try:
        import av

        with av.open(path, metadata_errors="ignore") as container:
            return of_container(container)
    except Exception:
        return NO_META
