"""Video files as searchable moments: sample frames (PyAV), decoded small, ready for the image encoder.

Sampling: the first frame, then a frame whenever `interval` seconds have passed since the last kept one
(uniform sampling, which also covers long GOPs), and a keyframe as soon as half an interval has passed (a
keyframe often starts a new shot). At most `max_frames` are kept: past that the interval doubles and every
other kept frame is dropped, so memory stays bounded for a film of any length. A file that takes longer than
`time_limit` seconds is given up as a failure, never a hang of the whole run.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import numpy as np

from clipsearch.catalog.records import NO_META, PhotoMeta
from clipsearch.media import exif
from clipsearch.media.images import DecodeError, fit
from clipsearch.media.sniff import VIDEO_EXTENSIONS, is_video_name, sniff_video  # noqa: F401 - their old home

DEFAULT_INTERVAL = 2.0  # seconds between sampled frames
MAX_FRAMES = 1000
TIME_LIMIT = 300.0  # seconds of decoding per file


@dataclass
class VideoFrames:
    digest: str
    width: int
    height: int
    format: str
    frames: list[tuple[int, np.ndarray]] = field(default_factory=list)  # (timestamp in ms, HWC uint8)
    meta: PhotoMeta = NO_META  # creation time, camera, place from the container's tags


def fingerprint(path: str) -> str:
    """Size + first and last MiB: identifies a video without reading gigabytes."""
    with open(path, "rb") as f:
        return fingerprint_of(f, os.fstat(f.fileno()).st_size)


def fingerprint_of(f: BinaryIO, size: int) -> str:
    """The fingerprint of an open file of `size` bytes (read from its start; the position is left anywhere)."""
    h = hashlib.sha1(usedforsecurity=False)
    h.update(str(size).encode())
    f.seek(0)
    h.update(f.read(1 << 20))
    if size > 2 << 20:
        f.seek(size - (1 << 20))
        h.update(f.read(1 << 20))
    return "v" + h.hexdigest()[:31]


def open_verified(path: str, digest: str) -> BinaryIO | None:
    """The open video at `path` if it is a regular file whose fingerprint is `digest`, else None.

    What a server streams and a thumbnail is cut from: whatever now sits at the path (a symlink swapped in, a
    FIFO, another file), only the video that was indexed is read, and from the one descriptor that was checked.
    """
    import stat

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))  # a FIFO must not block us
    except OSError:
        return None
    f = os.fdopen(fd, "rb")
    try:
        st = os.fstat(fd)
        if stat.S_ISREG(st.st_mode) and st.st_size and fingerprint_of(f, st.st_size) == digest:
            f.seek(0)
            return f
    except OSError:
        pass
    f.close()
    return None


def container_format(names: str, path: str) -> str:
    """FFmpeg's demuxer names ("mov,mp4,m4a,3gp,3g2,mj2") → the one the file's extension names (MP4 for .mp4,
    not MOV), else the first; upper case, as still images' formats are."""
    options = [n for n in (names or "video").split(",") if n]
    ext = os.path.splitext(path)[1].lower().lstrip(".")
    aliases = {"m4v": "mp4", "mkv": "matroska", "webm": "webm"}
    wanted = aliases.get(ext, ext)
    chosen = next((n for n in options if n == wanted), None) or (options[0] if options else "video")
    return {"matroska": "MKV"}.get(chosen, chosen.upper())[:16]


def frame_thumbnail(f: BinaryIO, ms: int, size: int) -> bytes:
    """The frame shown at `ms` milliseconds into an open video, as WebP fitting size×size (aspect kept): the
    picture of a sampled moment. Seeks to the keyframe before it and decodes forward."""
    import io

    av = _import_av()
    target = ms / 1000
    with _video_stream(av, f) as (container, stream):
        if stream.time_base and target > 0:
            container.seek(int(target / stream.time_base), stream=stream, backward=True, any_frame=False)
        chosen = None
        for frame in container.decode(stream):
            if frame.time is None:
                continue
            chosen = frame
            if frame.time >= target - 0.0005:
                break
        if chosen is None:
            raise DecodeError("no decodable frame at that time")
        image = _image_within(chosen, size)
    buf = io.BytesIO()
    image.convert("RGB").save(buf, "WEBP", quality=80, method=4)
    return buf.getvalue()


