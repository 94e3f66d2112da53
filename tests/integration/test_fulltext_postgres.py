"""The full-text index over the text read inside images on PostgreSQL, both ways a catalog can get it.

With pg_trgm (the system's PostgreSQL with contrib, `pg_trgm_server`) a new catalog creates the extension and a GIN
trigram index, and the planner answers the catalog's own matching SQL (`fulltext.all_words` / `any_word`) from
that index on a table big enough for it to matter, for English, for words glued together by OCR and for
Chinese. Without pg_trgm (`pg_server`) the same SQL scans with ILIKE and finds the same rows. `info` says which.
"""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, insert, text

from clipsearch.catalog import fulltext
from clipsearch.catalog.catalog import Catalog
from clipsearch.catalog.codec import STILL
from clipsearch.catalog.schema import ImageRow, ImageTextRow
from tests.conftest import new_database

ROWS = 5_000
SPECIAL = {  # row number → its text: the few rows the queries look for, among ROWS of filler
    7: "INVOICE2024 发票", 4_321: "一只在草地上的狗", 3_765: "Invoice no. 88\n收据 RECEIPT", 4_999: "草地 invoiced",
}
QUERIES = [  # (words, all of them?, the rows that match)
    (["invoice"], True, {7, 3_765, 4_999}),
    (["ice20"], True, {7}),  # inside a word glued together by OCR
    (["草地上"], True, {4_321}),
    (["发票"], True, {7}),  # two characters: no trigram of its own, still found (the index is rechecked)
    (["invoice", "收据"], True, {3_765}),
    (["发票", "草地上"], False, {7, 4_321}),
    (["nowhere"], True, set()),
]
INDEXED = [["invoice"], ["草地上"], ["invoice2024"]]  # 3+ characters: the planner uses the trigram index


def filler(i: int) -> str:
    """Varied text (so trigram statistics are realistic) that holds none of the queried words."""
    return f"page {i} total {i * 7919 % 10007} item {(i * 31) % 977} 第{i % 97}页 合计"


def catalog_with_text(url: str) -> Catalog:
    catalog = Catalog(url, owner="test-store", folder="/photos", new=True)
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(insert(ImageRow), [{"id": i + 1, "path": f"/photos/{i:05d}.png", "frame_ms": STILL, "ext": ".png",
                                         "size": 1, "mtime_ns": 1, "digest": f"{i:032d}", "ok": True}
                                        for i in range(ROWS)])
        conn.execute(insert(ImageTextRow), [{"image_id": i + 1, "digest": f"{i:032d}",
                                             "text": SPECIAL.get(i, filler(i)), "lines": "[]"} for i in range(ROWS)])
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM ANALYZE image_text")  # statistics, and the GIN index's pending list merged
    engine.dispose()
    return catalog


def matching(url: str, words: list[str], every: bool) -> tuple[set[int], str]:
    """The row numbers the catalog's matching SQL selects, and the plan PostgreSQL chose for it."""
    params: dict[str, str] = {}

    def bind(value: str) -> str:
        params[f"p{len(params)}"] = value
        return f":p{len(params) - 1}"

    sql = (fulltext.all_words if every else fulltext.any_word)("postgresql", bind, words)
    engine = create_engine(url)
    with engine.connect() as conn:
        ids = {int(r[0]) - 1 for r in conn.execute(text(sql), params)}
        plan = "\n".join(str(r[0]) for r in conn.execute(text("EXPLAIN " + sql), params))
    engine.dispose()
    return ids, plan


@pytest.mark.parametrize("server", ["pg_trgm_server", "pg_server"])
def test_text_matches_with_and_without_pg_trgm(server: str, request: pytest.FixtureRequest) -> None:
    url = new_database(request.getfixturevalue(server))
    catalog = catalog_with_text(url)
    try:
        catalog.mark_reads_text()
        info = catalog.text_info()
    finally:
        catalog.close()
    trigram = server == "pg_trgm_server"
    assert info is not None and info["read"] == ROWS
    assert info["index"] == ("pg_trgm" if trigram else "none (pg_trgm missing: ILIKE scans)")

    for words, every, rows in QUERIES:
        assert matching(url, words, every)[0] == rows, words
    for words in INDEXED:
        plan = matching(url, words, True)[1]
        if trigram:
            assert "ix_image_text_trgm" in plan and "Seq Scan" not in plan, plan
        else:
            assert "Seq Scan on image_text" in plan, plan


def test_pg_trgm_catalog_has_the_extension_and_its_index(pg_trgm_server) -> None:
    url = new_database(pg_trgm_server)
    Catalog(url, owner="test-store", folder="/photos", new=True).close()
    engine = create_engine(url)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT extversion FROM pg_extension WHERE extname = 'pg_trgm'")).scalar()
        indexdef = conn.execute(text("SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_image_text_trgm'")).scalar()
        assert indexdef is not None and "gin" in indexdef and "gin_trgm_ops" in indexdef
    engine.dispose()


def test_a_catalog_made_without_pg_trgm_gets_its_index_once_the_extension_is_there(pg_trgm_server) -> None:
    """As if made where pg_trgm was missing (no extension, no index, `meta.text_index` "scan"): the next writable
    open creates both; a read-only open changes nothing."""
    url = new_database(pg_trgm_server)
    Catalog(url, owner="test-store", folder="/photos", new=True).close()
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP EXTENSION pg_trgm CASCADE")  # drops the index with it
        conn.exec_driver_sql("UPDATE meta SET value = 'scan' WHERE key = 'text_index'")

    def state() -> tuple[str | None, bool]:
        with engine.connect() as conn:
            kind = conn.execute(text("SELECT value FROM meta WHERE key = 'text_index'")).scalar()
            indexed = conn.execute(text("SELECT 1 FROM pg_indexes WHERE indexname = 'ix_image_text_trgm'")).first()
        return kind, indexed is not None

    assert state() == ("scan", False)
    Catalog(url, owner="test-store", folder="/photos", readonly=True).close()
    assert state() == ("scan", False)
    Catalog(url, owner="test-store", folder="/photos").close()
    assert state() == ("trigram", True)
    engine.dispose()
