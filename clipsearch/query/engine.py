"""The query engine: weighted text/image terms and negatives combined into one vector, filtered top-k.

It is handed a catalog, a vector store and encoder loaders, and never imports the store. Images under a
root that no longer exists (a deleted or unmounted folder) are hidden from results.

A term may carry a weight with a `::W` suffix, e.g. ``"beach::2"`` or ``--minus "people::0.5"``.

A query is bounded (MAX_TERMS, MAX_TERM_CHARS, MAX_QUERY_CHARS, MAX_FILTERS), so no caller, a web page behind
the server included, can make one query cost seconds of text-encoder passes or gigabytes of activations.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, cast

import numpy as np

from clipsearch.catalog.codec import STILL
from clipsearch.catalog.photo_filter import PhotoFilter
from clipsearch.catalog.records import PhotoMeta
from clipsearch.errors import ClipsearchError, NotFoundError
from clipsearch.fsutil import canonical
from clipsearch.query.baseline import typical_scores
from clipsearch.query.photo_filters import notes as photo_notes
from clipsearch.query.text_match import filter_words
from clipsearch.query.text_side import TextSide

if TYPE_CHECKING:  # pragma: no cover
    from clipsearch.catalog.reads import CatalogReads
    from clipsearch.encoders.base import ImageEncoder
    from clipsearch.media.images import DecodeError
    from clipsearch.query.same_picture import StoredPictures
    from clipsearch.vectors.store import VectorStore


# Bounds on one query. Terms: text, minus texts, query images (paths or bytes), minus images and `like` ids
# together (each costs an encoder pass; 2000 terms took 8 s and 738 MB). Characters: the text model reads only
# its first 77 tokens (~300 characters), and tokenizing 20 MB of text took seconds.
MAX_TERMS = 32
MAX_TERM_CHARS = 1000
MAX_QUERY_CHARS = 4000  # all text terms together; also the search box's whole text (split_terms)
MAX_FILTERS = 64  # `under` folders and `ext` extensions, each
MAX_WEIGHT = 1000.0  # a term's ::W; nan, inf and 1e308 would turn the query vector into NaN


class PixelBudgetError(ClipsearchError):
    """Query images whose decoding would hold more pixels than the caller allows (see check_pixel_budget)."""


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
    digest: str  # the content digest: what a cache keys the picture by (ids and times can name other bytes)
    timestamp: float | None = None  # seconds into the video, for a video frame
    taken: str | None = None  # capture time, ISO 8601 local time with its UTC offset when known
    camera: str | None = None  # make and model
    lens: str | None = None
    gps: dict[str, float] | None = None  # {"lat": …, "lon": …} in decimal degrees
    text: str | None = None  # the text read in the image (a store that reads text: "" when it holds none)
    text_matches: list[dict] | None = None  # the lines where the query's words matched: text, box, words

    def to_dict(self) -> dict:
        d = dict(self.__dict__)  # the fields in order; not asdict(), which deep-copies every value (~0.1 ms a hit)
        for key in ("timestamp", "text", "text_matches"):
            if d[key] is None:
                del d[key]
        return d


def photo_facts(meta: PhotoMeta | None) -> dict[str, Any]:
    """A record's metadata as a hit's fields (taken, camera, lens, gps)."""
    if meta is None:
        return {"taken": None, "camera": None, "lens": None, "gps": None}
    make, model = meta.make or "", meta.model or ""
    camera = model if make and model.lower().startswith(make.lower().split()[0]) else f"{make} {model}".strip()
    gps = {"lat": meta.lat, "lon": meta.lon} if meta.lat is not None and meta.lon is not None else None
    return {"taken": meta.taken_text(), "camera": camera or None, "lens": meta.lens, "gps": gps}


def parse_term(term: str) -> tuple[str, float]:
    """'beach::2' → ('beach', 2.0); a term without a valid suffix has weight 1."""
    body, sep, weight = term.rpartition("::")
    if sep and body.strip():
        try:
            value = float(weight)
        except ValueError:
            return term.strip(), 1.0
        if not (math.isfinite(value) and abs(value) <= MAX_WEIGHT):
            raise ClipsearchError(f"the weight of {body.strip()!r} is {weight}; weights are numbers from "
                                  f"-{MAX_WEIGHT:g} to {MAX_WEIGHT:g}", "use a weight such as ::2 or ::0.5",
                                  param="text")
        return body.strip(), value
    return term.strip(), 1.0


_WEIGHTED = re.compile(r".*::[-+]?(\d+\.?\d*|\.\d+)")
_TOKEN = re.compile(r'[+-]?"[^"]*"?|\S+')


def split_terms(text: str) -> tuple[list[str], list[str]]:
    """The search-box syntax → (terms to add, terms to subtract), each term keeping its `::W` suffix.

    ``red dress -people +beach::2`` → ``(["red dress", "beach::2"], ["people"])``: a word that starts with
    ``+`` or ``-`` starts a new term that runs to the next such word; a word ending in ``::W`` and a signed
    quoted phrase (``-"blue sky"``) end their term; double quotes keep words literal (``"-20 degrees"``).
    """
    if len(text or "") > MAX_QUERY_CHARS:
        raise ClipsearchError(f"the query is {len(text)} characters long; at most {MAX_QUERY_CHARS}",
                              "shorten it: the text model reads only the first few dozen words of each term",
                              param="text")
    plus: list[str] = []
    minus: list[str] = []
    sign = "+"
    words: list[str] = []

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
            raise ClipsearchError(f"the {name} date {value!r} is not a date",
                                  "use YYYY-MM-DD or YYYY-MM-DDTHH:MM") from exc
    if not isinstance(value, dt.datetime):
        value = dt.datetime.combine(value, dt.time())
    try:
        ns = int(value.timestamp() * 1e9)
    except (OverflowError, ValueError, OSError) as exc:  # year 1 at local midnight, year 9999 + a zone, ...
        raise ClipsearchError(f"the {name} date {value.date().isoformat()} is out of range",
                              "use a date between 1900 and 9999", param=name) from exc
    return max(-(2**63), min(ns, 2**63 - 1))  # mtimes are int64 ns: dates past 2262 compare as "the end of time"


def parse_filters(under: Sequence[str] | None = None, exts: Sequence[str] | None = None, after: Any = None,
                  before: Any = None) -> dict[str, Any]:
    """A query's filters without the query (a listing, newest first), parsed and bounded as `Query.parse` does:
    the keyword arguments of `CatalogReads.newest`."""
    check_bounds([], [], (), (), under, exts, 0, 0)
    return {"under": [canonical(u) for u in under] if under else None,
            "exts": sorted({alias for e in exts for alias in _ext_aliases(e)}) if exts else None,
            "after_ns": _date_ns(after, "after"), "before_ns": _date_ns(before, "before")}


class Hits(list):
    """The hits, best first, plus `notes`: things the user should know about the query (e.g. an empty filter),
    and `typical`: the mean and spread of the query's scores over the store (query/baseline.py), to tell a hit
    that stands out from one that does not."""

    def __init__(self, hits: Iterable[Hit] = (), notes: Iterable[str] = ()) -> None:
        super().__init__(hits)
        self.notes = list(notes)
        self.typical: dict[str, float] | None = None


class TextEncoder(Protocol):
    def encode_texts(self, texts: list[str]) -> np.ndarray: ...


class LanguageTextEncoder(Protocol):
    """A text encoder told the query's language (NLLB-CLIP's torch tower); `Store.search` checks the model is one."""
    def encode_texts(self, texts: list[str], language: str | None = None) -> np.ndarray: ...


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
    language: str | None = None  # the text's language code for a model told it (NLLB-CLIP); None: detected
    photo: PhotoFilter = field(default_factory=PhotoFilter)  # capture time, camera, place
    text_in_image: list[str] | None = None  # words the image's text must hold (`text_match.filter_words`)

    @classmethod
    def parse(cls, texts: Sequence[str], images: Sequence[str], minus: Sequence[str] = (),
              minus_images: Sequence[str] = (), k: int = 10, under: Sequence[str] | None = None,
              exts: Sequence[str] | None = None, after: Any = None, before: Any = None,
              all_frames: bool = False, *, image_data: Sequence[bytes] = (), like: Sequence[int] = (),
              language: str | None = None, photo: PhotoFilter | None = None,
              text_in_image: str | None = None) -> Query:
        check_bounds(texts, images, minus, minus_images, under, exts, len(image_data), len(like))
        pos_texts = [parse_term(t) for t in texts if t and t.strip()]
        pos_images = [(canonical(p), w) for p, w in (parse_term(i) for i in images if i and i.strip())]
        words = None
        if text_in_image is not None and text_in_image.strip():
            if len(text_in_image) > MAX_TERM_CHARS:
                raise ClipsearchError(f"the text-in-image filter is {len(text_in_image)} characters long; at "
                                      f"most {MAX_TERM_CHARS}", param="text_in_image")
            words = filter_words(text_in_image)
        if not pos_texts and not pos_images and not image_data and not like and not words:
            raise ClipsearchError("empty query", 'give some text, e.g. "a dog on grass", or a query image')
        if k < 1:
            raise ClipsearchError(f"k must be at least 1, got {k}", param="k")
        return cls(pos_texts, pos_images, [parse_term(t) for t in minus if t and t.strip()],
                   [(canonical(p), w) for p, w in (parse_term(i) for i in minus_images if i and i.strip())], k,
                   [canonical(u) for u in under] if under else None,
                   sorted({alias for e in exts for alias in _ext_aliases(e)}) if exts else None,
                   _date_ns(after, "after"), _date_ns(before, "before"), all_frames, list(image_data),
                   [int(i) for i in like], language or None, photo or PhotoFilter(), words)

    @property
    def has_terms(self) -> bool:
        """Whether the query has terms for the vectors (a text-in-image filter alone ranks by text only)."""
        return bool(self.texts or self.images or self.image_data or self.like)

    @property
    def filtered(self) -> bool:
        return bool(self.under or self.exts or self.photo) or self.after_ns is not None or self.before_ns is not None


def check_bounds(texts: Sequence[str], images: Sequence[str], minus: Sequence[str] = (),
                 minus_images: Sequence[str] = (), under: Sequence[str] | None = None,
                 exts: Sequence[str] | None = None, image_data: int = 0, like: int = 0) -> None:
    """Refuse a query over MAX_TERMS terms, a text term over MAX_TERM_CHARS, texts over MAX_QUERY_CHARS in all,
    or over MAX_FILTERS folders or extensions: checked before anything is parsed or encoded."""
    def given(terms: Sequence[str]) -> int:
        return sum(1 for t in terms if t and t.strip())

    groups = {"text": given(texts), "minus": given(minus), "image": given(images) + image_data,
              "minus_image": given(minus_images), "like": like}
    if sum(groups.values()) > MAX_TERMS:
        counts = ", ".join(f"{n} {name}" for name, n in groups.items() if n)
        raise ClipsearchError(f"the query has {sum(groups.values())} terms ({counts}); at most {MAX_TERMS}",
                              "drop some terms: texts, minus terms, images and like ids count together",
                              param=max(groups, key=lambda name: groups[name]))
    for name, terms in (("text", texts), ("minus", minus)):
        longest = max((len(t) for t in terms if t), default=0)
        if longest > MAX_TERM_CHARS:
            raise ClipsearchError(f"a {name} term is {longest} characters long; at most {MAX_TERM_CHARS}",
                                  "shorten it: the text model reads only its first few dozen words", param=name)
    total = sum(len(t) for t in (*texts, *minus) if t)
    if total > MAX_QUERY_CHARS:
        raise ClipsearchError(f"the query's text terms are {total} characters long together; at most "
                              f"{MAX_QUERY_CHARS}", "drop or shorten some terms", param="text")
    check_filters("under", under)
    check_filters("ext", exts)


def check_filters(name: str, values: Sequence[str] | None) -> None:
    """At most MAX_FILTERS values (each becomes a term of the catalog's filter), none with a NUL byte (no file
    name holds one)."""
    if values is not None and len(values) > MAX_FILTERS:
        raise ClipsearchError(f"{len(values)} {name} filters; at most {MAX_FILTERS}", param=name)
    if values is not None and any("\0" in str(v) for v in values):
        raise ClipsearchError(f"an {name} filter holds a NUL byte, which no file name can", param=name)


def check_pixel_budget(image_data: Sequence[bytes], draft_to: int, max_pixels: int) -> None:
    """Refuse query images (bytes) that together would decode to more than `max_pixels`, from their headers
    alone: a JPEG counts at the reduced scale it is decoded at (so a big photo passes), anything else whole.
    Raises PixelBudgetError, or ClipsearchError for bytes that are no image."""
    from clipsearch.media.images import DecodeError, probe

    probes = []
    for data in image_data:
        try:
            probes.append(probe(data, draft_to))
        except DecodeError as exc:
            raise _unusable(exc) from exc
    total = sum(p.pixels for p in probes)
    if total <= max_pixels:
        return
    limit = f"the server decodes at most {max_pixels / 1e6:g} megapixels per request"
    if len(probes) == 1:
        p = probes[0]
        kind = " (a progressive JPEG: decoded whole)" if p.progressive else ""
        message = f"the image is {p.width}×{p.height}{kind}; {limit}"
    else:
        message = f"the {len(probes)} images decode to {total / 1e6:.1f} megapixels together; {limit}"
    raise PixelBudgetError(message, "scale the image down (the model sees only a few hundred pixels) or send a "
                           "JPEG (not progressive), which is decoded at reduced size", param="image")


def _unusable(exc: DecodeError) -> ClipsearchError:
    return ClipsearchError(f"cannot use the query image: {exc}", "give a JPEG, PNG, WebP, GIF, BMP or TIFF image",
                           param="image")


class QueryEngine:
    """Answers queries from a catalog and a vector store; encoders are loaded only when a query needs them."""

    def __init__(self, catalog: CatalogReads, vectors: VectorStore, text_encoder: Callable[[], TextEncoder],
                 image_encoder: Callable[[], ImageEncoder], pictures: StoredPictures | None = None) -> None:
        """`pictures`: the store's kept perceptual hashes, for saying a query image is in the store (without
        it, each image query reads them)."""
        self.catalog = catalog
        self.vectors = vectors
        self.text_encoder = text_encoder
        self.image_encoder = image_encoder
        self.pictures = pictures

    def _image_vectors(self, paths: list[str]) -> tuple[list[np.ndarray], list[str], list[bytes | None]]:
        from clipsearch.media.images import DecodeError, read_and_decode

        vecs, digests, hashes = [], [], []
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
            hashes.append(dec.hashes)
        return vecs, digests, hashes

    def query_vector(self, q: Query) -> tuple[np.ndarray, list[str], list[tuple[str, bytes]]]:
        """Σ w·e(positives) − Σ w·e(negatives), normalised; also returns the query images' digests, and
        (label, perceptual hashes) of the positive query images."""
        total = np.zeros(self.vectors.dim, dtype=np.float32)
        for terms, sign in ((q.texts, 1.0), (q.minus, -1.0)):
            if terms:
                texts = [t for t, _w in terms]
                encoder = self.text_encoder()
                embs = (cast("LanguageTextEncoder", encoder).encode_texts(texts, language=q.language) if q.language
                        else encoder.encode_texts(texts))
                for (_t, w), e in zip(terms, embs, strict=False):
                    total += sign * w * e
        digests: list[str] = []
        pictures: list[tuple[str, bytes]] = []
        if q.like:
            stored = self.catalog.embeddings_by_id(q.like, self.vectors.dim)
            for image_id in q.like:
                if image_id not in stored:
                    raise NotFoundError(f"no image with id {image_id} in the store", "search again: it may have "
                                        "been removed since", param="like")
                total += stored[image_id]
        for data in q.image_data:
            from clipsearch.media.images import DecodeError, decode, digest_bytes

            enc = self.image_encoder()
            try:
                dec = decode(data, enc.image_size, enc.resize_mode)
            except DecodeError as exc:
                raise _unusable(exc) from exc
            total += enc.encode_images(dec.pixels[None])[0]
            digests.append(digest_bytes(data))
            if dec.hashes:
                pictures.append(("the uploaded image" if len(q.image_data) == 1 else "an uploaded image", dec.hashes))
        for terms, sign in ((q.images, 1.0), (q.minus_images, -1.0)):
            if terms:
                image_embs, ds, hs = self._image_vectors([p for p, _w in terms])
                digests.extend(ds if sign > 0 else [])
                if sign > 0:
                    pictures.extend((p, h) for (p, _w), h in zip(terms, hs, strict=True) if h)
                for (_p, w), e in zip(terms, image_embs, strict=False):
                    total += sign * w * e
        norm = float(np.linalg.norm(total))
        if norm < 1e-6:
            raise ClipsearchError("the query terms cancel out", "change the weights or drop a negative term")
        return total / norm, digests, pictures

    def search(self, q: Query) -> Hits:
        qvec, digests, pictures = self.query_vector(q) if q.has_terms else (None, [], [])
        notes = [f"no indexed images under {u}" for u in q.under or () if self.catalog.count_under(u) == 0]
        hidden = [r["path"] for r in self.catalog.roots() if not os.path.isdir(r["path"])]  # vanished roots
        if pictures:
            from clipsearch.query.same_picture import in_store_notes

            notes += in_store_notes(self.catalog, pictures, hidden, self.pictures)
        excluded = self.catalog.ids_of([p for p, _w in q.images], digests) | self._like_files(q.like)
        allowed = None
        if q.filtered or hidden:
            allowed = self.catalog.filter_ids(q.under, q.exts, q.after_ns, q.before_ns, hidden_under=hidden,
                                              photo=q.photo or None)
        text = TextSide.of(self.catalog, q)
        if text is not None:
            allowed = text.restrict(allowed)
        if allowed is not None and excluded:
            allowed = allowed[~np.isin(allowed, list(excluded))]
            excluded = set()
        collapse = not q.all_frames and self.catalog.has_videos()
        fetch = q.k * (4 if collapse else 1)
        if text is not None and text.fused:
            fetch = max(fetch, text.clip_depth(q.k))
        while True:  # with videos, fetch more until k distinct files are found (or everything was seen)
            if qvec is None:
                assert text is not None
                pairs = text.ranked_alone(allowed, excluded)
            else:
                scores, ids = self.vectors.search(qvec, fetch + len(excluded), allowed)
                pairs = [(float(sc), int(i)) for sc, i in zip(scores[0], ids[0], strict=True)
                         if i >= 0 and int(i) not in excluded]
                if text is not None and text.fused:
                    pairs = text.fused_pairs(pairs, qvec, allowed, excluded, self.vectors.dim)
            rows = self.catalog.images([i for _s, i in pairs])
            hits = self._hits(pairs, rows, q.k, collapse, notes)
            if text is not None:
                text.annotate(hits)
            if (qvec is None or not collapse or len(hits) >= q.k
                    or fetch >= (self.vectors.current().ntotal if allowed is None else len(allowed))):
                if qvec is not None:
                    hits.typical = typical_scores(self.catalog, qvec)
                if q.photo:
                    unread = self.catalog.photo_counts()["metadata_unread"]
                    hits.notes.extend(photo_notes(q.photo, [rows[h.id] for h in hits], unread))
                return hits
            fetch *= 4

    def _like_files(self, like: Sequence[int]) -> set[int]:
        """The ids of the files a "similar to" query starts from: the images themselves, and every moment of a
        video among them (more like a video's moment lists other pictures, not the same video again)."""
        if not like:
            return set()
        paths = [rec.path for rec in self.catalog.images(like).values() if rec.frame_ms != STILL]
        return set(like) | (self.catalog.ids_of(paths, []) if paths else set())

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
                            modified_iso(row.mtime_ns), image_id, row.digest or "",
                            None if row.frame_ms < 0 else row.frame_ms / 1000, **photo_facts(row.meta)))
            if len(hits) == k:
                break
        return hits
