"""Walk folders and report file facts with one `stat` per file; recognise images by their first bytes."""

from __future__ import annotations

import fnmatch
import os
import stat as stat_mod
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from clipsearch.errors import ClipsearchError
from clipsearch.fsutil import canonical  # noqa: F401 - scan.canonical: where callers have found it
from clipsearch.media.sniff import VIDEO_EXTENSIONS, sniff_video

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
    return "VIDEO" if sniff_video(head) else None


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
    def has_media_ext(self) -> bool:
        return self.ext in IMAGE_EXTENSIONS or self.ext in VIDEO_EXTENSIONS


@dataclass
class ScanResult:
    files: list[FileFacts] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)  # (path, why): unreadable folders and files
    unreadable: list[str] = field(default_factory=list)  # what we could not look into: its rows are kept
    aliases: int = 0  # symlinks skipped because their target is indexed under its real path


def _excluded(rel: str, name: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatch(rel, p) or fnmatch.fnmatch(name, p) for p in patterns)


def is_inside(path: str, folders: Iterable[str]) -> bool:
    """`path` is one of `folders` or lies below one of them (plain string prefixes of absolute paths)."""
    return any(path == f or path.startswith(f.rstrip("/") + "/") for f in folders)


def walk(root: str, *, exclude: Iterable[str] = (), include_hidden: bool = False, skip_dirs: Iterable[str] = (),
         covered: Iterable[str] = (), result: ScanResult | None = None) -> ScanResult:
    """Every regular file under `root`, in a stable order, one `stat` each.

    Symlink policy: a link whose target lies inside `covered` (the folders indexed under their real paths)
    is an alias and is skipped, so nothing is indexed twice; a link that leads outside is followed and its
    files are catalogued under the link's path. The same file reached twice (hard links, two links to one
    file) is indexed once. A folder or link that cannot be read is reported and listed in `unreadable`,
    so the caller keeps what it indexed there before (an unmounted share is not a deletion).
    """
    result = result or ScanResult()
    patterns = tuple(exclude)
    skip = {os.path.abspath(d) for d in skip_dirs}
    covered = list(covered)
    root = os.path.abspath(root)
    seen_dirs: set[tuple[int, int]] = set()
    seen_files: set[tuple[int, int]] = set()
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            st = os.stat(folder)
            if (st.st_dev, st.st_ino) in seen_dirs:
                continue
            seen_dirs.add((st.st_dev, st.st_ino))
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as exc:
            result.problems.append((folder, exc.strerror or str(exc)))
            result.unreadable.append(folder)
            continue
        subdirs = []
        for entry in entries:
            name = entry.name
            if not include_hidden and name.startswith("."):
                continue
            if patterns and _excluded(os.path.relpath(entry.path, root), name, patterns):
                continue
            try:
                if entry.is_symlink() and is_inside(os.path.realpath(entry.path), covered):
                    result.aliases += 1
                    continue
                est = entry.stat()  # follows symlinks
            except OSError as exc:
                why = exc.strerror or str(exc)
                result.problems.append((entry.path, f"broken link: {why}" if entry.is_symlink() else why))
                result.unreadable.append(entry.path)
                continue
            if stat_mod.S_ISDIR(est.st_mode):
                if entry.path not in skip:
                    subdirs.append(entry.path)
            elif stat_mod.S_ISREG(est.st_mode):
                if est.st_nlink > 1 or entry.is_symlink():
                    key = (est.st_dev, est.st_ino)
                    if key in seen_files:
                        result.aliases += 1
                        continue
                    seen_files.add(key)
                result.files.append(FileFacts(entry.path, est.st_size, est.st_mtime_ns))
        stack.extend(reversed(subdirs))  # popped in name order: a stable walk keeps "first of two names" stable
    return result


def scan(targets: Iterable[str | Path], covered: Iterable[str] = (), exclude: Iterable[str] = (),
         include_hidden: bool = False, skip_dirs: Iterable[str] = ()) -> tuple[list[str], ScanResult]:
    """Scan folders and single files under their canonical paths; returns (the folder roots, all files found).

    `covered` are folders already indexed elsewhere in the store: links into them are aliases.
    """
    result = ScanResult()
    roots: list[str] = []
    singles: list[str] = []
    for target in targets:
        path = canonical(target)
        if os.path.isdir(path):
            roots.append(path)
        elif os.path.isfile(path):
            singles.append(path)
        else:
            raise ClipsearchError(f"no such file or folder: {target}", "check the path and try again")
    cover = [*roots, *covered]
    for root in dict.fromkeys(roots):
        walk(root, result=result, covered=cover, exclude=exclude, include_hidden=include_hidden, skip_dirs=skip_dirs)
    for path in singles:
        st = os.stat(path)
        result.files.append(FileFacts(path, st.st_size, st.st_mtime_ns))
    first: dict[str, FileFacts] = {}
    for f in result.files:  # a single file given beside its folder counts once, where it was first found
        first.setdefault(f.path, f)
    result.files = list(first.values())
    return list(dict.fromkeys(roots)), result
