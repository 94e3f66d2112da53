"""What migrating an existing store to photo metadata costs: the metadata-only pass (schema 5 upgrade + reading
EXIF from each file's header, nothing decoded or encoded) against a plain unchanged re-run and the first index,
all in the same run on the same photos.

The "older store" is made the way an old release left it: the metadata columns dropped and the schema version set
back to 4, so the next `index` runs the migration step and the pass.

    python bench/metadata_pass.py                 # 200 generated 1600x1200 JPEGs with EXIF, the tiny shipped model
    python bench/metadata_pass.py --count 1000 --size 4000
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import clipsearch  # noqa: E402
from clipsearch.catalog.schema import PHOTO_META_COLUMNS  # noqa: E402
from clipsearch.media.synthetic import make_exif_photos  # noqa: E402


def make_older(store: Path) -> None:
    """Drop the photo metadata columns and set the schema back to 4 (as a store indexed before them)."""
    import sqlite3

    conn = sqlite3.connect(store / "catalog.sqlite")
    with conn:
        conn.execute("DROP INDEX ix_images_taken_local")
        conn.execute("DROP INDEX ix_images_gps_lat")
        for column in PHOTO_META_COLUMNS:
            conn.execute(f"ALTER TABLE images DROP COLUMN {column}")
        conn.execute("UPDATE meta SET value = '4' WHERE key = 'schema_version'")
    conn.close()


def timed_add(store: Path, photos: Path):
    t = time.perf_counter()
    with clipsearch.open(store) as s:
        summary = s.add([photos])
    return time.perf_counter() - t, summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", type=int, default=200)
    ap.add_argument("--size", type=int, default=1600, help="photo width in pixels (4:3)")
    ap.add_argument("--model", default="clipsearch-tiny")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        photos = Path(tmp) / "photos"
        t = time.perf_counter()
        make_exif_photos(photos, args.count, size=args.size)
        mb = sum(p.stat().st_size for p in photos.iterdir()) / 1e6
        print(f"generated {args.count} {args.size}x{args.size * 3 // 4} JPEGs with EXIF ({mb:.0f} MB) "
              f"in {time.perf_counter() - t:.1f} s")
        store = Path(tmp) / "index"
        t = time.perf_counter()
        with clipsearch.open(store, model=args.model) as s:
            first = s.add([photos])
        first_s = time.perf_counter() - t
        assert first.added == args.count
        plain, passes = [], []
        for _ in range(args.repeats):
            seconds, again = timed_add(store, photos)
            assert again.encoded == 0 and again.metadata_read == 0
            plain.append(seconds)
            make_older(store)
            seconds, migrated = timed_add(store, photos)
            assert migrated.encoded == 0 and migrated.metadata_read == args.count and migrated.unchanged == args.count
            passes.append(seconds)
        with clipsearch.open(store) as s:
            known = s.info()["photo_metadata"]
        assert known["with_capture_time"] == args.count and known["metadata_unread"] == 0
    plain_s, pass_s = statistics.median(plain), statistics.median(passes)
    print(f"first index (decode + encode):           {first_s:7.2f} s ({first.images_per_second:.1f} img/s)")
    print(f"unchanged re-run (median of {args.repeats}):         {plain_s:7.2f} s")
    print(f"upgrade + metadata-only pass (median):   {pass_s:7.2f} s (encoded 0; "
          f"{(pass_s - plain_s) / args.count * 1e3:.2f} ms a photo over the re-run)")
    print(f"RATIO pass/unchanged re-run: {pass_s / plain_s:.2f}x; pass/first index: {pass_s / first_s:.1%}")


if __name__ == "__main__":
    main()
