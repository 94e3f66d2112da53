"""The query engine: weighted text/image terms and negatives combined into one vector, filtered top-k.

It is handed a catalog, a vector store and encoder loaders, and never imports the store. Images under a
root that no longer exists (a deleted or unmounted folder) are hidden from results.

A term may carry a weight with a `::W` suffix, e.g. ``"beach::2"`` or ``--minus "people::0.5"``.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable, Protocol, Sequence

import numpy as np

from .errors import ClipsearchError, NotFoundError
from .images import DecodeError, decode, digest_bytes, read_and_decode
from .scan import canonical

if TYPE_CHECKING:  # pragma: no cover
    from .catalog import Catalog
    from .catalog_reader import QuickCatalog
    from .indexer import ImageEncoder
    from .vector_store import VectorStore


@dataclass
class Hit:
    rank: int
    score: float
    path: str
    size: int
    width: int | None
    height: int | None
    format: str | None
    modified: str
    id: int
    timestamp: float | None = None  # seconds into the video, for a video frame

    def to_dict(self) -> dict:
        d = dict(self.__dict__)  # the fields in order; not asdict(), which deep-copies every value (~0.1 ms a hit)
        if self.timestamp is None:
            del d["timestamp"]
        return d


def parse_term(term: str) -> tuple[str, float]:
    """'beach::2' → ('beach', 2.0); a term without a valid suffix has weight 1."""
    body, sep, weight = term.rpartition("::")
    if sep and body.strip():
        try:
            return body.strip(), float(weight)
        except ValueError:
            pass
    return term.strip(), 1.0


_WEIGHTED = re.compile(r".*::[-+]?(\d+\.?\d*|\.\d+)")
_TOKEN = re.compile(r'[+-]?"[^"]*"?|\S+')


def split_terms(text: str) -> tuple[list[str], list[str]]:
    """The search-box syntax → (terms to add, terms to subtract), each term keeping its `::W` suffix.

    ``red dress -people +beach::2`` → ``(["red dress", "beach::2"], ["people"])``: a word that starts with
    ``+`` or ``-`` starts a new term that runs to the next such word; a word ending in ``::W`` and a signed
    quoted phrase (``-"blue sky"``) end their term; double quotes keep words literal (``"-20 degrees"``).
    """
    plus: list[str] = []
    minus: list[str] = []
    sign, words = "+", []

    def close() -> None:
        nonlocal words
        if words:
            (minus if sign == "-" else plus).append(" ".join(words))
        words = []

    for token in _TOKEN.findall(text or ""):
        word, signed = token, token[0] in "+-" and len(token) > 1
        if signed:
            close()
            sign, word = token[0], token[1:]
        quoted = word.startswith('"')
        if quoted:
            word = word.strip('"').strip()
        if word:
            words.append(word)
        if (signed and quoted) or (not quoted and _WEIGHTED.fullmatch(word)):
            close()  # -"a phrase" and word::W end their term; what follows is added again
            sign = "+"
    close()
    return plus, minus


def modified_iso(mtime_ns: int) -> str:
    """A file's modification time as the results show it (local time, seconds)."""
    return dt.datetime.fromtimestamp(mtime_ns / 1e9).isoformat(timespec="seconds")


_EXT_GROUPS = ({"jpg", "jpeg", "jpe", "jfif"}, {"tif", "tiff"}, {"heic", "heif"})


def _ext_aliases(ext: str) -> set[str]:
    ext = ext.lower().lstrip(".")
    return next((g for g in _EXT_GROUPS if ext in g), {ext})


