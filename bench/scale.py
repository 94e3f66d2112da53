"""Vector-index scale: build time, memory per vector, recall@10 against exact search, and query latency
(p50/p99, one query at a time) for each index type the store can choose, at 100k and 1M vectors; then filtered
search (allowed ids = 0.01%, 1%, 10%, 30% of the store, random or a "folder" of neighbouring vectors far from
the queries): mean hits returned vs the min(10, allowed) expected, recall@10 against exact filtered search, p50/p99,
and filtered p50 over the unfiltered p50 of the same index.

Vectors are synthetic but clustered like CLIP embeddings (unit vectors around a few thousand centres);
uniform random vectors would be an unrealistically hard case for IVF/HNSW.

Resident memory (the "RSS/vec" rows): each index is saved as a store saves it and loaded by a fresh process
the way a query loads it (`vector_store.load_index`: streamed CRC, then FAISS maps the file); that process runs
the queries and reports its RSS growth, anonymous (owned arrays) and file-backed (mapped pages it touched: index
file, IVF-PQ's re-rank file), per vector. "must be in RAM" is the part a warm query needs resident: the whole
FAISS file (any list may be probed) plus the anonymous growth; the re-rank file needs only the rows a query
touches (50 x k). The baseline row is today's path for the same IVF-Flat file: the whole file read into memory,
checked, then deserialised (two copies while loading).

    python bench/scale.py                          # 100k and 1M, dim 512; HNSW only up to 200k
                                                   # (its build is slow on 2 cores)
    python bench/scale.py --sizes 100000 --hnsw-max 100000
    python bench/scale.py --sizes 1000000 --types ivf   # IVF alone at 1M (truth by NumPy brute force)
    python bench/scale.py --sizes 1000000 --types ivf ivfpq --no-filters   # the issue-14 rows: IVF-Flat vs IVF-PQ
    python bench/scale.py --cold-store 1000000     # a real store: 48 photos + 1M synthetic rows, cold CLI queries

--cold-store builds a real store through the library (ViT-B-32, random init: 512-d; the photos indexed by the CLI,
then N rows with clustered synthetic embeddings committed through the catalog, the vectors rebuilt as the store
chooses) and times `clipsearch query` in fresh processes (page cache warm: the files were just written) next to
the same query on the 48-photo store before it grew, measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from clipsearch.vectors.index import VectorIndex  # noqa: E402
from clipsearch.vectors.kinds import choose_type

KINDS = ("flat", "ivf", "hnsw", "ivfpq")


def clustered(n: int, dim: int, seed: int, n_centres: int = 2000) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_centres, dim)).astype(np.float32)
    out = np.empty((n, dim), np.float32)
    for start in range(0, n, 100_000):
        m = min(100_000, n - start)
        block = centres[rng.integers(0, n_centres, m)] + 0.6 * rng.normal(size=(m, dim)).astype(np.float32)
        out[start:start + m] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def exact_top10(vecs: np.ndarray, ids: np.ndarray, queries: np.ndarray, block: int = 100_000) -> np.ndarray:
    """Exact top-10 ids per query over (ids, vecs), by NumPy brute force in blocks."""
    best_s = np.full((len(queries), 0), -np.inf, np.float32)
    best_i = np.zeros((len(queries), 0), np.int64)
    for start in range(0, len(ids), block):
        s = queries @ vecs[start:start + block].T
        cand_s = np.concatenate([best_s, s], axis=1)
        cand_i = np.concatenate([best_i, np.broadcast_to(ids[start:start + block], s.shape)], axis=1)
        top = np.argpartition(-cand_s, 9, axis=1)[:, :10] if cand_s.shape[1] > 10 else np.argsort(-cand_s, axis=1)
        best_s, best_i = np.take_along_axis(cand_s, top, axis=1), np.take_along_axis(cand_i, top, axis=1)
    return best_i


def filters(vecs: np.ndarray, queries: np.ndarray, seed: int = 2):
    """(name, allowed ids) for random subsets and "folders": the vectors nearest an anchor far from every query."""
    n = len(vecs)
    rng = np.random.default_rng(seed)
    cand = rng.choice(n, size=min(n, 2000), replace=False)
    anchor = vecs[cand[np.argmin((vecs[cand] @ queries.T).max(axis=1))]]
    near_anchor = np.argsort(-(vecs @ anchor))
    for pct in (0.01, 1, 10, 30):
        m = max(1, round(n * pct / 100))
        yield f"random {pct:g}%", np.sort(rng.choice(n, size=m, replace=False)).astype(np.int64)
        yield f"folder {pct:g}%", np.sort(near_anchor[:m]).astype(np.int64)


def measure(vi: VectorIndex, queries: np.ndarray, truth: np.ndarray | None,
            allowed: np.ndarray | None = None) -> dict[str, float]:
    lat = []
    got = []
    for q in queries:
        t = time.perf_counter()
        _, ids = vi.search(q[None], 10, allowed)
        lat.append(time.perf_counter() - t)
        got.append(ids[0][ids[0] >= 0])
    lat_ms = np.array(lat) * 1e3
    recall = 1.0 if truth is None else float(np.mean(
        [len(set(t.tolist()) & set(g.tolist())) / min(10, len(t)) for t, g in zip(truth, got, strict=False)]))
    return {"p50_ms": float(np.percentile(lat_ms, 50)), "p99_ms": float(np.percentile(lat_ms, 99)), "recall@10": recall,
            "returned": float(np.mean([len(g) for g in got]))}


def index_bytes(vi: VectorIndex) -> int:
    import faiss

    return int(faiss.serialize_index(vi.index).nbytes)


def _rss() -> dict[str, int]:
    out = {}
    for line in open("/proc/self/status"):
        if line.startswith(("RssAnon", "RssFile")):
            out[line.split(":")[0]] = int(line.split()[1]) * 1024
    return out


def probe(folder: str, dim: int, queries_file: str, legacy: bool) -> None:
    """Child process: load the saved index like a cold query does, run the queries, report RSS growth (JSON)."""
    import faiss  # noqa: F401 - imported before the first reading, like numpy

    from clipsearch.vectors.store import load_index

    queries = np.load(queries_file)
    before = _rss()
    t = time.perf_counter()
    if legacy:  # the loader before IVF-PQ: whole file in memory, CRC, deserialise
        import zlib

        path = Path(folder) / "vectors.faiss"
        data = path.read_bytes()
        zlib.crc32(data)
        index = faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8))
        peak = _rss()
        del data
        meta = json.loads(path.with_suffix(".json").read_text())
        vi = VectorIndex(dim, meta["kind"], index)
    else:
        vi, _version = load_index(Path(folder) / "vectors.faiss", dim)
        peak = _rss()
    load_s = time.perf_counter() - t
    first = time.perf_counter()
    vi.search(queries[0][None], 10)
    first_s = time.perf_counter() - first
    lat = []
    for q in queries:
        t = time.perf_counter()
        vi.search(q[None], 10)
        lat.append(time.perf_counter() - t)
    after = _rss()
    print(json.dumps({"load_s": load_s, "first_query_s": first_s, "p50_ms": float(np.median(lat) * 1e3),
                      "anon": after["RssAnon"] - before["RssAnon"], "file": after["RssFile"] - before["RssFile"],
                      "load_peak": peak["RssAnon"] + peak["RssFile"] - before["RssAnon"] - before["RssFile"]}))


def resident(vi: VectorIndex, queries: np.ndarray, legacy: bool = False) -> dict[str, float]:
    """Save `vi` as a store does, then measure a fresh process that loads it and runs `queries`."""
    from clipsearch.vectors.store import EXACT_FILE, FAISS_FILE, save_index

    with tempfile.TemporaryDirectory(dir=Path(__file__).resolve().parent.parent) as tmp:
        save_index(vi, Path(tmp) / FAISS_FILE, version=1)
        np.save(Path(tmp) / "queries.npy", queries)
        out = subprocess.run([sys.executable, __file__, "--probe", tmp, str(vi.dim), str(Path(tmp) / "queries.npy"),
                              "1" if legacy else "0"], check=True, capture_output=True, text=True).stdout
        result = json.loads(out.strip().splitlines()[-1])
        result["faiss_bytes"] = (Path(tmp) / FAISS_FILE).stat().st_size
        exact = Path(tmp) / EXACT_FILE
        result["exact_bytes"] = exact.stat().st_size if exact.exists() else 0
    return result


def cold_store(n: int, dim_model: str, runs: int) -> None:
    """Build a real store of 48 photos + n synthetic rows and time cold CLI queries against the small store."""
    import shutil
    import statistics

    import clipsearch
    from clipsearch.catalog.records import Encoded
    from clipsearch.media import synthetic

    py = sys.executable

    def cold(store: Path) -> tuple[float, float]:
        import os

        times, peak = [], 0.0
        for _ in range(runs):
            t = time.perf_counter()
            proc = subprocess.Popen([py, "-m", "clipsearch", "query", "a dog on grass", "-k", "10", "--json",
                                     "--index", str(store)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            _pid, status, usage = os.wait4(proc.pid, 0)
            times.append(time.perf_counter() - t)
            if os.waitstatus_to_exitcode(status) != 0:
                raise SystemExit("cold query failed")
            peak = max(peak, usage.ru_maxrss / 1024)
        return statistics.median(times), peak

    with tempfile.TemporaryDirectory(dir=Path(__file__).resolve().parent.parent) as tmp:
        photos, store, small = Path(tmp) / "photos", Path(tmp) / "index", Path(tmp) / "small"
        synthetic.make_dataset(photos, per_class=4, seed=0, size=256, fmt="jpg")
        subprocess.run([py, "-m", "clipsearch", "index", str(photos), "--index", str(store), "--model", dim_model],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shutil.copytree(store, small)
        t = time.perf_counter()
        with clipsearch.open(store, create=False) as s:
            dim = s.dim
            for start in range(0, n, 50_000):
                vecs = clustered(min(50_000, n - start), dim, seed=start + 11)
                rows = [Encoded(str(photos / f"synthetic/{start + i:08d}.jpg"), 1000, 1, f"{start + i:032x}", 256,
                                256, "JPEG", v, None) for i, v in enumerate(vecs)]
                s.catalog.commit_chunk(rows, [], [])
            grown = time.perf_counter() - t
            t = time.perf_counter()
            vi = s.rebuild_vectors()
            kind, built = vi.kind, time.perf_counter() - t
            del vi
        size = {p.name: p.stat().st_size for p in store.iterdir() if p.is_file()}
        small_cold, small_rss = cold(small)
        big_cold, big_rss = cold(store)
    print(f"store of 48 photos + {n} synthetic rows ({dim}-d): catalog rows committed in {grown:.0f} s, "
          f"{kind} built and saved in {built:.0f} s; files: "
          + ", ".join(f"{k} {v / 2**20:.0f} MB" for k, v in sorted(size.items())))
    print(f"cold CLI query (`clipsearch query ... --json`, median of {runs}): 48-photo store {small_cold:.2f} s "
          f"(peak RSS {small_rss:.0f} MB); {n + 48} vectors {big_cold:.2f} s (peak RSS {big_rss:.0f} MB); "
          f"the vectors add {big_cold - small_cold:+.2f} s")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--probe":
        probe(sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5] == "1")
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--hnsw-max", type=int, default=200_000)
    ap.add_argument("--types", nargs="+", choices=KINDS, default=list(KINDS))
    ap.add_argument("--no-filters", action="store_true", help="skip the filtered rows")
    ap.add_argument("--no-resident", action="store_true", help="skip the saved/loaded RSS rows")
    ap.add_argument("--cold-store", type=int, metavar="N", help="only the real-store cold query rows, N synthetic rows")
    ap.add_argument("--model", default="ViT-B-32", help="--cold-store's model (random init, no download)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0,
                    help="FAISS OpenMP threads (0: its default). On a busy 2-core machine, 1 avoids ~7 ms of "
                         "thread start-up per single-query flat/HNSW search")
    args = ap.parse_args()
    if args.cold_store:
        cold_store(args.cold_store, args.model, args.runs)
        return
    if args.threads:
        import faiss

        faiss.omp_set_num_threads(args.threads)
    print(f"{'n':>9} {'type':>5} {'build s':>8} {'bytes/vec':>9} {'recall@10':>9} {'p50 ms':>7} "
          f"{'p99 ms':>7}  speed-up vs flat")
    print(f"{'':>9} {'':>5} {'filter':>14} {'allowed':>8} {'returned/expected':>17} {'recall@10':>9} {'p50 ms':>7} "
          f"{'p99 ms':>7}  p50 vs unfiltered")
    for n in args.sizes:
        vecs = clustered(n, args.dim, seed=0)
        ids = np.arange(n, dtype=np.int64)
        rng = np.random.default_rng(1)
        queries = (vecs[rng.integers(0, n, args.queries)]
                   + 0.05 * rng.normal(size=(args.queries, args.dim)).astype(np.float32))
        queries /= np.linalg.norm(queries, axis=1, keepdims=True)
        vecs = vecs.astype(np.float16).astype(np.float32)  # the catalog's precision (IVF-PQ re-ranks with float16)
        truth = exact_top10(vecs, ids, queries)
        cases = [] if args.no_filters else [
            (name, allowed, exact_top10(vecs[allowed], allowed, queries)) for name, allowed in filters(vecs, queries)]
        flat_p50 = None
        for kind in KINDS:
            if kind not in args.types or (kind == "hnsw" and n > args.hnsw_max):
                continue
            t = time.perf_counter()
            vi = VectorIndex.build(ids, vecs, args.dim, kind)
            build = time.perf_counter() - t
            m = measure(vi, queries, truth)
            if kind == "flat":
                flat_p50 = m["p50_ms"]
            speed = f"{flat_p50 / m['p50_ms']:.1f}x" if flat_p50 else "-"
            print(f"{n:>9} {kind:>5} {build:>8.1f} {index_bytes(vi) / n:>9.0f} {m['recall@10']:>9.3f} "
                  f"{m['p50_ms']:>7.2f} {m['p99_ms']:>7.2f}  {speed}", flush=True)
            if not args.no_resident and kind in ("ivf", "ivfpq"):
                rows = [("today", resident(vi, queries, legacy=True))] if kind == "ivf" else []
                rows.append(("mapped", resident(vi, queries)))
                for how, r in rows:
                    # today's loader holds the index as owned memory (anon); a mapped one needs its file resident
                    must = (max(r["anon"], 0) + (0 if how == "today" else r["faiss_bytes"])) / n
                    print(f"{'':>9} {kind:>5} {how:>6} load {r['load_s']:.2f} s (RSS +{r['load_peak'] / n:.0f} B/vec), "
                          f"first query {r['first_query_s'] * 1e3:.1f} ms, warm p50 {r['p50_ms']:.2f} ms; after "
                          f"{len(queries)} queries RSS/vec: anon {r['anon'] / n:.0f} + mapped {r['file'] / n:.0f} = "
                          f"{(r['anon'] + r['file']) / n:.0f} B; must be in RAM {must:.0f} B/vec; on disk: FAISS "
                          f"{r['faiss_bytes'] / n:.0f} + re-rank {r['exact_bytes'] / n:.0f} B/vec"
                          + (" + float16 in the catalog 1024 B/vec" if how == "today" else ""), flush=True)
            for name, allowed, ftruth in cases:
                f = measure(vi, queries, ftruth, allowed)
                expected = min(10, len(allowed))
                print(f"{'':>9} {'':>5} {name:>14} {len(allowed):>8} {f['returned']:>11.2f}/{expected:<5} "
                      f"{f['recall@10']:>9.3f} {f['p50_ms']:>7.2f} {f['p99_ms']:>7.2f}  "
                      f"{f['p50_ms'] / m['p50_ms']:.2f}x", flush=True)
            del vi
        print(f"{n:>9} the store chooses: {choose_type(n)}")
        del vecs


if __name__ == "__main__":
    main()
