"""clipsearch against rclip 3.3.0, both from process start to exit, in the same run with the same seeded weights.

Rows (medians of --runs whole processes each, the two tools alternating, after one warm-up run of each so the
page cache holds both tools' files):
  * cold text query over 48 photos: `clipsearch query TEXT --index S --paths` against `rclip -n -f TEXT` run in
    the photo folder (--no-indexing: rclip's query alone, its fastest; without it rclip first re-checks the
    folder, which the re-index row measures);
  * the same over a store grown to --vectors embeddings: synthetic unit vectors added to clipsearch's catalog
    (and its FAISS index rebuilt) and to rclip's own table under the queried folder, the same random rows;
  * unchanged re-index of 192 photos: `clipsearch index PHOTOS --index S` against `rclip -f TEXT` in the folder
    (rclip has no index-only command: a run re-checks every file and then answers the query; the row also shows
    its query alone, so its check's own cost is the difference).

Both tools index the same generated photos first (not timed). rclip's model is the open_clip ViT-B-32-256 at
clipsearch's random-init seed (the `ViT-B-32-256` spec), exported in rclip's layout (bench/rclip_baseline.py;
made once with torch and cached in ~/.cache/clipsearch-bench/), so rclip answers offline; both rank the photos
identically. rclip runs from its own venv; without it this bench stops with how to make it:

    python -m venv /tmp/rclip-venv && /tmp/rclip-venv/bin/pip install rclip==3.3.0
    python bench/vs_rclip.py                       # 48 / 192 photos, 100k vectors, 5 runs a row
    python bench/vs_rclip.py --vectors 0 --runs 3  # without the big store
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import rclip_baseline  # noqa: E402

MODEL = "ViT-B-32-256"
EXPORT_CACHE = Path.home() / ".cache" / "clipsearch-bench" / f"rclip-{MODEL}-seed0"


def run(cmd: list[str], cwd: Path | None = None, env: dict[str, str] | None = None) -> tuple[float, float, bytes]:
    """(wall seconds, CPU seconds of the child, stdout) of one whole process."""
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            stdin=subprocess.DEVNULL)
    out = proc.stdout.read() if proc.stdout else b""
    _pid, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}")
    return wall, usage.ru_utime + usage.ru_stime, out


class Pair:
    """Two commands timed alternately: warm-up once each, then `runs` of each; medians of wall and CPU time."""

    def __init__(self, name: str, ours: dict, theirs: dict) -> None:
        self.name, self.ours, self.theirs = name, ours, theirs
        self.wall: dict[str, list[float]] = {"ours": [], "theirs": []}
        self.cpu: dict[str, list[float]] = {"ours": [], "theirs": []}
        self.outputs: dict[str, bytes] = {}

    def measure(self, runs: int) -> Pair:
        for side in ("ours", "theirs"):
            self.outputs[side] = run(**getattr(self, side))[2]
        for _ in range(runs):
            for side in ("ours", "theirs"):
                wall, cpu, _out = run(**getattr(self, side))
                self.wall[side].append(wall)
                self.cpu[side].append(cpu)
        return self

    def median(self, side: str, what: str = "wall") -> float:
        return statistics.median(getattr(self, what)[side])

    @property
    def ratio(self) -> float:
        return self.median("ours") / self.median("theirs")


def clipsearch(*args: str) -> list[str]:
    return [sys.executable, "-m", "clipsearch", *args]


def grow(store: Path, folder: Path, n: int) -> None:
    """(subprocess) Add `n` synthetic rows (random unit vectors, the rows rclip_baseline adds) and rebuild FAISS."""
    import numpy as np

    import clipsearch as cs
    from clipsearch.catalog.records import Encoded

    rng = np.random.default_rng(0)
    with cs.open(store, create=False) as s:
        dim = s.dim
        for start in range(0, n, 10_000):
            vecs = rng.standard_normal((min(10_000, n - start), dim)).astype(np.float32)
            vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
            rows = [Encoded(str(folder / "synthetic" / f"{start + i:07d}.jpg"), 1000, 1, f"{start + i:032x}", 256,
                            256, "JPEG", v, None) for i, v in enumerate(vecs)]
            s.catalog.commit_chunk(rows, [], [])
        s.rebuild_vectors()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--query", default="a dog on grass")
    ap.add_argument("--vectors", type=int, default=100_000, help="the big store's size (0: skip that row)")
    ap.add_argument("--photo-size", type=int, nargs=2, default=(1024, 768), metavar=("W", "H"))
    ap.add_argument("--grow", nargs=3, metavar=("STORE", "FOLDER", "N"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.grow:
        grow(Path(args.grow[0]), Path(args.grow[1]), int(args.grow[2]))
        return
    rclip = rclip_baseline.rclip_command()
    if rclip is None:
        print(f"SKIPPED: {rclip_baseline.missing_message()}")
        return
    from clipsearch.media import synthetic

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    t0 = time.perf_counter()
    # an installed package runs from bytecode (pip compiles it); this checkout may not have any yet, and a
    # PYTHONDONTWRITEBYTECODE=1 environment would recompile every module on every run
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "clipsearch")], check=True)
    models = rclip_baseline.export_models(EXPORT_CACHE)
    with tempfile.TemporaryDirectory(prefix="vs-rclip-") as tmp_name:
        tmp = Path(tmp_name)
        photos, q48 = tmp / "photos", tmp / "photos" / "q48"
        width, height = args.photo_size
        synthetic.make_photos(q48, 48, width=width, height=height, seed=0)
        synthetic.make_photos(photos / "more", 144, width=width, height=height, seed=1)
        data = tmp / "rclip-data"
        rclip_baseline.install_models(models, data)
        r_env = rclip_baseline.environment(data)
        s48, s192 = tmp / "s48", tmp / "s192"
        for folder, store in ((q48, s48), (photos, s192)):
            run(clipsearch("index", str(folder), "--index", str(store), "--model", MODEL), env=env)
        run([*rclip, "-f", args.query], cwd=photos, env=r_env)  # rclip indexes the folder it runs in (all 192)
        print(f"set-up (photos, exports, both indexes): {time.perf_counter() - t0:.0f} s", flush=True)

        cold = Pair("cold text query, 48 photos",
                    dict(cmd=clipsearch("query", args.query, "--index", str(s48), "--paths"), env=env),
                    dict(cmd=[*rclip, "-n", "-f", args.query], cwd=q48, env=r_env)).measure(args.runs)
        overlap = len(set(cold.outputs["ours"].decode().split()) & set(cold.outputs["theirs"].decode().split()))
        starts = Pair("interpreter start (python -c pass)", dict(cmd=[sys.executable, "-c", "pass"], env=env),
                      dict(cmd=[rclip[0], "-c", "pass"], env=r_env)).measure(args.runs)
        reindex = Pair("unchanged re-index, 192 photos",
                       dict(cmd=clipsearch("index", str(photos), "--index", str(s192)), env=env),
                       dict(cmd=[*rclip, "-f", args.query], cwd=photos, env=r_env)).measure(args.runs)
        only = [run([*rclip, "-n", "-f", args.query], cwd=photos, env=r_env)[0] for _ in range(args.runs)]
        big = None
        if args.vectors:
            sbig, big_data = tmp / "sbig", tmp / "rclip-big"
            shutil.copytree(s48, sbig)
            subprocess.run([sys.executable, __file__, "--grow", str(sbig), str(q48), str(args.vectors)], check=True,
                           env=env)
            big_data.mkdir()
            shutil.copy2(data / "db.sqlite3", big_data / "db.sqlite3")
            rclip_baseline.install_models(models, big_data)
            rclip_baseline.add_synthetic_rows(big_data, q48, args.vectors)
            big = Pair(f"cold text query, {args.vectors + 48} vectors",
                       dict(cmd=clipsearch("query", args.query, "--index", str(sbig), "--paths"), env=env),
                       dict(cmd=[*rclip, "-n", "-f", args.query], cwd=q48,
                            env=rclip_baseline.environment(big_data))).measure(args.runs)

    print(f"model {MODEL} (random init, seed 0) in both; medians of {args.runs} runs after a warm-up; "
          f"wall seconds (CPU seconds)")
    print(f"{'':34s} {'clipsearch':>16s} {'rclip ' + rclip_baseline.VERSION:>16s}  ratio (of CPU seconds)")
    for pair in (starts, cold, big, reindex):
        if pair is None:
            continue
        cpu_ratio = pair.median("ours", "cpu") / pair.median("theirs", "cpu")
        print(f"{pair.name:34s} {pair.median('ours'):7.2f} ({pair.median('ours', 'cpu'):5.2f})  "
              f"{pair.median('theirs'):7.2f} ({pair.median('theirs', 'cpu'):5.2f})  {pair.ratio:.2f} "
              f"(CPU {cpu_ratio:.2f})")
    print(f"  (rclip's query alone over the 192: {statistics.median(only):.2f} s, so its unchanged check costs "
          f"~{reindex.median('theirs') - statistics.median(only):.2f} s of its re-run)")
    print(f"top-10 paths both tools return on the 48 photos: {overlap} of 10 (random-init weights score every photo "
          "alike, and clipsearch's image embeddings are int8, rclip's fp32)")
    rows = [("cold query", cold)] + ([("cold query at scale", big)] if big else []) + \
           [("unchanged re-index", reindex)]
    print("RATIO clipsearch / rclip, wall (CPU): " + ", ".join(
        f"{name} {pair.ratio:.2f} ({pair.median('ours', 'cpu') / pair.median('theirs', 'cpu'):.2f})"
        for name, pair in rows) + " (target <= 0.5 each)")


if __name__ == "__main__":
    main()
