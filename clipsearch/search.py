"""The query engine: weighted text/image terms and negatives combined into one vector, filtered top-k.

A term may carry a weight with a `::W` suffix, e.g. ``"beach::2"`` or ``--minus "people::0.5"``.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np
from sqlalchemy import select

from .catalog import ImageRow
from .errors import ClipsearchError
from .images import DecodeError, read_and_decode

if TYPE_CHECKING:  # pragma: no cover
    from .store import Store


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

    def to_dict(self) -> dict:
        return asdict(self)


def parse_term(term: str) -> tuple[str, float]:
    """'beach::2' → ('beach', 2.0); a term without a valid suffix has weight 1."""
    body, sep, weight = term.rpartition("::")
    if sep and body.strip():
        try:
            return body.strip(), float(weight)
        except ValueError:
            pass
    return term.strip(), 1.0


_EXT_GROUPS = ({"jpg", "jpeg", "jpe", "jfif"}, {"tif", "tiff"}, {"heic", "heif"})


def _ext_aliases(ext: str) -> set[str]:
    ext = ext.lower().lstrip(".")
    return next((g for g in _EXT_GROUPS if ext in g), {ext})


def _image_vectors(store: "Store", paths: list[str]) -> tuple[list[np.ndarray], list[str]]:
    enc = store.encoder
    vecs, digests = [], []
    for path in paths:
        if not os.path.isfile(path):
            raise ClipsearchError(f"query image not found: {path}", "check the path")
        try:
            digest, dec = read_and_decode(path, enc.image_size, enc.resize_mode)
        except DecodeError as exc:
            raise ClipsearchError(f"cannot use query image {path}: {exc}", "pass a readable image file") from exc
        vecs.append(enc.encode_images(dec.pixels[None])[0])
        digests.append(digest)
    return vecs, digests


def query_vector(store: "Store", texts: list[tuple[str, float]], images: list[tuple[str, float]],
                 minus: list[tuple[str, float]], minus_images: list[tuple[str, float]]) -> tuple[np.ndarray, list[str]]:
    """Σ w·e(positives) − Σ w·e(negatives), normalised; also returns the query images' digests."""
    total = np.zeros(store.dim, dtype=np.float32)
    for terms, sign in ((texts, 1.0), (minus, -1.0)):
        if terms:
            embs = store.text_encoder().encode_texts([t for t, _w in terms])
            for (_t, w), e in zip(terms, embs):
                total += sign * w * e
    digests: list[str] = []
    for terms, sign in ((images, 1.0), (minus_images, -1.0)):
        if terms:
            embs, ds = _image_vectors(store, [p for p, _w in terms])
            digests.extend(ds if sign > 0 else [])
            for (_p, w), e in zip(terms, embs):
                total += sign * w * e
    norm = float(np.linalg.norm(total))
    if norm < 1e-6:
        raise ClipsearchError("the query terms cancel out", "change the weights or drop a --minus term")
    return total / norm, digests


def _date_ns(value: str | dt.date | None, name: str) -> int | None:
    """'2023-06-01' (local midnight) or a datetime → epoch nanoseconds, compared with file mtimes."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value)
        except ValueError as exc:
            raise ClipsearchError(f"--{name} {value!r} is not a date", "use YYYY-MM-DD or YYYY-MM-DDTHH:MM") from exc
    if not isinstance(value, dt.datetime):
        value = dt.datetime.combine(value, dt.time())
    ns = int(value.timestamp() * 1e9)
    return max(-(2**63), min(ns, 2**63 - 1))  # mtimes are int64 ns: dates past 2262 compare as "the end of time"


def search(store: "Store", *, texts: list[str], images: list[str], minus: list[str] = (), minus_images: list[str] = (),
           k: int = 10, under: list[str] | None = None, exts: list[str] | None = None,
           after: str | dt.date | None = None, before: str | dt.date | None = None) -> list[Hit]:
    from . import catalog

    if store.manifest is None:
        raise ClipsearchError(f"store {store.path} is empty", "add images first: clipsearch index FOLDER")
    pos_texts = [parse_term(t) for t in texts if t and t.strip()]
    pos_images = [parse_term(p) for p in images if p and p.strip()]
    if not pos_texts and not pos_images:
        raise ClipsearchError("empty query", 'give some text, e.g. clipsearch query "a dog on grass", or --image PATH')
    if k < 1:
        raise ClipsearchError(f"-k must be at least 1, got {k}")
    neg_texts = [parse_term(t) for t in minus if t and t.strip()]
    neg_images = [parse_term(p) for p in minus_images if p and p.strip()]
    pos_images = [(os.path.abspath(os.path.expanduser(p)), w) for p, w in pos_images]
    neg_images = [(os.path.abspath(os.path.expanduser(p)), w) for p, w in neg_images]
    qvec, digests = query_vector(store, pos_texts, pos_images, neg_texts, neg_images)

    norm_exts = sorted({alias for e in exts for alias in _ext_aliases(e)}) if exts else None
    norm_under = [os.path.abspath(os.path.expanduser(u)) for u in under] if under else None
    after_ns, before_ns = _date_ns(after, "after"), _date_ns(before, "before")
    filtered = bool(norm_under or norm_exts) or after_ns is not None or before_ns is not None

    with store.session() as s:
        excluded: set[int] = set()
        query_paths = [p for p, _w in pos_images]
        if query_paths or digests:
            stmt = select(ImageRow.id).where(ImageRow.path.in_(query_paths) | ImageRow.digest.in_(digests))
            excluded = set(s.scalars(stmt))
        allowed = catalog.image_ids_matching(s, norm_under, norm_exts, after_ns, before_ns) if filtered else None
    if allowed is not None and excluded:
        allowed = allowed[~np.isin(allowed, list(excluded))]
        excluded = set()
    vi = store.vector_index()
    scores, ids = vi.search(qvec[None], k + len(excluded), allowed)
    pairs = [(float(sc), int(i)) for sc, i in zip(scores[0], ids[0]) if i >= 0 and int(i) not in excluded][:k]
    if not pairs:
        return []
    with store.session() as s:
        rows = {r.id: r for r in s.scalars(select(ImageRow).where(ImageRow.id.in_([i for _s, i in pairs])))}
    hits = []
    for score, image_id in pairs:
        row = rows.get(image_id)
        if row is None:  # deleted between the vector search and now
            continue
        modified = dt.datetime.fromtimestamp(row.mtime_ns / 1e9).isoformat(timespec="seconds")
        hits.append(Hit(len(hits) + 1, round(score, 6), row.path, row.size, row.width, row.height, row.format,
                        modified, image_id))
    return hits
