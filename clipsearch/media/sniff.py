"""Whether a file is a video, by its name or its first bytes: what a folder scan asks of every file, kept apart
from `video.py` (NumPy, PIL, PyAV) so scanning and queries import none of them."""

from __future__ import annotations

import os

VIDEO_EXTENSIONS = {".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi"}
_HEIF_BRANDS = (b"heic", b"heix", b"mif1", b"msf1", b"heim", b"heis", b"avif", b"avis")


def sniff_video(head: bytes) -> bool:
    """MP4/MOV (an ftyp box that is not HEIF/AVIF), Matroska/WebM (EBML), or AVI, by the first 16 bytes."""
    if head[4:8] == b"ftyp":
        return head[8:12] not in _HEIF_BRANDS
    return head[:4] == b"\x1a\x45\xdf\xa3" or (head[:4] == b"RIFF" and head[8:12] == b"AVI ")


def is_video_name(path: str) -> bool:
    return os.path.splitext(path)[1].lower() in VIDEO_EXTENSIONS