@contextmanager
def _video_stream(av: Any, source: str | BinaryIO) -> Iterator[tuple[Any, Any]]:
    """An open container and its first video stream; whatever fails while decoding inside (FFmpeg, I/O, a bad
    stream) becomes one DecodeError line, as for still images."""
    try:
        with av.open(source, metadata_errors="ignore") as container:
            if not container.streams.video:
                raise DecodeError("no video stream")
            yield container, container.streams.video[0]
    except DecodeError:
        raise
    except (av.FFmpegError, OSError, ValueError, IndexError, MemoryError) as exc:
        raise DecodeError(f"cannot decode video: {_reason(exc)}") from exc


def _image_within(frame: Any, max_side: int) -> Any:
    """A decoded frame as a PIL image whose longer side is at most `max_side` (scaled in libswscale)."""
    scale = min(1.0, max_side / max(frame.width, frame.height))
    return frame.to_image(width=max(1, round(frame.width * scale)), height=max(1, round(frame.height * scale)))


def _import_av() -> Any:
    try:
        import av
    except ImportError as exc:
        raise DecodeError("video support is not installed (the video extra: PyAV)") from exc
    return av


def sample_frames(path: str, size: int, resize_mode: str = "shortest", interval: float = DEFAULT_INTERVAL,
                  max_frames: int = MAX_FRAMES, time_limit: float = TIME_LIMIT) -> VideoFrames:
    """Decode and sample a video; raises DecodeError with a one-line reason for anything unreadable."""
    av = _import_av()
    if interval <= 0:
        raise ValueError("interval must be positive")
    try:
        if os.path.getsize(path) == 0:
            raise DecodeError("empty file")
        digest = fingerprint(path)
    except OSError as exc:
        raise DecodeError(f"cannot read: {exc.strerror or exc}") from exc
    started = time.monotonic()
    with _video_stream(av, path) as (container, stream):
        stream.thread_type = "AUTO"
        width, height = stream.codec_context.width, stream.codec_context.height
        fmt = container_format(container.format.name, path)
        out = VideoFrames(digest, width, height, fmt, meta=exif.of_container(container))
        last = None
        for frame in container.decode(stream):
            if time.monotonic() - started > time_limit:
                raise DecodeError(f"gave up after {time_limit:.0f} s of decoding")
            if frame.time is None:
                continue
            t = float(frame.time)
            if last is not None and t - last < (interval / 2 if frame.key_frame else interval):
                continue
            out.frames.append((int(round(t * 1000)), _pixels(frame, size, resize_mode)))
            last = t
            if len(out.frames) >= max_frames:  # keep memory bounded: coarser sampling from here on
                out.frames = out.frames[::2]
                interval *= 2
    if not out.frames:
        raise DecodeError("no decodable frames")
    return out


def _reason(exc: BaseException) -> str:
    """The first line of an error, without FFmpeg's "[Errno 1094995529] " (its error code means nothing to a user)."""
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return re.sub(r"^\[Errno -?\d+\] ", "", text)


def _pixels(frame: Any, size: int, resize_mode: str) -> np.ndarray:
    """Scale in libswscale to about the model's size first (cheap), then crop like still images."""
    w, h = frame.width, frame.height
    scale = size / min(w, h) if resize_mode != "squash" else 1.0
    nw, nh = (max(size, round(w * scale)), max(size, round(h * scale))) if resize_mode != "squash" else (size, size)
    image = frame.to_image(width=nw, height=nh)
    return np.array(fit(image.convert("RGB"), size, resize_mode), dtype=np.uint8)


def frames_at(path: str, times_ms: Iterable[int], max_side: int, time_limit: float = TIME_LIMIT) -> dict[int, Any]:
    """The frames `sample_frames` kept at these timestamps (ms), as RGB PIL images with the longer side at most
    `max_side`: what the text reader reads in a video. Decodes the file once; raises DecodeError."""
    av = _import_av()
    wanted = set(times_ms)
    found: dict[int, Any] = {}
    started = time.monotonic()
    with _video_stream(av, path) as (container, stream):
        stream.thread_type = "AUTO"
        for frame in container.decode(stream):
            if time.monotonic() - started > time_limit:
                raise DecodeError(f"gave up after {time_limit:.0f} s of decoding")
            ms = None if frame.time is None else int(round(float(frame.time) * 1000))
            if ms in wanted and ms not in found:
                found[ms] = _image_within(frame, max_side).convert("RGB")
                if len(found) == len(wanted):
                    break
    return found
