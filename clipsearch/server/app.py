"""The HTTP face of one store: a JSON API over the `Store` verbs, and the static page that uses it.

URLs carry catalog ids, never file paths: an image is read only as the exact bytes that were indexed under
its id (`Store.image_bytes`), so no request can read any other file. Search results have exactly the keys
`clipsearch query --json` prints. Errors are JSON ``{"error": …, "hint": …}`` with 400 (a query the store
cannot answer, or over the query bounds of `search.py`), 404 (no such image, or its file is gone or changed),
413 (upload over 20 MB, or its images over MAX_UPLOAD_PIXELS), 401 (token), 403 (a request from another site).

Uploads cost memory by their pixels, not their bytes (a 400 KB PNG can hold 132 megapixels: 1-3 GB to decode
and resize). So a request's images are held to MAX_UPLOAD_PIXELS together, counted from their headers before
anything is decoded (a JPEG at the reduced DCT scale it is decoded at), one upload request decodes at a time,
and the C heap is trimmed afterwards so the memory goes back to the system.
"""

from __future__ import annotations

import ctypes
import json
import os
import threading
import time
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import Depends, FastAPI, File, Form, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from clipsearch.encoders.languages import LanguageNote, takes_language_code
from clipsearch.errors import ClipsearchError, NotFoundError
from clipsearch.query.engine import PixelBudgetError, check_pixel_budget, parse_term, split_terms
from clipsearch.server.guard import Guard
from clipsearch.server.ranges import ranged
from clipsearch.store.manifest import MANIFEST
from clipsearch.store.store import Store, open_store

MAX_K = 500
UPLOAD_LIMIT = 20 * 1024 * 1024
MAX_UPLOADS = 4
MAX_UPLOAD_PIXELS = 40_000_000  # decoded pixels of one request's images together (the bomb limit is 134 MP)
DECODE_LOCK = threading.Lock()  # one upload request decodes at a time, in the whole process
HTTP_PARAM = {"text": "q"}  # library parameter → the field of this API that sets it
YEAR = 365 * 24 * 3600
CONTENT_TYPES = {"JPEG": "image/jpeg", "MPO": "image/jpeg", "PNG": "image/png", "GIF": "image/gif",
                 "WEBP": "image/webp", "BMP": "image/bmp", "TIFF": "image/tiff", "HEIF": "image/heif",
                 "AVIF": "image/avif"}
VIDEO_TYPES = {".mp4": "video/mp4", ".m4v": "video/mp4", ".mov": "video/quicktime", ".webm": "video/webm",
               ".mkv": "video/x-matroska", ".avi": "video/x-msvideo"}
PAGE_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
            "media-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
JS = "text/javascript; charset=utf-8"
PAGE_MODULES = ("app.js", "api.js", "dom.js", "i18n.js", "grid.js", "layout.js", "relevance.js", "detail.js",
                "chips.js")  # the page's ES modules
STATIC = {**dict.fromkeys(PAGE_MODULES, JS), "style.css": "text/css; charset=utf-8", "icon.svg": "image/svg+xml",
          "dupes.js": JS, "dupes.css": "text/css; charset=utf-8"}  # the duplicates view (/dupes) has its own