def _date_ns(value: str | dt.date | None, name: str) -> int | None:
    """'2023-06-01' (local midnight) or a datetime → epoch nanoseconds, compared with file mtimes."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value)
        except ValueError as exc:
            raise ClipsearchError(f"the {name} date {value!r} is not a date", "use YYYY-MM-DD or YYYY-MM-DDTHH:MM") from exc
    if not isinstance(value, dt.datetime):
        value = dt.datetime.combine(value, dt.time())
    ns = int(value.timestamp() * 1e9)
    return max(-(2**63), min(ns, 2**63 - 1))  # mtimes are int64 ns: dates past 2262 compare as "the end of time"


class Hits(list):
    """The hits, best first, plus `notes`: things the user should know about the query (e.g. an empty filter)."""

    def __init__(self, hits: Iterable[Hit] = (), notes: Iterable[str] = ()) -> None:
        super().__init__(hits)
        self.notes = list(notes)


class TextEncoder(Protocol):
    def encode_texts(self, texts: list[str]) -> np.ndarray: ...


@dataclass
class Query:
    """A parsed query: weighted positive/negative texts and images, and the filters."""
    texts: list[tuple[str, float]]
    images: list[tuple[str, float]]
    minus: list[tuple[str, float]]
    minus_images: list[tuple[str, float]]
    k: int = 10
    under: list[str] | None = None
    exts: list[str] | None = None
    after_ns: int | None = None
    before_ns: int | None = None
    all_frames: bool = False  # every matching frame of a video, not only its best moment
    image_data: list[bytes] = field(default_factory=list)  # query images given as bytes (uploads), weight 1
    like: list[int] = field(default_factory=list)  # indexed images whose stored embeddings join the query

    @classmethod
    def parse(cls, texts: Sequence[str], images: Sequence[str], minus: Sequence[str] = (),
              minus_images: Sequence[str] = (), k: int = 10, under: Sequence[str] | None = None,
              exts: Sequence[str] | None = None, after: Any = None, before: Any = None,
              all_frames: bool = False, *, image_data: Sequence[bytes] = (), like: Sequence[int] = ()) -> "Query":
        pos_texts = [parse_term(t) for t in texts if t and t.strip()]
        pos_images = [(canonical(p), w) for p, w in (parse_term(i) for i in images if i and i.strip())]
        if not pos_texts and not pos_images and not image_data and not like:
            raise ClipsearchError("empty query", 'give some text, e.g. "a dog on grass", or a query image')
        if k < 1:
            raise ClipsearchError(f"k must be at least 1, got {k}", param="k")
        return cls(pos_texts, pos_images, [parse_term(t) for t in minus if t and t.strip()],
                   [(canonical(p), w) for p, w in (parse_term(i) for i in minus_images if i and i.strip())], k,
                   [canonical(u) for u in under] if under else None,
                   sorted({alias for e in exts for alias in _ext_aliases(e)}) if exts else None,
                   _date_ns(after, "after"), _date_ns(before, "before"), all_frames, list(image_data),
                   [int(i) for i in like])

    @property
    def filtered(self) -> bool:
        return bool(self.under or self.exts) or self.after_ns is not None or self.before_ns is not None


class QueryEngine:
    """Answers queries from a catalog and a vector store; encoders are loaded only when a query needs them."""

    def __init__(self, catalog: "Catalog | QuickCatalog", vectors: "VectorStore", text_encoder: Callable[[], TextEncoder],
                 image_encoder: Callable[[], "ImageEncoder"]) -> None:
        self.catalog = catalog
        self.vectors = vectors
        self.text_encoder = text_encoder
        self.image_encoder = image_encoder

    def _image_vectors(self, paths: list[str]) -> tuple[list[np.ndarray], list[str]]:
        vecs, digests = [], []
        for path in paths:
            if os.path.isdir(path):
                raise ClipsearchError(f"query image {path} is a folder", "pass an image file")
            if not os.path.isfile(path):
                raise ClipsearchError(f"query image not found: {path}", "check the path")
            enc = self.image_encoder()
            try:
                digest, dec = read_and_decode(path, enc.image_size, enc.resize_mode)
            except DecodeError as exc:
                raise ClipsearchError(f"cannot use query image {path}: {exc}", "pass a readable image file") from exc
            vecs.append(enc.encode_images(dec.pixels[None])[0])
            digests.append(digest)
        return vecs, digests

    def query_vector(self, q: Query) -> tuple[np.ndarray, list[str]]:
        """Σ w·e(positives) − Σ w·e(negatives), normalised; also returns the query images' digests."""
        total = np.zeros(self.vectors.dim, dtype=np.float32)
        for terms, sign in ((q.texts, 1.0), (q.minus, -1.0)):
            if terms:
                embs = self.text_encoder().encode_texts([t for t, _w in terms])
                for (_t, w), e in zip(terms, embs):
                    total += sign * w * e
        digests: list[str] = []
        if q.like:
            stored = self.catalog.embeddings_by_id(q.like, self.vectors.dim)
            for image_id in q.like:
                if image_id not in stored:
                    raise NotFoundError(f"no image with id {image_id} in the store", "search again: it may have "
                                        "been removed since", param="like")
                total += stored[image_id]
        for data in q.image_data:
            enc = self.image_encoder()
            try:
                dec = decode(data, enc.image_size, enc.resize_mode)
            except DecodeError as exc:
                raise ClipsearchError(f"cannot use the query image: {exc}", "give a JPEG, PNG, WebP, GIF, BMP or "
                                      "TIFF image", param="image") from exc
            total += enc.encode_images(dec.pixels[None])[0]
            digests.append(digest_bytes(data))
        for terms, sign in ((q.images, 1.0), (q.minus_images, -1.0)):
            if terms:
                embs, ds = self._image_vectors([p for p, _w in terms])
                digests.extend(ds if sign > 0 else [])
                for (_p, w), e in zip(terms, embs):
                    total += sign * w * e
        norm = float(np.linalg.norm(total))
        if norm < 1e-6:
            raise ClipsearchError("the query terms cancel out", "change the weights or drop a negative term")
        return total / norm, digests

    def search(self, q: Query) -> Hits:
        qvec, digests = self.query_vector(q)
        notes = [f"no indexed images under {u}" for u in q.under or () if self.catalog.count_under(u) == 0]
        hidden = [r["path"] for r in self.catalog.roots() if not os.path.isdir(r["path"])]  # vanished roots
        excluded = self.catalog.ids_of([p for p, _w in q.images], digests) | set(q.like)
        allowed = None
        if q.filtered or hidden:
            allowed = self.catalog.filter_ids(q.under, q.exts, q.after_ns, q.before_ns, hidden_under=hidden)
        if allowed is not None and excluded:
            allowed = allowed[~np.isin(allowed, list(excluded))]
            excluded = set()
        collapse = not q.all_frames and self.catalog.has_videos()
        fetch = q.k * (4 if collapse else 1)
        while True:  # with videos, fetch more until k distinct files are found (or everything was seen)
            scores, ids = self.vectors.search(qvec, fetch + len(excluded), allowed)
            pairs = [(float(sc), int(i)) for sc, i in zip(scores[0], ids[0]) if i >= 0 and int(i) not in excluded]
            rows = self.catalog.images([i for _s, i in pairs])
            hits = self._hits(pairs, rows, q.k, collapse, notes)
            if not collapse or len(hits) >= q.k:
                return hits
            if fetch >= (self.vectors.current().ntotal if allowed is None else len(allowed)):
                return hits
            fetch *= 4

    @staticmethod
    def _hits(pairs: list[tuple[float, int]], rows: dict, k: int, collapse: bool, notes: list[str]) -> Hits:
        hits = Hits(notes=notes)
        seen: set[str] = set()
        for score, image_id in pairs:
            row = rows.get(image_id)
            if row is None or (collapse and row.path in seen):  # deleted meanwhile / a weaker moment of a video
                continue
            seen.add(row.path)
            hits.append(Hit(len(hits) + 1, round(score, 6), row.path, row.size, row.width, row.height, row.format,
                            modified_iso(row.mtime_ns), image_id, None if row.frame_ms < 0 else row.frame_ms / 1000))
            if len(hits) == k:
                break
        return hits
