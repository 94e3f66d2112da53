"""HTTP Range requests over an indexed file (RFC 9110 §14): what lets a browser's <video> seek to a moment.

One range per request (`bytes=START-END`, `bytes=START-`, `bytes=-SUFFIX`), which is what media players send;
several ranges, or a malformed header, are answered with the whole file (as the RFC allows), an unsatisfiable
one with 416. The body is streamed from the file that was opened and verified, in chunks, never read whole.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import BinaryIO

from fastapi.responses import Response, StreamingResponse

CHUNK = 256 * 1024
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


class Unsatisfiable(Exception):
    """A range that starts past the end of the file."""


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(first, last) byte, inclusive, of a single `Range: bytes=…` within `size`; None for the whole file."""
    if not header:
        return None
    match = _RANGE.fullmatch(header.strip())
    if match is None or (not match[1] and not match[2]):
        return None  # several ranges or another unit: the whole file is a valid answer
    if not match[1]:  # the last N bytes
        suffix = int(match[2])
        if suffix == 0:
            raise Unsatisfiable
        return max(0, size - suffix), size - 1
    first = int(match[1])
    last = min(int(match[2]), size - 1) if match[2] else size - 1
    if first >= size or last < first:
        raise Unsatisfiable
    return first, last


def _chunks(f: BinaryIO, first: int, length: int) -> Iterator[bytes]:
    try:
        f.seek(first)
        while length > 0:
            data = f.read(min(CHUNK, length))
            if not data:
                return
            length -= len(data)
            yield data
    finally:
        f.close()


def ranged(f: BinaryIO, size: int, range_header: str | None, media_type: str, headers: dict[str, str]) -> Response:
    """The file (200) or the requested part of it (206), streamed from `f` (closed when done); 416 for a range
    past its end. Every answer says `Accept-Ranges: bytes`, so a player knows it may seek."""
    headers = {**headers, "Accept-Ranges": "bytes"}
    try:
        wanted = parse_range(range_header, size)
    except Unsatisfiable:
        f.close()
        return Response(status_code=416, headers={**headers, "Content-Range": f"bytes */{size}"})
    first, last = wanted if wanted is not None else (0, size - 1)
    length = last - first + 1
    headers["Content-Length"] = str(length)
    if wanted is not None:
        headers["Content-Range"] = f"bytes {first}-{last}/{size}"
    return StreamingResponse(_chunks(f, first, length), status_code=206 if wanted is not None else 200,
                             media_type=media_type, headers=headers)