class Json(JSONResponse):
    """JSON with non-ASCII escaped: a file name that is not UTF-8 (lone surrogates) is sent, not a 500."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=True, separators=(",", ":"), default=_jsonable).encode("ascii")


def _jsonable(value: Any) -> Any:
    """What json.dumps cannot write itself (a NumPy number, a dataclass) as FastAPI would encode it."""
    import numpy as np
    from fastapi.encoders import jsonable_encoder

    if isinstance(value, (np.generic, np.ndarray)):
        return value.tolist()
    return jsonable_encoder(value)


class StoreApp(Guard):
    """The guarded API of one store, with the holder of its open store (which `serve` warms before answering)."""

    def __init__(self, api: FastAPI, holder: StoreHolder, **guard: Any) -> None:
        super().__init__(api, **guard)
        self.holder = holder


class StoreHolder:
    """The server's open store, shared by its threads; reopened when the store appears (a first index run)
    or is replaced (a re-embed swaps the folder), so the server never needs a restart.

    A replaced store is closed `grace` seconds later (requests in flight may still be using it), so a
    long-running server holds no handles to the deleted files of the stores its re-embeds replaced."""

    def __init__(self, path: Path, device: str | None = None, grace: float = 60.0) -> None:
        self.path = Path(path)
        self.device = device
        self.grace = grace
        self._lock = threading.Lock()
        self._store: Store | None = None
        self._stamp: tuple[int, int] | None = None
        self._retired: list[tuple[float, Store]] = []
        self.encoder_lock = threading.Lock()  # one load of the image model, however many image queries wait

    def _manifest_stamp(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self.path / MANIFEST)
        except OSError:
            return None
        return st.st_ino, st.st_mtime_ns

    def get(self) -> Store | None:
        """The store, or None while it is empty (nothing indexed yet)."""
        stamp = self._manifest_stamp()
        store = self._store
        if store is not None and stamp == self._stamp and not self._retired:
            return store
        with self._lock:
            self._close_retired()
            if self._store is not None and stamp == self._stamp:
                return self._store
            if self._store is not None:
                self._retired.append((time.monotonic(), self._store))
                self._close_retired()
            self._store, self._stamp = None, None
            if stamp is not None:
                store = open_store(self.path, create=False, device=self.device)
                store.warm_text_queries()  # ONNX Runtime, one thread a request; concurrent ones share passes
                self._store, self._stamp = store, stamp
            return self._store

    def _close_retired(self) -> None:
        """Close the replaced stores whose grace is over (the holder's lock is held)."""
        now = time.monotonic()
        due = [s for at, s in self._retired if now - at >= self.grace]
        self._retired = [(at, s) for at, s in self._retired if now - at < self.grace]
        for store in due:
            store.close()

    def require(self) -> Store:
        store = self.get()
        if store is None:
            raise ClipsearchError(f"the store {self.path} is empty", "index a folder into it: clipsearch index "
                                  "FOLDER (this page picks the images up without a restart)")
        return store

    def warm(self) -> None:
        """Load what a text query needs once, before the first request: the text encoder and the vectors."""
        store = self.get()
        if store is not None and store.info(disk=False)["vectors"]:
            store.search("warm up", k=1)  # loads the text tower's weights, the vectors, the catalog's pages

    def warm_images(self) -> None:
        """Load the image model (torch) for image queries; meant for a background thread after start-up."""
        store = self.get()
        if store is not None:
            with self.encoder_lock:
                try:
                    _ = store.encoder  # loads it
                except ClipsearchError as exc:  # e.g. weights not cached offline: image queries will say so
                    import logging

                    logging.getLogger("clipsearch.server").warning("image queries unavailable: %s", exc)

    @property
    def ready(self) -> dict[str, bool]:
        store = self._store
        return store.loaded() if store is not None else {"text": True, "images": True}


def _malloc_trim() -> Callable[[], None]:
    """glibc's malloc_trim(0), where there is one: the gigabytes a big decode frees can otherwise stay mapped in
    the worker thread's malloc arena (2.5 GB still resident after one 132-megapixel PNG, as reported); elsewhere
    a no-op."""
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):  # not glibc (macOS, musl)
        return lambda: None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int

    def release() -> None:
        trim(0)

    return release


release_memory = _malloc_trim()


def _static(name: str) -> bytes:
    return resources.files(__package__).joinpath("static").joinpath(name).read_bytes()


def _parse_id(raw: str) -> int:
    if not raw.isascii() or not raw.isdigit() or len(raw) > 18:
        raise NotFoundError(f"no image with id {raw[:40]!r}", "ids are the numbers search results carry")
    return int(raw)


def _k(k: int) -> int:
    if not 1 <= k <= MAX_K:
        raise ClipsearchError(f"k must be between 1 and {MAX_K}, got {k}", param="k")
    return k


