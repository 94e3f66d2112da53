"""Walk folders and report file facts with one `stat` per file; recognise images by their first bytes."""

from __future__ import annotations

import fnmatch
import os
import stat as stat_mod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from .errors import ClipsearchError

# Extensions we treat as image candidates without sniffing: a bad file with one of these is reported as a
# failure (the user expected an image), while other files become candidates only if their bytes say so.
IMAGE_EXTENSIONS = {
    ".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".webp", ".gif", ".bmp", ".dib", ".tif", ".tiff",
    ".heic", ".heif", ".avif",
}

_MAGIC: tuple[tuple[bytes, int, str], ...] = (
    (b"\xff\xd8\xff", 0, "JPEG"),
    (b"\x89PNG\r\n\x1a\n", 0, "PNG"),
    (b"GIF87a", 0, "GIF"),
    (b"GIF89a", 0, "GIF"),
    (b"BM", 0, "BMP"),
    (b"II*\x00", 0, "TIFF"),
    (b"MM\x00*", 0, "TIFF"),
)


def sniff_format(head: bytes) -> str | None:
    """The image format named by a file's first bytes, or None."""
    for magic, offset, name in _MAGIC:
        if head[offset:offset + len(magic)] == magic:
            return name
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if head[4:8] == b"ftyp" and head[8:12] in (b"heic", b"heix", b"mif1", b"msf1", b"heim", b"heis", b"avif", b"avis"):
        return "AVIF" if head[8:12] in (b"avif", b"avis") else "HEIF"
    return None


def sniff_file(path: str) -> str | None:
    try:
        with open(path, "rb") as f:
            return sniff_format(f.read(16))
    except OSError:
        return None


@dataclass(frozen=True)
class FileFacts:
    path: str
    size: int
    mtime_ns: int

    @property
    def ext(self) -> str:
        return os.path.splitext(self.path)[1].lower()

    @property
    def has_image_ext(self) -> bool:
        return self.ext in IMAGE_EXTENSIONS


@dataclass
class ScanResult:
    files: list[FileFacts] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)  # (path, why) for unreadable dirs/names


def _excluded(rel: str, name: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatch(rel, p) or fnmatch.fnmatch(name, p) for p in patterns)


def _valid_name(path: str) -> bool:
    """SQLite stores UTF-8: names with undecodable bytes (surrogate escapes) cannot be catalogued."""
    try:
        path.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def walk(root: str, *, exclude: Iterable[str] = (), include_hidden: bool = False,
         skip_dirs: Iterable[str] = (), result: ScanResult | None = None) -> ScanResult:
    """Every regular file under `root`; follows directory symlinks once (loops are cut by inode)."""
    result = result or ScanResult()
    patterns = tuple(exclude)
    skip = {os.path.abspath(d) for d in skip_dirs}
    root = os.path.abspath(root)
    seen_dirs: set[tuple[int, int]] = set()
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            st = os.stat(folder)
        except OSError as exc:
            result.problems.append((folder, exc.strerror or str(exc)))
            continue
        if (st.st_dev, st.st_ino) in seen_dirs:
            continue
        seen_dirs.add((st.st_dev, st.st_ino))
        try:
            entries = list(os.scandir(folder))
        except OSError as exc:
            result.problems.append((folder, exc.strerror or str(exc)))
            continue
        for entry in entries:
            name = entry.name
            if not include_hidden and name.startswith("."):
                continue
            rel = os.path.relpath(entry.path, root)
            if patterns and _excluded(rel, name, patterns):
                continue
            if not _valid_name(entry.path):
                result.problems.append((entry.path.encode("utf-8", "replace").decode(), "file name is not valid UTF-8"))
                continue
            try:
                est = entry.stat()  # follows symlinks
            except OSError as exc:
                result.problems.append((entry.path, exc.strerror or str(exc)))
                continue
            if stat_mod.S_ISDIR(est.st_mode):
                if entry.path not in skip:
                    stack.append(entry.path)
            elif stat_mod.S_ISREG(est.st_mode):
                result.files.append(FileFacts(entry.path, est.st_size, est.st_mtime_ns))
    return result


def scan(targets: Iterable[str | Path], **kwargs) -> tuple[list[str], ScanResult]:
    """Scan folders and single files; returns (the folder roots, all files found)."""
    result = ScanResult()
    roots: list[str] = []
    for target in targets:
        path = os.path.abspath(os.path.expanduser(str(target)))
        if os.path.isdir(path):
            roots.append(path)
            walk(path, result=result, **kwargs)
        elif os.path.isfile(path):
            st = os.stat(path)
            result.files.append(FileFacts(path, st.st_size, st.st_mtime_ns))
        else:
            raise ClipsearchError(f"no such file or folder: {target}", "check the path and try again")
    seen: set[str] = set()
    unique = [f for f in result.files if not (f.path in seen or seen.add(f.path))]
    result.files = unique
    return roots, result
