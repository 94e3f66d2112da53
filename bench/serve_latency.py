"""Warm text-query latency over HTTP (`clipsearch serve`) against the cold CLI query, in the same run.

The store: scikit-image's sample photos indexed with a real model (offline-mini by default: its NumPy MiniLM
text tower is what a query runs), topped up to --vectors embeddings through the Catalog API. The extra
embeddings are the real photos' embeddings plus Gaussian noise, renormalised (clustered like real data, not
uniform), under paths that do not exist: a text query never opens a file, so they cost what real rows cost.

Then `clipsearch serve` runs in its own process (as a user starts it) and --clients threads, each with a
keep-alive connection, send distinct text queries (no two alike: nothing is answered from a cache) — twice:
with the text tower on NumPy (`CLIPSEARCH_TEXT_RUNTIME=numpy`, the server before ONNX Runtime: the baseline)
and on ONNX Runtime (the default). Printed: p50/p99 over HTTP, throughput and server CPU a query for each, their
ratios, and the cold CLI query (`clipsearch query ... --paths`, process start to output). Targets (ONNX Runtime):
p50 <= 40 ms, p99 <= 100 ms.

    python bench/serve_latency.py                       # 100k vectors, 4 clients, offline-mini
    python bench/serve_latency.py --vectors 20000 --queries 50
    python bench/serve_latency.py --keep /tmp/serve-bench        # keep the store; a second run reuses it
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import quote, urlparse

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import clipsearch  # noqa: E402
from clipsearch.catalog.records import Encoded  # noqa: E402

WORDS = ["red", "dress", "cat", "beach", "rocket", "coffee", "clock", "coins", "moon", "dog", "grass", "car",
         "sunset", "mountain", "city", "night", "person", "bicycle", "flower", "window", "snow", "boat", "tree"]


def build_store(folder: Path, model: str, total: int) -> Path:
    from clipsearch.store.demo import write_photos

    photos = folder / "photos"
    write_photos(photos)
    store_path = folder / "index"
    t = time.perf_counter()
    with clipsearch.open(store_path, model=model) as store:
        store.add([photos])
        n_real = store.info(disk=False)["vectors"]
        _v, _ids, real = store.catalog.all_embeddings(store.dim)
        rng = np.random.default_rng(0)
        chunk = 10_000
        for start in range(0, total - n_real, chunk):
            n = min(chunk, total - n_real - start)
            base = real[rng.integers(0, len(real), n)]
            vecs = base + rng.normal(0, 0.6 / np.sqrt(store.dim), size=base.shape).astype(np.float32)
            vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
            store.catalog.commit_chunk([Encoded(f"/synthetic/{start + i:07d}.jpg", 150_000, 1_600_000_000 * 10**9,
                                                f"{start + i:032x}", 640, 480, "JPEG", v, None)
                                        for i, v in enumerate(vecs)], [], [])
        vi = store.rebuild_vectors()  # the FAISS file for the new size (IVF above 50k), saved as `index` would
        print(f"store: {n_real} photos + {vi.ntotal - n_real} synthetic embeddings = {vi.ntotal} vectors "
              f"({vi.kind}, {store.dim}-d, model {model}) built in {time.perf_counter() - t:.0f} s")
    return store_path


def cold_cli(store: Path, runs: int) -> float:
    times = []
    for i in range(runs):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "clipsearch", "query", f"a red dress {i}", "--index", str(store),
                        "--paths"], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def start_server(store: Path, env: dict[str, str] | None = None) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "clipsearch", "serve", "--index", str(store), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None
    for line in proc.stdout:
        match = re.search(r"http://\S+", line)
        if match:
            return proc, match.group(0)
    raise SystemExit(f"the server did not start: {proc.stderr.read() if proc.stderr else ''}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def get(conn: http.client.HTTPConnection, path: str) -> dict:
    conn.request("GET", path)
    resp = conn.getresponse()
    body = resp.read()
    if resp.status != 200:
        raise SystemExit(f"{path}: HTTP {resp.status} {body[:200]!r}")
    return json.loads(body)


def measure(store: Path, runtime: str, clients: int, queries: int) -> dict[str, float]:
    """One server with the text tower on `runtime` (CLIPSEARCH_TEXT_RUNTIME), `clients` threads of distinct queries."""
    proc, url = start_server(store, {**os.environ, "CLIPSEARCH_TEXT_RUNTIME": runtime})
    try:
        host = urlparse(url)
        conn = http.client.HTTPConnection(host.hostname, host.port, timeout=60)
        while not get(conn, "/api/health")["ready"]["images"]:  # the image model loads in the background:
            time.sleep(0.5)  # measure text queries without it competing for the CPU
        for i in range(10):
            get(conn, f"/api/search?k=20&q={quote(f'warm up {i}')}")
        latencies: list[float] = []
        server_ms: list[float] = []
        lock = threading.Lock()

        def client(c: int) -> None:
            own = http.client.HTTPConnection(host.hostname, host.port, timeout=60)
            rng = np.random.default_rng(c)
            for i in range(queries):
                text = " ".join(rng.choice(WORDS, 3)) + f" {runtime} {c}-{i}"  # distinct: no cache can answer
                t = time.perf_counter()
                data = get(own, f"/api/search?k=20&q={quote(text)}")
                took = (time.perf_counter() - t) * 1e3
                with lock:
                    latencies.append(took)
                    server_ms.append(data["query_ms"])

        cpu_before, load_before = cpu_seconds(proc.pid), os.getloadavg()[0]
        started = time.perf_counter()
        threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - started
        server_cpu = cpu_seconds(proc.pid) - cpu_before
    finally:
        proc.terminate()
        proc.wait(10)
    return {"p50": float(np.percentile(latencies, 50)), "p99": float(np.percentile(latencies, 99)),
            "mean": float(np.mean(latencies)), "server_p50": float(np.percentile(server_ms, 50)),
            "qps": len(latencies) / wall, "cpu_ms": server_cpu / len(latencies) * 1e3, "n": len(latencies),
            "load": (load_before + os.getloadavg()[0]) / 2}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="offline-mini")
    ap.add_argument("--vectors", type=int, default=100_000)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--queries", type=int, default=100, help="per client")
    ap.add_argument("--cold-runs", type=int, default=3)
    ap.add_argument("--keep", type=Path, help="build the store in this folder and keep it; reuse it if it is there")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        if (folder / "index" / "manifest.json").is_file():
            store = folder / "index"
            print(f"store: reusing {store}")
        else:
            store = build_store(folder, args.model, args.vectors)
        cold = cold_cli(store, args.cold_runs)
        rows = {runtime: measure(store, runtime, args.clients, args.queries) for runtime in ("numpy", "onnx")}
    print(f"text queries over HTTP, {args.clients} concurrent clients, k=20, {os.cpu_count()} CPUs; the server's "
          "text tower on NumPy (the baseline: the path before ONNX Runtime) and on ONNX Runtime (the default)")
    for runtime, r in rows.items():
        print(f"  {runtime:5}: p50 {r['p50']:.1f} ms, p99 {r['p99']:.1f} ms, mean {r['mean']:.1f} ms over {r['n']:.0f} "
              f"(in-server p50 {r['server_p50']:.1f} ms); {r['qps']:.0f} queries/s; server CPU {r['cpu_ms']:.1f} ms "
              f"a query; load average {r['load']:.1f} (a shared machine: other jobs take CPU too)")
    base, new = rows["numpy"], rows["onnx"]
    print(f"RATIO onnx / numpy: p50 {new['p50'] / base['p50']:.2f}x, p99 {new['p99'] / base['p99']:.2f}x, "
          f"CPU a query {new['cpu_ms'] / base['cpu_ms']:.2f}x")
    print(f"cold CLI query (process start to output, median of {args.cold_runs}): {cold * 1e3:.0f} ms; "
          f"RATIO cold CLI / warm HTTP p50 (onnx): {cold * 1e3 / new['p50']:.0f}x")
    print(f"targets (onnx): p50 <= 40 ms {'met' if new['p50'] <= 40 else 'MISSED'}; "
          f"p99 <= 100 ms {'met' if new['p99'] <= 100 else 'MISSED'}")


if __name__ == "__main__":
    main()