def _etag_matches(header: str | None, etag: str) -> bool:
    if not header:
        return False
    return any(tag.strip().removeprefix("W/") in (etag, "*") for tag in header.split(","))


def _cached(data: bytes, media_type: str, digest: str, request: Request, versioned: bool,
            extra: dict[str, str] | None = None) -> Response:
    """A response validated by the content digest (304 on If-None-Match); a URL that carries the content's
    digest (?v=DIGEST, as the page's do) is cached for a year, any other is revalidated each time (a version
    made of size and time, or an id alone, can name other bytes later)."""
    etag = f'"{digest}"'
    cache = f"private, max-age={YEAR}, immutable" if versioned else "private, no-cache"
    headers = {"ETag": etag, "Cache-Control": cache, **(extra or {})}
    if _etag_matches(request.headers.get("if-none-match"), etag):
        return Response(status_code=304, headers={k: v for k, v in headers.items() if k in ("ETag", "Cache-Control")})
    return Response(data, media_type=media_type, headers=headers)


def _not_modified(request: Request, digest: str, versioned: bool) -> Response | None:
    """The 304 for a client that already holds this digest, decided before any file is read or thumbnail made."""
    if _etag_matches(request.headers.get("if-none-match"), f'"{digest}"'):
        return _cached(b"", "", digest, request, versioned)
    return None


def _content_disposition(path: str, download: bool = False) -> str:
    """inline (or attachment, to save it), with the real name (RFC 5987) and a plain ASCII fallback; no quote
    or markup survives."""
    name = os.path.basename(path)
    ascii_name = "".join(c if c.isascii() and (c.isalnum() or c in "._-+()") else "_" for c in name) or "image"
    kind = "attachment" if download else "inline"
    return f"{kind}; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(os.fsencode(name), safe='')}"


