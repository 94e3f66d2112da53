"""Odd and broken files: good images are indexed in every mode, bad ones are reported, never fatal."""

from __future__ import annotations

import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from tests.conftest import cli, cli_json, db_args


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def bomb_png(path: Path, side: int = 40_000) -> None:
    """A few hundred bytes whose header claims side×side pixels (1.6 gigapixels)."""
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr)
                     + _png_chunk(b"IDAT", zlib.compress(b"\0" * 4096)) + _png_chunk(b"IEND", b""))


def make_odd_folder(root: Path, shapes: Path) -> dict[str, str]:
    """Writes good images in every awkward mode and the classic broken files; returns expected outcomes."""
    root.mkdir(parents=True)
    base = Image.open(shapes / "red_circle_000.png").convert("RGB")
    rgba = base.convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize(base.size))
    rgba.save(root / "alpha.png")
    base.convert("P", palette=Image.Palette.ADAPTIVE).save(root / "palette.gif")
    base.convert("CMYK").save(root / "cmyk.jpg")
    Image.fromarray(np.asarray(base.convert("L"), dtype=np.uint16) * 257).save(root / "sixteen.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° on display
    base.crop((0, 0, 96, 60)).save(root / "rotated.jpg", exif=exif)
    base.save(root / "plain.bmp")
    base.save(root / "scan.tiff")
    base.save(root / "web.webp")
    base.save(root / "no_extension", format="PNG")  # recognised by content
    base.save(root / ".hidden.png")  # skipped: hidden
    base.save(root / "skip_me.png")  # skipped: --exclude
    good_jpeg = root / "whole.jpg"
    base.save(good_jpeg, quality=90)
    (root / "truncated.jpg").write_bytes(good_jpeg.read_bytes()[: good_jpeg.stat().st_size // 2])
    (root / "empty.jpg").write_bytes(b"")
    (root / "text.png").write_text("this is not an image\n")
    bomb_png(root / "bomb.png")
    (root / "notes.txt").write_text("not an image, not an image name either")
    return {
        "ok": "alpha.png palette.gif cmyk.jpg sixteen.png rotated.jpg plain.bmp scan.tiff web.webp "
              "no_extension whole.jpg",
        "failed": "truncated.jpg empty.jpg text.png bomb.png",
    }


def test_bad_files_are_reported_and_good_ones_indexed(runner, tmp_path: Path, shapes_source: Path, trained_model: Path,
                                                      catalog_db: str | None) -> None:
    """Failures are recorded and not retried until they change, in SQLite and in PostgreSQL."""
    expected = make_odd_folder(tmp_path / "odd", shapes_source)
    idx = tmp_path / "index"
    summary = cli_json(runner, "index", tmp_path / "odd", "--index", idx, "--model", trained_model,
                       "--exclude", "skip_*", *db_args(catalog_db))
    ok_names, failed_names = expected["ok"].split(), expected["failed"].split()
    assert summary["added"] == len(ok_names)
    assert summary["not_images"] == 1  # notes.txt
    failures = {Path(f["path"]).name: f["error"] for f in summary["failures"]}
    assert sorted(failures) == sorted(failed_names)
    assert "bomb" in failures["bomb.png"]
    assert "empty" in failures["empty.jpg"]
    assert "truncated" in failures["truncated.jpg"]

    listed = cli_json(runner, "info", "--failures", "--index", idx)["failures_list"]
    assert sorted(Path(f["path"]).name for f in listed) == sorted(failed_names)
    table = cli(runner, "info", "--failures", "--index", idx).stdout
    assert "bomb.png" in table

    hits = cli_json(runner, "query", "a red circle", "-k", "50", "--index", idx)
    names = {Path(h["path"]).name: h for h in hits}
    assert set(names) == set(ok_names)
    assert (names["rotated.jpg"]["width"], names["rotated.jpg"]["height"]) == (60, 96)  # EXIF applied

    again = cli_json(runner, "index", tmp_path / "odd", "--index", idx, "--exclude", "skip_*")
    assert again["failed"] == 0 and again["encoded"] == 0  # failures are not retried until they change
    assert again["unchanged"] == len(ok_names) + len(failed_names)

    shutil.copyfile(tmp_path / "odd" / "whole.jpg", tmp_path / "odd" / "empty.jpg")  # the user fixes one
    fixed = cli_json(runner, "index", tmp_path / "odd", "--index", idx, "--exclude", "skip_*")
    assert fixed["updated"] == 1 and fixed["failed"] == 0
    assert cli_json(runner, "info", "--index", idx)["failed"] == len(failed_names) - 1


def test_hidden_files_when_asked(runner, tmp_path: Path, shapes_source: Path, trained_model: Path) -> None:
    folder = tmp_path / "p"
    (folder / ".secret").mkdir(parents=True)
    shutil.copyfile(shapes_source / "red_circle_000.png", folder / ".secret" / "a.png")
    shutil.copyfile(shapes_source / "red_circle_001.png", folder / "b.png")
    idx = tmp_path / "index"
    assert cli_json(runner, "index", folder, "--index", idx, "--model", trained_model)["added"] == 1
    assert cli_json(runner, "index", folder, "--index", idx, "--include-hidden")["added"] == 1
