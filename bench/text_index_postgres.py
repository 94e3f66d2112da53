"""The text filter on PostgreSQL with `pg_trgm`'s GIN index against the ILIKE scan a catalog falls back to without it,
measured in the same run on the same server and table: the catalog's own matching SQL (`fulltext.all_words`), for an
English word, a glued one and Chinese of three and two characters.

A private cluster of the system's PostgreSQL with contrib (tests/pg_cluster.py; scripts/install-system-deps.sh
installs it) gets a catalog (schema, extension and index as `clipsearch index --db` makes them) whose `image_text`
holds N rows of varied text (OCR-like lines, English and Chinese), a handful of them holding the queried words.
Each query is timed (median of `--repeat` runs) with the index, then again after DROP INDEX (the fallback's plan).

    python bench/text_index_postgres.py                 # 200,000 rows
    python bench/text_index_postgres.py --rows 50000
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import create_engine, text  # noqa: E402

from clipsearch.catalog import fulltext  # noqa: E402
from clipsearch.catalog.catalog import Catalog  # noqa: E402
from tests.conftest import new_database  # noqa: E402
from tests.pg_cluster import ContribCluster  # noqa: E402

WORDS = ["invoice", "ice20", "草地上", "发票"]
SPECIAL = ["INVOICE2024 发票", "一只在草地上的狗", "Invoice no. 88 收据 RECEIPT"]
FILLER_EN = "total amount date order customer address payment balance due tax subtotal item page".split()
FILLER_ZH = ["合计", "金额", "日期", "订单", "客户", "地址", "付款", "余额", "税额", "小计", "商品", "第页"]


def fill(url: str, rows: int) -> None:
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO images (id, path, frame_ms, ext, size, mtime_ns, digest, ok, indexed_at) "
            "SELECT g, '/photos/' || g || '.jpg', -1, '.jpg', 1, 1, md5(g::text), true, now() "
            f"FROM generate_series(1, {rows}) g")
        en, zh = len(FILLER_EN), len(FILLER_ZH)
        conn.exec_driver_sql(
            "INSERT INTO image_text (image_id, digest, text, lines) SELECT g, md5(g::text), "
            f"(ARRAY{FILLER_EN!r})[1 + mod(g, {en})] || ' ' || mod(g::bigint * 7919, 100003) || ' ' || "
            f"(ARRAY{FILLER_EN!r})[1 + mod(g / 7, {en})] || E'\\n' || "
            f"(ARRAY{FILLER_ZH!r})[1 + mod(g, {zh})] || (ARRAY{FILLER_ZH!r})[1 + mod(g / 11, {zh})], "
            f"'[]' FROM generate_series(1, {rows}) g")
        for i, line in enumerate(SPECIAL):
            conn.execute(text("UPDATE image_text SET text = :t WHERE image_id = :i"), {"t": line, "i": 1 + i * 997})
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM ANALYZE image_text")
    engine.dispose()


def matching_sql(word: str) -> tuple[str, dict[str, str]]:
    """The catalog's SQL selecting the ids whose text holds `word`, and its bound values."""
    params: dict[str, str] = {}

    def bind(value: str) -> str:
        params[f"p{len(params)}"] = value
        return f":p{len(params) - 1}"

    return fulltext.all_words("postgresql", bind, [word]), params


def timed(url: str, repeat: int) -> dict[str, dict[str, float | int | bool]]:
    engine = create_engine(url)
    out: dict[str, dict[str, float | int | bool]] = {}
    with engine.connect() as conn:
        for word in WORDS:
            sql, params = matching_sql(word)
            plan = " ".join(str(r[0]) for r in conn.execute(text("EXPLAIN " + sql), params))
            conn.execute(text(sql), params).all()  # warm: the first run reads the pages into the cache
            seconds = []
            for _ in range(repeat):
                t = time.perf_counter()
                found = len(conn.execute(text(sql), params).all())
                seconds.append(time.perf_counter() - t)
            out[word] = {"ms": round(statistics.median(seconds) * 1000, 2), "found": found,
                         "index_used": "ix_image_text_trgm" in plan}
    engine.dispose()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    cluster = ContribCluster()
    try:
        url = new_database(cluster)
        Catalog(url, owner="bench", folder="/photos", new=True).close()
        t = time.perf_counter()
        fill(url, args.rows)
        filled = time.perf_counter() - t
        with_index = timed(url, args.repeat)
        engine = create_engine(url)
        with engine.begin() as conn:
            conn.exec_driver_sql("DROP INDEX ix_image_text_trgm")
        engine.dispose()
        scan = timed(url, args.repeat)
    finally:
        cluster.cleanup()
    rows = [{"word": w, "found": with_index[w]["found"], "pg_trgm_ms": with_index[w]["ms"],
             "index_used": with_index[w]["index_used"], "ilike_scan_ms": scan[w]["ms"],
             "scan_over_index": round(float(scan[w]["ms"]) / max(float(with_index[w]["ms"]), 1e-3), 1)}
            for w in WORDS]
    assert all(with_index[w]["found"] == scan[w]["found"] for w in WORDS), "the two plans disagree"
    print(json.dumps({"rows": args.rows, "fill_and_index_seconds": round(filled, 1), "queries": rows}, indent=1,
                     ensure_ascii=False))


if __name__ == "__main__":
    main()
