"""Which image of a duplicate group to keep, and why: the rule every level of `dupes` shares.

1. the most pixels (a larger picture holds more than a downscaled copy);
2. the least compressed: the most bytes per pixel (a quality-95 file over its quality-30 re-save), compared in
   steps of ~19 % (a quarter of a doubling) so that small differences between similar encodings fall through,
   and only between files of one format: across formats bytes say nothing of quality (a PNG made from a JPEG
   is ten times bigger and holds the same pixels; a WebP of a line drawing is bigger than its PNG);
3. so between formats, the original format over a conversion: the group's oldest file's format is taken as the
   original's;
4. the oldest file (modification time), then the first by path.

`rank` orders a group by this rule and says in words which step chose the keeper over the runner-up.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence

from clipsearch.catalog.records import ImageRecord


def pixels(record: ImageRecord) -> int:
    return (record.width or 0) * (record.height or 0)


def bytes_per_pixel(record: ImageRecord) -> float:
    return record.size / pixels(record) if pixels(record) else 0.0


def _compression_step(record: ImageRecord) -> int:
    """Bytes per pixel on a log scale, 4 steps a doubling (larger: less compressed)."""
    bpp = bytes_per_pixel(record)
    return math.floor(math.log2(bpp) * 4) if bpp > 0 else -10**6


def original_format(records: Sequence[ImageRecord]) -> str | None:
    """The format of the oldest file of a group: the one the others were converted from, if any were."""
    if not records:
        return None
    return min(records, key=lambda r: (r.mtime_ns, r.path)).format


def keeper_key(record: ImageRecord, original: str | None = None) -> tuple:
    """Sort key: the best keeper first (see the module's rule); `original` is the group's original format."""
    converted = original is not None and record.format != original
    # `converted` before the compression step: it only orders files of different formats (the original's
    # against the others), where bytes per pixel does not apply; between files of one format it is a tie
    return (-pixels(record), converted, -_compression_step(record), record.mtime_ns, record.path)


def rank(records: Sequence[ImageRecord]) -> tuple[list[ImageRecord], str]:
    """The group keeper first, then the others in the rule's order, and why the keeper comes first."""
    original = original_format(records)
    ordered = sorted(records, key=lambda r: keeper_key(r, original))
    return ordered, why(ordered, original)


def why(ordered: Sequence[ImageRecord], original: str | None) -> str:
    """In words, the step of the rule that put ordered[0] before ordered[1]."""
    if len(ordered) < 2:
        return "the only image"
    k, r = ordered[0], ordered[1]
    if pixels(k) != pixels(r):
        return f"most pixels ({k.width}x{k.height}; next {r.width}x{r.height})"
    if original is not None and k.format == original and r.format != original:
        return f"original format ({k.format}; {r.format} is a conversion)"
    if _compression_step(k) != _compression_step(r):
        return (f"least compressed ({bytes_per_pixel(k):.2f} bytes per pixel; next "
                f"{bytes_per_pixel(r):.2f})")
    if k.mtime_ns != r.mtime_ns:
        return f"oldest (modified {_date(k.mtime_ns)}; next {_date(r.mtime_ns)})"
    return "first by path (otherwise alike)"


def _date(mtime_ns: int) -> str:
    return dt.datetime.fromtimestamp(mtime_ns / 1e9).isoformat(timespec="seconds")
