"""The full-text index over the text read inside images (`image_text.text`), and the SQL that matches words in it.

SQLite: an FTS5 table with the `trigram` tokenizer, kept in step with `image_text` by triggers (external
content: the text is stored once). Trigrams match any substring of three characters or more, case-insensitive,
without word segmentation: Chinese and Japanese, and words glued together by OCR ("INVOICE2024"), match by any
part. A word of one or two characters has no trigram; it is matched with LIKE over `image_text` (a scan).

PostgreSQL: `pg_trgm`'s GIN index serves `ILIKE '%word%'` (also substrings, case-insensitive). Where the
extension cannot be created (not shipped, or the user may not create it) the same ILIKE runs as a scan, and
`meta.text_index` says "scan" (`info` shows it); results are the same, only slower on large stores. Such a
catalog gets the index on a writable open once the extension can be created (`retry_trigram`).

A match is a substring match of every word (`all_words`) or of any (`any_word`); each returns the SQL of a
subquery selecting `image_id`s, with values bound through `bind`, so callers compose it with their filters.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from clipsearch.catalog.codec import TEXT_INDEX, escape_like

if TYPE_CHECKING:  # pragma: no cover -- the matching half is read by the sqlite3 reader, without SQLAlchemy
    from sqlalchemy import Connection

MIN_TRIGRAM = 3  # characters a word needs to be looked up in the trigram index (shorter: LIKE scans)

_SQLITE = (
    "CREATE VIRTUAL TABLE IF NOT EXISTS image_text_fts USING fts5(text, content='image_text', "
    "content_rowid='image_id', tokenize='trigram')",
    "CREATE TRIGGER IF NOT EXISTS image_text_ai AFTER INSERT ON image_text BEGIN "
    "INSERT INTO image_text_fts(rowid, text) VALUES (new.image_id, new.text); END",
    "CREATE TRIGGER IF NOT EXISTS image_text_ad AFTER DELETE ON image_text BEGIN "
    "INSERT INTO image_text_fts(image_text_fts, rowid, text) VALUES ('delete', old.image_id, old.text); END",
    "CREATE TRIGGER IF NOT EXISTS image_text_au AFTER UPDATE ON image_text BEGIN "
    "INSERT INTO image_text_fts(image_text_fts, rowid, text) VALUES ('delete', old.image_id, old.text); "
    "INSERT INTO image_text_fts(rowid, text) VALUES (new.image_id, new.text); END",
    # an upgrade killed between the table and the triggers may have left rows unindexed: index what is there
    "INSERT INTO image_text_fts(image_text_fts) VALUES ('rebuild')",
)


def install(conn: Connection) -> None:
    """Schema 4: the full-text index over `image_text` (the table itself is made by `create_all`). Safe to run
    again (see `schema`)."""
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError

    if conn.dialect.name == "sqlite":
        for ddl in _SQLITE:
            conn.exec_driver_sql(ddl)
        return
    kind = "trigram"
    try:
        with conn.begin_nested():  # a failed CREATE EXTENSION must not abort the upgrade's transaction
            conn.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    except DBAPIError:  # any refusal (not shipped, no right to create it) means: no trigram index
        kind = "scan"
    if kind == "trigram":
        conn.exec_driver_sql("CREATE INDEX IF NOT EXISTS ix_image_text_trgm ON image_text "
                             "USING gin (text gin_trgm_ops)")
    conn.execute(text("DELETE FROM meta WHERE key = :k"), {"k": TEXT_INDEX})
    conn.execute(text("INSERT INTO meta (key, value) VALUES (:k, :v)"), {"k": TEXT_INDEX, "v": kind})


def retry_trigram(conn: Connection) -> None:
    """A PostgreSQL catalog made where pg_trgm could not be created (`meta.text_index` "scan") gets the trigram
    index on a writable open once the extension can be created (e.g. postgresql-contrib installed since): one
    CREATE EXTENSION attempt per writable open while it cannot, and the index built once when it can."""
    from sqlalchemy import text

    if conn.dialect.name == "sqlite":
        return
    if conn.execute(text("SELECT value FROM meta WHERE key = :k"), {"k": TEXT_INDEX}).scalar() == "scan":
        install(conn)


def _phrase(word: str) -> str:
    """A word as one FTS5 string (double quotes doubled): matched as a substring by the trigram tokenizer."""
    return '"' + word.replace('"', '""') + '"'


def _like(word: str) -> str:
    return "%" + escape_like(word) + "%"


def _match(dialect: str, bind: Callable[[Any], str], words: Sequence[str], joiner: str) -> str:
    words = [w for w in dict.fromkeys(words) if w]
    if not words:
        return "SELECT image_id FROM image_text WHERE 1 = 0"
    if dialect != "sqlite":
        conds = [f"text ILIKE {bind(_like(w))} ESCAPE '\\'" for w in words]
        return f"SELECT image_id FROM image_text WHERE {f' {joiner} '.join(conds)}"
    long = [w for w in words if len(w) >= MIN_TRIGRAM]
    short = [w for w in words if len(w) < MIN_TRIGRAM]
    parts = []
    if long:
        match = f" {joiner} ".join(_phrase(w) for w in long)
        parts.append(f"SELECT rowid AS image_id FROM image_text_fts WHERE image_text_fts MATCH {bind(match)}")
    if short:
        likes = f" {joiner} ".join(f"text LIKE {bind(_like(w))} ESCAPE '\\'" for w in short)
        parts.append(f"SELECT image_id FROM image_text WHERE {likes}")
    return f" {'INTERSECT' if joiner == 'AND' else 'UNION'} ".join(parts)


def all_words(dialect: str, bind: Callable[[Any], str], words: Sequence[str]) -> str:
    """A subquery of the ids whose text holds every word (as a substring, case-insensitive)."""
    return _match(dialect, bind, words, "AND")


def any_word(dialect: str, bind: Callable[[Any], str], words: Sequence[str]) -> str:
    """A subquery of the ids whose text holds at least one of the words."""
    return _match(dialect, bind, words, "OR")
