"""The keeper rule: most pixels, then least compressed within a format, then the original format, then the oldest;
and the reason it gives."""

from __future__ import annotations

from clipsearch.catalog.records import ImageRecord
from clipsearch.query.keeper import rank


def _r(i: int, path: str, size: int, w: int, h: int, fmt: str, mtime: int) -> ImageRecord:
    return ImageRecord(i, path, size, mtime, w, h, fmt, f"d{i}")


def test_most_pixels_first_even_when_newer_and_smaller() -> None:
    ordered, why = rank([_r(1, "/a.jpg", 900_000, 1000, 800, "JPEG", 1), _r(2, "/b.jpg", 500_000, 2000, 1600,
                                                                          "JPEG", 9)])
    assert [r.id for r in ordered] == [2, 1] and why == "most pixels (2000x1600; next 1000x800)"


def test_the_q30_resave_is_not_the_keeper() -> None:
    original = _r(1, "/photo.jpg", 2_400_000, 2000, 1500, "JPEG", 100)
    q30 = _r(2, "/copy-q30.jpg", 240_000, 2000, 1500, "JPEG", 50)  # older, same pixels: the old rule kept it
    ordered, why = rank([q30, original])
    assert ordered[0].id == 1 and why.startswith("least compressed (0.80 bytes per pixel; next 0.08)")


def test_between_formats_the_original_wins_over_a_bigger_conversion() -> None:
    original = _r(1, "/photo.jpg", 1_000_000, 2000, 1500, "JPEG", 100)
    png = _r(2, "/photo.png", 9_000_000, 2000, 1500, "PNG", 200)  # lossless copy of the JPEG: bigger, not better
    ordered, why = rank([png, original])
    assert ordered[0].id == 1 and why == "original format (JPEG; PNG is a conversion)"


def test_alike_files_keep_the_oldest_then_the_first_path() -> None:
    a, b = _r(1, "/b.png", 1000, 10, 10, "PNG", 5), _r(2, "/a.png", 1000, 10, 10, "PNG", 3)
    ordered, why = rank([a, b])
    assert ordered[0].id == 2 and why.startswith("oldest")
    c = _r(3, "/c.png", 1000, 10, 10, "PNG", 3)
    assert rank([c, b]) == ([b, c], "first by path (otherwise alike)")