def create_app(store_path: str | Path, *, token: str | None = None, allowed_hosts: list[str] | None = None,
               upload_limit: int = UPLOAD_LIMIT, device: str | None = None) -> StoreApp:
    """The ASGI app for one store: the FastAPI routes behind the `Guard` (token, Host check, body limit)."""
    holder = StoreHolder(Path(store_path), device)
    api = FastAPI(title="clipsearch", version=_version(), docs_url=None, redoc_url=None,
                  default_response_class=Json)
    api.state.holder = holder

    # --- errors: one JSON shape ---------------------------------------------------------------------
    @api.exception_handler(ClipsearchError)
    async def _library_error(_request: Request, exc: ClipsearchError) -> Response:
        status = 404 if isinstance(exc, NotFoundError) else 413 if isinstance(exc, PixelBudgetError) else 400
        return Json({"error": exc.message, "hint": exc.hint, "param": HTTP_PARAM.get(exc.param or "", exc.param)},
                    status_code=status)

    @api.exception_handler(RequestValidationError)
    async def _bad_request(_request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ())[1:]) or "request"
        return Json({"error": f"{where}: {first.get('msg', 'invalid')}", "hint": "see /docs for the parameters",
                     "param": where}, status_code=400)

    @api.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, exc: StarletteHTTPException) -> Response:
        message = "not found" if exc.status_code == 404 else str(exc.detail)
        return Json({"error": message, "hint": "see /docs for the API"}, status_code=exc.status_code)

    @api.exception_handler(Exception)
    async def _server_error(_request: Request, exc: Exception) -> Response:
        import logging

        logging.getLogger("clipsearch.server").error("unexpected error", exc_info=exc)
        return Json({"error": f"the server hit an unexpected {type(exc).__name__}",
                     "hint": "see the server's log (run it with CLIPSEARCH_DEBUG=1 for details)"}, status_code=500)

    # --- the page -------------------------------------------------------------------------------------
    @api.get("/", include_in_schema=False)
    def page() -> Response:
        return Response(_static("index.html"), media_type="text/html; charset=utf-8",
                        headers={"Content-Security-Policy": PAGE_CSP, "Cache-Control": "no-cache"})

    @api.get("/dupes", include_in_schema=False)
    def dupes_page() -> Response:
        return Response(_static("dupes.html"), media_type="text/html; charset=utf-8",
                        headers={"Content-Security-Policy": PAGE_CSP, "Cache-Control": "no-cache"})

    @api.get("/docs", include_in_schema=False)
    def docs() -> Response:
        return Response(_static("docs.html"), media_type="text/html; charset=utf-8",
                        headers={"Content-Security-Policy": PAGE_CSP, "Cache-Control": "no-cache"})

    @api.get("/static/{name}", include_in_schema=False)
    def static(name: str) -> Response:
        if name not in STATIC:  # a fixed list: nothing else under the package is reachable
            raise NotFoundError(f"no static file {name[:40]!r}")
        return Response(_static(name), media_type=STATIC[name], headers={"Cache-Control": "no-cache"})

    # --- API --------------------------------------------------------------------------------------------
    @api.get("/api/health")
    async def health() -> dict[str, Any]:  # async: no worker thread needed for this one
        """Liveness: answers as soon as the server runs; `ready` says whether text and image queries are warm."""
        return {"status": "ok", "ready": holder.ready}

    @api.get("/api/info")
    def info() -> dict[str, Any]:
        """The store: model, counts (images: photos; videos: files; moments: their sampled frames), roots (for the
        folder filter), extensions (files of each), last run; `language_code`: the model is told each query's
        language (NLLB-CLIP: the page offers the `lang` field)."""
        store = holder.get()
        if store is None:
            return {"empty": True, "store": str(holder.path), "images": 0, "videos": 0, "moments": 0, "model": None,
                    "roots": [],
                    "extensions": {}, "version": _version()}
        data = store.info(disk=False)
        model = data.get("model") or {}
        return {"empty": data["images"] + data["videos"] == 0, "store": data["store"], "images": data["images"],
                "videos": data["videos"], "moments": data["frames"],
                "failed": data["failed"], "vectors": data["vectors"], "index_type": data["index_type"],
                "model": model.get("spec"), "embed_dim": model.get("embed_dim"), "roots": data["roots"],
                "vanished_roots": data["vanished_roots"], "extensions": store.extensions(),
                "photo_metadata": data["photo_metadata"], "text": data["text"],
                "last_run": data["last_run"], "version": _version(),
                "language_code": takes_language_code(store.model_spec)}

    def run_search(**kwargs: Any) -> dict[str, Any]:
        store = holder.require()
        started = time.perf_counter()
        hits = store.search(**kwargs)
        took = (time.perf_counter() - started) * 1e3
        return {"results": [h.to_dict() for h in hits], "notes": [str(n) for n in hits.notes],
                "languages": [n.to_dict() for n in hits.notes if isinstance(n, LanguageNote)], "k": kwargs["k"],
                "query_ms": round(took, 1), "typical": hits.typical}

    def filters(under: list[str], ext: list[str], after: str | None, before: str | None,
                photo: dict[str, str | None], text_in_image: str | None = None) -> dict[str, Any]:
        return {"under": [u for u in under if u] or None, "ext": [e for e in ext if e] or None,
                "after": after or None, "before": before or None, **{k: v or None for k, v in photo.items()},
                "text_in_image": text_in_image or None}

    def photo_query(taken_after: str | None = None, taken_before: str | None = None, camera: str | None = None,
                    near: str | None = None) -> dict[str, str | None]:
        """The photo-metadata filters of a GET query string (as `clipsearch query`'s options)."""
        return {"taken_after": taken_after, "taken_before": taken_before, "camera": camera, "near": near}

    def photo_form(taken_after: str | None = Form(None), taken_before: str | None = Form(None),
                   camera: str | None = Form(None), near: str | None = Form(None)) -> dict[str, str | None]:
        """The same filters in a multipart form."""
        return {"taken_after": taken_after, "taken_before": taken_before, "camera": camera, "near": near}

    def with_terms(result: dict[str, Any], plus: list[str], subtract: list[str]) -> Json:
        """The query's parts as the search box's syntax read them (what the page shows as chips); the answer as
        JSON at once (a route returning a dict has FastAPI walk and validate all of it first: ~10x json.dumps)."""
        result["terms"] = [{"text": t, "weight": w} for t, w in map(parse_term, plus)]
        result["minus"] = [{"text": t, "weight": w} for t, w in map(parse_term, subtract)]
        return Json(result)

    @api.get("/api/search")
    def search(q: str = "", k: int = 20, minus: list[str] = Query([]), under: list[str] = Query([]),
               ext: list[str] = Query([]), after: str | None = None, before: str | None = None,
               like: list[str] = Query([]), photo: dict[str, str | None] = Depends(photo_query),
               text_in_image: str | None = None, lang: str | None = None) -> Json:
        """Text query with the CLI's syntax (`beach::2 -people`); filters as in `clipsearch query`
        (`text_in_image`: words the image's text must hold; alone, it ranks by them); `like` adds indexed images
        by id ("more like this"); `lang` the text's language code (NLLB-CLIP). The answer's `terms` and `minus`
        are the parts the syntax read; `typical` is the median and spread of the query's scores over the store. On
        a store that reads text, each result carries `text` and `text_matches`."""
        plus, subtract = split_terms(q)
        subtract += list(minus)
        return with_terms(run_search(text=plus, minus=subtract, k=_k(k), like=[_parse_id(i) for i in like],
                                     language=lang or None, **filters(under, ext, after, before, photo,
                                                                      text_in_image)), plus, subtract)

    @api.post("/api/search")
    def search_upload(image: list[UploadFile] = File([]), q: str = Form(""), k: int = Form(20),
                      minus: list[str] = Form([]), under: list[str] = Form([]), ext: list[str] = Form([]),
                      after: str | None = Form(None), before: str | None = Form(None),
                      like: list[str] = Form([]), text_in_image: str | None = Form(None),
                      photo: dict[str, str | None] = Depends(photo_form),
                      lang: str | None = Form(None)) -> Json:
        """Query by uploaded image(s) (multipart field `image`, 20 MB and MAX_UPLOAD_PIXELS decoded in all), with
        or without text terms (`lang`: their language code, NLLB-CLIP, as on GET). Uploads are decoded in memory
        with the indexer's safe decoder, at reduced size where the format allows (JPEG), one request at a time,
        and never written anywhere."""
        if len(image) > MAX_UPLOADS:
            raise ClipsearchError(f"at most {MAX_UPLOADS} query images", param="image")
        datas = [f.file.read() for f in image]
        if any(not d for d in datas):
            raise ClipsearchError("an uploaded image is empty", param="image")
        plus, subtract = split_terms(q)
        subtract += list(minus)
        kwargs: dict[str, Any] = dict(text=plus, image=datas, minus=subtract, k=_k(k),
                                      like=[_parse_id(i) for i in like], language=lang or None,
                                      **filters(under, ext, after, before, photo, text_in_image))
        if not datas:
            return with_terms(run_search(**kwargs), plus, subtract)
        with holder.encoder_lock:  # waits for a load in progress rather than starting a second one
            encoder = holder.require().encoder  # a model that cannot load is reported to this request
        check_pixel_budget(datas, encoder.image_size, MAX_UPLOAD_PIXELS)  # headers only: nothing decoded yet
        with DECODE_LOCK:
            try:
                return with_terms(run_search(**kwargs), plus, subtract)
            finally:
                release_memory()

    @api.get("/api/dupes")
    def dupes(level: str = "same", threshold: float | None = None, under: list[str] = Query([])) -> dict[str, Any]:
        """Duplicate groups, biggest first, each with its suggested keeper and why; `level` exact (identical
        bytes), same (the same picture resized, recompressed, converted or lightly cropped; the default) or
        similar (near in the embedding space, cosine >= `threshold`). Nothing is ever deleted."""
        store = holder.require()
        groups = store.duplicates(level, threshold=threshold, under=[u for u in under if u] or None)
        return {"level": level, "groups": [g.to_dict() for g in groups], "notes": groups.notes,
                "reclaimable": sum(g.reclaimable for g in groups)}

    @api.get("/api/browse")
    def browse(k: int = 20, offset: int = 0, under: list[str] = Query([]), ext: list[str] = Query([]),
               after: str | None = None, before: str | None = None,
               photo: dict[str, str | None] = Depends(photo_query)) -> dict[str, Any]:
        """The newest indexed files first (by capture time, else modification time; ties by id; a video once),
        with the usual filters: what the page shows before any query. Items have a hit's keys without rank and
        score."""
        if offset < 0:
            raise ClipsearchError(f"offset must be at least 0, got {offset}", param="offset")
        f = filters(under, ext, after, before, photo)
        results = holder.require().newest(_k(k), offset, under=f["under"], exts=f["ext"], after=f["after"],
                                          before=f["before"], taken_after=f["taken_after"],
                                          taken_before=f["taken_before"], camera=f["camera"], near=f["near"])
        return {"results": results, "k": k, "offset": offset}

    @api.get("/api/images/{image_id}")
    def image(image_id: str) -> dict[str, Any]:
        """An indexed image's facts: path, size, width, height, format, modified, id (and, on a store that reads
        text, `text` and its `text_lines` with their boxes)."""
        return holder.require().image(_parse_id(image_id))

    @api.get("/api/images/{image_id}/similar")
    def similar(image_id: str, k: int = 20, under: list[str] = Query([]), ext: list[str] = Query([]),
                after: str | None = None, before: str | None = None,
                photo: dict[str, str | None] = Depends(photo_query),
                text_in_image: str | None = None) -> dict[str, Any]:
        """More like this: the nearest images to an indexed one (itself left out), with the usual filters."""
        return run_search(like=[_parse_id(image_id)], k=_k(k),
                          **filters(under, ext, after, before, photo, text_in_image))

    @api.get("/api/images/{image_id}/thumbnail")
    def thumbnail(image_id: str, request: Request, v: str | None = None) -> Response:
        """256 px WebP of an image or of a video's moment, made on first request and cached in the store;
        ETag = the image's content digest (a moment's: the video's fingerprint and its time)."""
        store = holder.require()
        image_id_ = _parse_id(image_id)
        key = store.thumbnail_key(image_id_)
        current = v is not None and v in (key, key.rsplit("-", 1)[0])  # the content digest (of a video: + moment)
        if (unchanged := _not_modified(request, key, current)) is not None:
            return unchanged
        data, key = store.thumbnail(image_id_)
        return _cached(data, "image/webp", key, request, current)

    @api.get("/api/images/{image_id}/file")
    def file(image_id: str, request: Request, v: str | None = None, download: bool = False) -> Response:
        """The original file (a video's, for a moment), exactly as indexed: a file changed or replaced since is
        refused (index again). Answers Range requests (206), so a player can seek; `download=1` asks the
        browser to save it."""
        store = holder.require()
        rec = store.record(_parse_id(image_id))
        if rec.digest and (unchanged := _not_modified(request, rec.digest, v == rec.digest)) is not None:
            return unchanged
        original = store.original(rec.id)
        media_type = (VIDEO_TYPES.get(os.path.splitext(rec.path)[1].lower(), "application/octet-stream")
                      if original.video else CONTENT_TYPES.get(original.format or "", "application/octet-stream"))
        etag = f'"{original.digest}"'
        cache = f"private, max-age={YEAR}, immutable" if v == original.digest else "private, no-cache"
        headers = {"ETag": etag, "Cache-Control": cache, "Content-Security-Policy": "default-src 'none'; sandbox",
                   "Content-Disposition": _content_disposition(rec.path, download)}
        return ranged(original.file, original.size, request.headers.get("range"), media_type, headers)

    return StoreApp(api, holder, token=token, allowed_hosts=allowed_hosts, body_limit=upload_limit)


def _version() -> str:
    from clipsearch import __version__

    return __version__
