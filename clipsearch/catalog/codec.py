"""What the catalog's bytes mean, without SQLAlchemy: the path code, sentinel values, meta keys, the vector blob.

`schema` (the tables, through SQLAlchemy) and `reads` (plain SQL, run over SQLAlchemy by `Catalog` and over the
standard library's sqlite3 by `QuickCatalog` for cold queries) share these, so every path reads the same
database the same way.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

SCHEMA_LATEST = 7  # the schema this release writes; `schema.MIGRATIONS` must end here
# The oldest schema a read-only open reads as it is: the steps since only add what a reader can do without
# (schema 4: perceptual hashes, `SqlReads.hashes_kept` says whether they are there; schema 5: photo metadata,
# `SqlReads._photo_columns`; schema 6 changed how SQLite hands out ids, no read; schema 7: the text read inside
# images, which a store only has once `meta.reads_text` says so). Older ones need a writable open to upgrade.
SCHEMA_READABLE = 3
SCHEMA_HASHES = 4  # images.phash
SCHEMA_PHOTO_META = 5  # images' photo metadata columns (`SqlReads._photo_columns` says whether they are there)
SCHEMA_VERSION = "schema_version"  # meta keys
VECTORS_VERSION = "vectors_version"
HASHES_VERSION = "hashes_version"  # bumped when hashes are added to rows already stored (the vectors version stays)
HAS_VIDEO = "has_video"
READS_TEXT = "reads_text"  # the store reads the text inside its images (index --ocr), from then on
TEXT_INDEX = "text_index"  # PostgreSQL: "trigram" (pg_trgm's GIN index) or "scan" (no pg_trgm: ILIKE scans)
STILL = -1  # frame_ms of a still image; a video's frames carry their timestamp in milliseconds
VECTOR_DTYPE = np.float16

# --- file names that are not UTF-8 ------------------------------------------------------------------------
# POSIX names are bytes; Python shows undecodable bytes as lone surrogates (U+DC80..U+DCFF), which no SQL
# text column accepts. They are stored as ESC + two hex digits, ESC itself as ESC ESC. ESC is a Unicode
# noncharacter, and the code is per character and prefix-free, so path-prefix (LIKE) filters still work.
_ESC = "\ufdd0"


def path_to_db(path: str) -> str:
    if _ESC not in path:
        try:
            path.encode("utf-8")
            return path
        except UnicodeEncodeError:
            pass
    parts = []
    for ch in path:
        code = ord(ch)
        if ch == _ESC:
            parts.append(_ESC + _ESC)
        elif 0xDC80 <= code <= 0xDCFF:
            parts.append(f"{_ESC}{code - 0xDC00:02x}")
        elif 0xD800 <= code <= 0xDFFF:
            raise ValueError(f"path holds a lone surrogate that no file name decodes to: {path!r}")
        else:
            parts.append(ch)
    return "".join(parts)


def path_from_db(text: str) -> str:
    if _ESC not in text:
        return text
    parts, i = [], 0
    while i < len(text):
        ch = text[i]
        if ch != _ESC:
            parts.append(ch)
            i += 1
        elif text[i + 1:i + 2] == _ESC:
            parts.append(_ESC)
            i += 2
        else:
            parts.append(chr(0xDC00 + int(text[i + 1:i + 3], 16)))
            i += 3
    return "".join(parts)


def escape_like(prefix: str) -> str:
    return prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def under_patterns(paths: Iterable[str]) -> list[tuple[str, str]]:
    """(exact path, LIKE pattern for what lies below it) per folder, in the stored (path_to_db) form."""
    out = []
    for path in paths:
        base = path.rstrip("/") or "/"
        out.append((path_to_db(base), path_to_db(escape_like(base.rstrip("/")) + "/%")))
    return out


def vector_to_blob(vec: np.ndarray) -> bytes:
    return np.asarray(vec, dtype=VECTOR_DTYPE).tobytes()


def blobs_to_matrix(blobs: list[bytes], dim: int) -> np.ndarray:
    if not blobs:
        return np.zeros((0, dim), dtype=np.float32)
    return np.frombuffer(b"".join(blobs), dtype=VECTOR_DTYPE).reshape(len(blobs), dim).astype(np.float32)


# --- the lines of text read in an image (image_text.lines) ----------------------------------------------
def lines_to_json(lines: Iterable[tuple[str, tuple[float, float, float, float]]]) -> str:
    """[(text, (x0, y0, x1, y1)), ...] → compact JSON: [[x0, y0, x1, y1, text], ...], boxes to 4 decimals."""
    import json

    return json.dumps([[*(round(v, 4) for v in box), text] for text, box in lines], ensure_ascii=False)


def lines_from_json(value: str | None) -> list[tuple[str, tuple[float, float, float, float]]]:
    import json

    return [(row[4], (row[0], row[1], row[2], row[3])) for row in json.loads(value or "[]")]


HASH_WORDS = 3  # perceptual hashes a still image's `phash` blob holds (big-endian uint64; media/phash.py)


def hash_blobs_to_matrix(blobs: list[bytes]) -> np.ndarray:
    """(n, HASH_WORDS) uint64 from n `phash` blobs."""
    if not blobs:
        return np.zeros((0, HASH_WORDS), dtype=np.uint64)
    return np.frombuffer(b"".join(blobs), dtype=">u8").astype(np.uint64).reshape(len(blobs), HASH_WORDS)
