"""The store: one folder holding the catalog, the embeddings, the derived FAISS index and a manifest.

`Store` is the library API the CLI is a thin layer over, a facade: it opens the folder, builds the collaborators
— where the catalog lives (`catalog_place`), the writer lock (`writer_lock`), the model and its encoders
(`models`), the vector store, images by id (`media`), `info` — and hands them to the indexing pipeline and the
query engine; the verbs live here. No piece knows the `Store`, and nothing of one call is kept on it::

    import clipsearch
    store = clipsearch.open("index/", model="ViT-B-32:laion2b_s34b_b79k")
    store.add(["~/photos"])
    for hit in store.search("a dog on grass", k=10):
        print(hit.score, hit.path)
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clipsearch.encoders.factory import BACKENDS, check_backend
from clipsearch.encoders.spec import ModelSpec, parse_spec
from clipsearch.errors import ClipsearchError, disk_full, is_disk_full, server_short_of
from clipsearch.store.catalog_place import CatalogPlace, resolve_db
from clipsearch.store.folder import StoreFolder, check_new_store_folder, reembed_folder, remove_store_files, swap_in
from clipsearch.store.manifest import precision as stored_precision, read_manifest
from clipsearch.store.media import Original, StoreMedia
from clipsearch.store.models import StoreModel, WriteCall
from clipsearch.store.writer_lock import WriterLock

__all__ = ["BACKENDS", "Store", "default_store_path", "open_store"]

if TYPE_CHECKING:  # pragma: no cover
    from clipsearch.catalog.catalog import Catalog
    from clipsearch.catalog.reads import CatalogReads
    from clipsearch.catalog.records import ImageRecord
    from clipsearch.encoders.factory import LoadedEncoder
    from clipsearch.indexing.writer import EncodePool, RunSummary
    from clipsearch.media.thumbnails import SheetLayout, ThumbnailCache
    from clipsearch.progress import Progress
    from clipsearch.query.dupes import Duplicates
    from clipsearch.query.engine import Hit, Hits
    from clipsearch.query.same_picture import StoredPictures
    from clipsearch.vectors.index import VectorIndex
    from clipsearch.vectors.store import VectorStore


class Store:
    """An index store. Opening is cheap; the catalog, the model and the FAISS index load on first use.

    `backend` runs the image tower in "onnx" (ONNX Runtime, from a cached export; no torch once the export
    exists) or "torch"; None (the default) means onnx where the model exports, else torch with a notice.

    `db`: a new store's catalog database URL (e.g. postgresql+psycopg://user@host/db; default CLIPSEARCH_DB,
    else SQLite in the folder). The manifest records it without password, so later opens of the folder use it.
    """

    def __init__(self, path: Path, manifest: dict[str, Any] | None, model: str | None = None,
                 device: str | None = None, readonly: bool = False, backend: str | None = None,
                 db: str | None = None) -> None:
        check_backend(backend)
        self.path = Path(path)
        self.device = device
        self.readonly = readonly
        self.backend = backend
        self.notices: list[Any] = []  # things the user should know, e.g. which model a new store defaulted to
        self._reopen(manifest, model, db)

    def _reopen(self, manifest: dict[str, Any] | None, model: str | None = None, db: str | None = None) -> None:
        """Build the collaborators afresh (each loads lazily): on open, and when a re-embedded store is swapped
        into this folder."""
        self._folder = StoreFolder(self.path, manifest, self.readonly)
        self._models = StoreModel(self._folder, parse_spec(model) if model else None, self.device, self.backend,
                                  self.notices)
        self._place = CatalogPlace(self._folder, resolve_db(self.path, manifest, db))
        self._lock = WriterLock(self._folder, self._place)
        self._media = StoreMedia(self._folder, self._place)
        self._vectors: VectorStore | None = None
        self._pictures: StoredPictures | None = None  # the perceptual hashes an image query compares with

    @contextlib.contextmanager
    def _space(self, doing: str) -> Iterator[None]:
        """A full disk (or quota) while `doing` a write becomes one line saying so and what to do; every write
        is a transaction or an atomic replace, so the store is as it was before the write that failed."""
        try:
            yield
        except ClipsearchError:
            raise
        except Exception as exc:
            short = server_short_of(exc, self._place.database, doing) if self.shared else None
            if short is not None:  # the database server's disk (or memory, connections), not the store folder's
                raise short from exc
            if is_disk_full(exc):
                raise disk_full(self.path, doing) from exc
            raise

    # --- lifecycle -----------------------------------------------------------------------------------
    def close(self) -> None:
        """Close the catalog's connections and let go of the mapped FAISS file (a long-running server closes
        each store a re-embed replaced, so no handle to a deleted file stays open)."""
        self._place.close()
        self._vectors = None
        self._folder.discard_if_unused()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def manifest(self) -> dict[str, Any] | None:
        """The store's manifest (format, model, where the catalog lives); None until the first write."""
        return self._folder.manifest

    # --- the catalog and the writer lock ---------------------------------------------------------------
    @property
    def shared(self) -> bool:
        """Whether the catalog lives in a database server (several writers, readers on other machines)."""
        return self._place.shared

    @property
    def catalog(self) -> Catalog:
        return self._place.catalog

    @property
    def reads(self) -> CatalogReads:
        """What queries read through (a cold query on SQLite: plain sqlite3, no SQLAlchemy)."""
        return self._place.reads

    @contextlib.contextmanager
    def writer_lock(self, folders: Sequence[str] | None = None) -> Iterator[None]:
        """One writer at a time per store on SQLite; on a shared catalog one per folder (`folders`; None: the
        whole store), held as database advisory locks. Readers never wait."""
        with self._lock.hold(folders):
            yield

    def writer_active(self, run_id: int | None = None) -> bool:
        """Whether another process holds the writer lock right now (a run in progress, not a killed one); on a
        shared catalog, whether run `run_id`'s writer is still at work."""
        return self._lock.active(run_id)

    # --- model ---------------------------------------------------------------------------------------
    def choose_model(self, model: str) -> None:
        """Pick the model of a store that has none yet (an existing store's model changes only by reembed)."""
        self._models.choose(model)

    @property
    def model_spec(self) -> ModelSpec:
        return self._models.spec()

    @property
    def dim(self) -> int:
        return self._models.dim()

    @property
    def encoder(self) -> LoadedEncoder:
        """The image encoder (ONNX Runtime or torch, see `backend`), at the store's precision."""
        return self._models.encoder()

    def text_encoder(self) -> Any:
        """The text tower of the store's model without torch (NumPy for a cold query, ONNX Runtime once
        `warm_text_queries` was called; the same embeddings), else the model."""
        return self._models.text_encoder()

    def warm_text_queries(self, threads: int = 1) -> None:
        """For a long-running process (a server, a notebook): from now on text queries run on ONNX Runtime with
        `threads` each, and concurrent ones (a server's request threads) share packed passes."""
        self._models.warm_text_queries(threads)

    def loaded(self) -> dict[str, bool]:
        """Which encoders this process holds now: `text` (a text tower or the model), `images` (the model)."""
        return self._models.loaded_towers()

    # --- vectors -------------------------------------------------------------------------------------
    @property
    def vectors(self) -> VectorStore:
        return self._vector_store(None)

    def _vector_store(self, call: WriteCall | None) -> VectorStore:
        if self._vectors is None:
            from clipsearch.vectors.store import VectorStore

            self._vectors = VectorStore(self.path, self.reads, self._models.dim(call), device=self.device)
        return self._vectors

    def vector_index(self) -> VectorIndex:
        """The FAISS index matching the catalog; rebuilt from stored embeddings if the file is stale or damaged."""
        return self.vectors.current()

    def rebuild_vectors(self, kind: str | None = None) -> VectorIndex:
        """Rebuild (and save) the FAISS index from stored embeddings; a given `kind` is kept from then on."""
        self._folder.require_manifest()
        with self._space("writing the vector index"), self.writer_lock():
            vi = self.vectors.build(kind, forced=kind is not None)
            self.vectors.save()
        return vi

    # --- the public verbs ----------------------------------------------------------------------------
    def add(self, paths: Iterable[str | Path], *, exclude: Iterable[str] = (), include_hidden: bool = False,
            verify: bool = False, frame_interval: float | None = None, batch_size: int | None = None,
            workers: int | None = None, progress: Progress | None = None, commit_every: int | None = None,
            int8: bool | None = None, thumbnails: bool = False, ray_address: str | None = None,
            encode_pool: EncodePool | None = None, ocr: bool = False) -> RunSummary:
        """Index (or incrementally update) folders and files; `verify` re-hashes files whose stat is unchanged;
        `thumbnails` also makes the thumbnails the store lacks (what `serve` and contact sheets show), once per
        content.

        `int8` (onnx backend): True encodes with the dynamically quantised image tower, False in fp32; None
        keeps the store's precision (a new store: the CPU default, `onnx_encoder.default_precision`). A store
        holds one precision: asking for the other is a ModelMismatchError.

        `ray_address` encodes the still images on Ray actors (`ray_pool.RayPool`): "local" starts Ray on this
        machine (or joins the cluster RAY_ADDRESS names), "auto" joins the cluster running here, "HOST:PORT" /
        "ray://HOST:PORT" that cluster; every worker must see the files at the same paths. Results are committed
        here, in chunks, exactly as in a local run. `encode_pool` takes any `EncodePool` instead (e.g. a
        `RayPool` with a set number of actors).

        `ocr` reads the text inside every image and sampled video frame (the `ocr` extra), searchable with
        `search(text_in_image=...)` and fused into text queries; the store remembers it, so later runs read the
        text of what they add (and what is still unread) without being asked. On Ray the text is read here,
        beside the actors, from the rows they commit.
        """
        from clipsearch.config import settings
        from clipsearch.indexing.scan import canonical, scan
        from clipsearch.store.run_inputs import check_target, encode_pool_for, text_reader_for

        targets = list(paths)
        with self._space("creating the store" if self.manifest is None else "indexing"):
            self._folder.ensure_writable()
            call = WriteCall(int8=int8, progress=progress)
            self._models.precision(call)  # a mismatch fails before anything is scanned
            with self.writer_lock([canonical(t) for t in targets]):
                plain_run = not (verify or ocr or thumbnails or frame_interval is not None or ray_address
                                 or encode_pool is not None)
                quick = self._place.quick_reads() if plain_run and self.manifest is not None else None
                store_roots = [r["path"] for r in (quick or self.catalog).roots()]
                for target in targets:
                    check_target(quick or self.catalog, target, store_roots)
                existing = [r for r in store_roots if os.path.isdir(r)]
                roots, scanned = scan(targets, covered=existing, exclude=tuple(exclude),
                                      include_hidden=include_hidden, skip_dirs=[canonical(self.path)])
                if quick is not None:  # nothing changed: a stat per file and the run's record, no pipeline
                    from clipsearch.indexing.unchanged import run_if_unchanged

                    unchanged = run_if_unchanged(quick, self._place.sqlite_path, roots, scanned, store_roots,
                                                 lambda: self._vectors_in_step(quick))
                    if unchanged is not None:
                        return unchanged
                from clipsearch.indexing.pipeline import Workbench, run_index
                from clipsearch.indexing.writer import IndexOptions

                options = IndexOptions(verify=verify, batch_size=batch_size, workers=workers,
                                       commit_every=commit_every or settings().commit_every, ocr=ocr)
                if frame_interval is not None:
                    if frame_interval <= 0:
                        raise ClipsearchError(f"frame_interval must be positive, got {frame_interval}",
                                              param="frame_interval")
                    options.frame_interval = frame_interval
                bench = Workbench(encoder=lambda: self._models.for_run(call, self._place.manifest_record()),
                                  vectors=lambda: self._vector_store(call),
                                  pool=encode_pool_for(ray_address, encode_pool, self.device),
                                  text_reader=text_reader_for(ocr, self.catalog))
                summary = run_index(self.catalog, bench, roots, scanned, options, progress, other_roots=store_roots)
            if thumbnails and self.manifest is not None:
                summary.thumbnails, failed = self.make_thumbnails(workers=workers, progress=progress)
                summary.problems.extend(failed)
            return summary

    def _vectors_in_step(self, reads: CatalogReads) -> bool:
        """Whether the saved vector index reflects the catalog now (what `VectorStore.sync_file` would keep as
        it is); IVF-PQ's re-rank file is left to that check, which verifies every block."""
        from clipsearch.vectors.store import FAISS_FILE, load_index, saved_meta

        path = self.path / FAISS_FILE
        if (saved_meta(path) or {}).get("kind") == "ivfpq":
            return False
        loaded = load_index(path, self._models.dim(), device=self.device)
        return loaded is not None and loaded[1] == reads.version()

    def forget(self, path: str | Path) -> dict[str, int]:
        """Drop a folder (e.g. a vanished root) or file from the store: its rows, embeddings and vectors."""
        from clipsearch.indexing.scan import canonical

        self._folder.require_manifest()
        raw = os.path.abspath(os.path.expanduser(str(path)))
        with self._space("forgetting"), self.writer_lock():
            for candidate in dict.fromkeys([raw, canonical(raw)]):
                ids, roots, version = self.catalog.forget(candidate)
                if ids or roots:
                    self.vectors.apply(ids, [], [], version)
                    self.vectors.save()
                    return {"images": len(ids), "roots": roots}
        raise ClipsearchError(f"nothing in the store is under {path}", "see the indexed folders with info")

    def search(self, text: str | list[str] | None = None, *, image: Any = None,
               minus: Iterable[str] = (), minus_image: Iterable[str] = (), k: int = 10,
               under: Iterable[str] | None = None, ext: Iterable[str] | None = None,
               after: Any = None, before: Any = None, all_frames: bool = False,
               like: int | Iterable[int] = (), taken_after: Any = None, taken_before: Any = None,
               camera: str | None = None, near: Any = None, text_in_image: str | None = None,
               language: str | None = None) -> Hits:
        """Text terms and query images (paths, or bytes such as an upload: decoded in memory, never written),
        minus either; `like` adds the stored embeddings of indexed images by id, one or several ("more like
        this", "similar to #3 and #7": each counts as one term; those images, and the other moments of a video
        among them, are left out of the results). Filters: `under` folders, `ext` extensions, file modified in
        [after, before) (dates or ISO strings). A video is one hit at its best moment (`timestamp`), unless
        `all_frames`.

        Photo metadata: captured in [`taken_after`, `taken_before`) (a date, a datetime, or ISO text; with an
        offset it is an instant, without one the camera's wall clock; a file without a capture time is compared
        by its modification time, and the hits' notes say so), `camera` (part of the make or model, any case),
        `near` ("LAT,LON[,KM]" or (lat, lon[, km]); default 10 km). Every filter keeps min(k, matching) hits.

        Text inside images: `text_in_image` keeps only images whose text (read with `add(..., ocr=True)`) holds
        every word of it, as a substring (alone, it ranks by that text). On a store that reads text, text terms
        are also matched against it and fused with the CLIP ranking, and each hit carries `text` and
        `text_matches` (the lines where the words matched, with their boxes).

        `language`: the text's FLORES-200 code (e.g. fra_Latn) for a model told each query's language
        (NLLB-CLIP); by default it is detected from the text's script."""
        from clipsearch.encoders.languages import check_language_code, language_notes, takes_language_code
        from clipsearch.query.engine import Query, QueryEngine
        from clipsearch.query.photo_filters import photo_filter

        self._folder.require_manifest()
        if language:
            check_language_code(language)
        if language and not takes_language_code(self.model_spec):
            raise ClipsearchError(f"model {self.model_spec.text} is not told the query's language",
                                  "a language code is for NLLB-CLIP models; leave it out", param="language")
        texts = [text] if isinstance(text, str) else list(text or [])
        images = [image] if isinstance(image, (str, Path, bytes)) else list(image or [])
        query = Query.parse(texts=texts, images=[str(i) for i in images if not isinstance(i, bytes)],
                            minus=list(minus), minus_images=[str(i) for i in minus_image], k=k,
                            under=list(under) if under else None, exts=list(ext) if ext else None,
                            after=after, before=before, all_frames=all_frames,
                            image_data=[i for i in images if isinstance(i, bytes)],
                            like=[like] if isinstance(like, int) else list(like),
                            photo=photo_filter(taken_after, taken_before, camera, near),
                            text_in_image=text_in_image, language=language)
        if self._pictures is None:
            from clipsearch.query.same_picture import StoredPictures

            self._pictures = StoredPictures()
        engine = QueryEngine(self.reads, self.vectors, self.text_encoder, lambda: self.encoder, self._pictures)
        hits = engine.search(query)
        hits.notes.extend(language_notes([t for t, _w in query.texts + query.minus], self.model_spec))
        return hits

    def duplicates(self, level: str = "same", *, threshold: float | None = None,
                   under: Iterable[str] | None = None, taken_after: Any = None, taken_before: Any = None,
                   camera: str | None = None, near: Any = None) -> Duplicates:
        """Groups of duplicate images, biggest first, each with a suggested keeper and why (nothing is deleted).

        `level`: "exact" (byte-identical files, by content digest), "same" (the default: the same picture
        resized, recompressed, converted or lightly cropped, by perceptual hash, confirmed by the embedding;
        works with any model) or "similar" (embeddings with cosine >= `threshold`, default 0.99; lower values
        also find edits, crops, then other shots of one scene). `under`: only images inside these folders;
        `taken_after`, `taken_before`, `camera`, `near`: only photos those metadata filters allow (as `search`).
        """
        from clipsearch.query.dupes import check_level, check_threshold, find_duplicates
        from clipsearch.query.photo_filters import photo_filter

        check_level(level)
        if threshold is not None:
            check_threshold(threshold)
        photo = photo_filter(taken_after, taken_before, camera, near)
        self._folder.require_manifest()
        if self.catalog.counts()["images"] == 0:
            raise ClipsearchError(f"store {self.path} holds no images", "index a folder into it first")
        return find_duplicates(self.catalog, None if level == "exact" else self.vectors, level, threshold,
                               [str(u) for u in under] if under else None, photo)

    def extensions(self) -> dict[str, int]:
        """File extension → number of indexed images, most common first (e.g. for a page's type filter)."""
        if not self.path.exists():  # a new store's folder appears on its first write
            return {}
        return self.catalog.extensions()

    def switch_model(self, model: str, *, batch_size: int | None = None, workers: int | None = None,
                     progress: Progress | None = None) -> RunSummary | None:
        """Use `model` from now on: re-embed what the store holds, or, for a store with nothing yet, just choose it."""
        if self.manifest is None:
            self.choose_model(model)
            return None
        return self.reembed(model, batch_size=batch_size, workers=workers, progress=progress)

    def reembed(self, model: str, *, batch_size: int | None = None, workers: int | None = None,
                progress: Progress | None = None) -> RunSummary:
        """Re-encode every catalogued image with `model`, in place by id, then swap the result in.

        Ids, runs, roots and the vectors version stay (the version only rises); images of a vanished root stay
        too, hidden like it, and are re-encoded by the run that finds their folder again (`waiting` counts
        them); a forced index type is kept. The work happens on a copy beside the store: queries keep answering
        from the old vectors until it is complete, and a crash mid-way leaves the old store untouched (the
        half-built copy is discarded on the next try).
        """
        import time

        from clipsearch.store import reembed as plans
        from clipsearch.store.manifest import CATALOG
        from clipsearch.vectors.kinds import INDEX_TYPES
        from clipsearch.vectors.store import FAISS_FILE, saved_meta

        manifest = self._folder.require_manifest()
        if self.shared:
            raise ClipsearchError(f"store {self.path} keeps its catalog in a database, and re-embedding such a "
                                  "store is not supported yet", "index into a new store (new folder and database) "
                                  "with the new model")
        started = time.perf_counter()
        tmp = reembed_folder(self.path)
        with self._space("re-embedding"), self._discard_on_failure(tmp), self.writer_lock():
            plan = plans.plan(self.catalog)
            remove_store_files(tmp)
            tmp.mkdir()
            plans.prepare_copy(self.catalog, tmp / CATALOG, plan.gone)
            keep = stored_precision(manifest)
            saved = saved_meta(self.path / FAISS_FILE) or {}
            forced = saved.get("kind") if saved.get("forced") and saved.get("kind") in INDEX_TYPES else None
            with open_store(tmp, model, create=True, device=self.device, backend=self.backend) as new:
                new._models.adopt(self._models.loaded, keep)  # same model already loaded here: no second load
                call = WriteCall(int8=keep == "int8", progress=progress)
                summary = new.add(plan.targets, batch_size=batch_size, workers=workers, progress=progress,
                                  int8=keep == "int8", frame_interval=plan.frame_interval)
                if new.manifest is None:  # nothing to encode now (every root vanished): record the model anyway
                    new._models.for_run(call, None)
                if forced:
                    new.vectors.build(str(forced), forced=True)
                    new.vectors.save()
                summary.vanished_roots = plan.vanished_roots
                summary.waiting = plans.waiting_under(new.catalog, plan.vanished_roots)
                plans.record(new.catalog, manifest["model"]["spec"], new.model_spec.text, summary, started)
            self.close()
            swap_in(tmp, self.path)
        self._reopen(read_manifest(self.path))
        return summary

    @staticmethod
    @contextlib.contextmanager
    def _discard_on_failure(tmp: Path) -> Iterator[None]:
        """Remove a re-embed's half-built copy when it fails (it would hold the disk space a full disk lacks)."""
        try:
            yield
        except BaseException:
            remove_store_files(tmp)
            raise

    def last_reembed(self) -> dict[str, Any] | None:
        """The last re-embed (when, from and to which model, how many images it encoded and left waiting)."""
        from clipsearch.store.reembed import last

        return last(self.catalog) if self.path.exists() else None

    # --- images by id (what a server hands out: catalog ids, never paths) -----------------------------
    def image(self, image_id: int) -> dict[str, Any]:
        """An indexed image's facts by id (the keys of a search hit, less rank and score)."""
        return self._media.image(image_id)

    def record(self, image_id: int) -> ImageRecord:
        """The catalog's record of an indexed image (path, size, mtime, dimensions, format, content digest)."""
        return self._media.record(image_id)

    def image_bytes(self, image_id: int) -> tuple[bytes, str, str | None]:
        """(content, digest, format) of an indexed image: only the exact bytes that were indexed come back."""
        return self._media.image_bytes(image_id)

    def newest(self, k: int, offset: int = 0, **filters: Any) -> list[dict[str, Any]]:
        """Indexed files newest first (by capture time, else modification time; ties by id, so pages from
        `offset` neither skip nor repeat; a video once), filtered like a query (under, exts, after, before,
        taken_after, taken_before, camera, near)."""
        return self._media.newest(k, offset, **filters)

    def original(self, image_id: int) -> Original:
        """The indexed file of an image or video moment, open and verified (read a range of it, then close)."""
        return self._media.original(image_id)

    @property
    def thumbnail_cache(self) -> ThumbnailCache:
        return self._media.thumbnail_cache

    def thumbnail(self, image_id: int) -> tuple[bytes, str]:
        """(WebP thumbnail, its key) of an image or video moment, made on first use and cached in the store."""
        return self._media.thumbnail(image_id)

    def thumbnail_key(self, image_id: int) -> str:
        return self._media.thumbnail_key(image_id)

    def thumbnail_png(self, image_id: int, size: int = 160) -> bytes | None:
        """A small PNG of an indexed image (for terminal image protocols), or None when its file is gone."""
        return self._media.thumbnail_png(image_id, size)

    def contact_sheet(self, hits: Iterable[Hit], out: str | Path, columns: int | None = None) -> SheetLayout:
        """Write the hits' thumbnails as one labelled grid image (.jpg/.png/.webp)."""
        return self._media.contact_sheet(hits, out, columns)

    def make_thumbnails(self, workers: int | None = None,
                        progress: Progress | None = None) -> tuple[int, list[tuple[str, str]]]:
        """Make every missing thumbnail: (how many were made, [(path, why)] for images that could not be read)."""
        return self._media.make_thumbnails(workers, progress)

    # --- what the store holds ------------------------------------------------------------------------
    def info(self, disk: bool = True) -> dict[str, Any]:
        """Counts, model, index type, roots (vanished ones apart), the last run, and (unless `disk=False`, which
        skips a walk of the store folder) the size on disk."""
        from clipsearch.store.info import store_info

        return store_info(self._folder, self._place, self._lock, disk)

    def failures(self) -> list[dict[str, Any]]:
        return self.catalog.failures()


def default_store_path() -> Path:
    from clipsearch.config import settings

    return settings().store_path


def open_store(path: str | Path | None = None, model: str | None = None, *, create: bool = False,
               device: str | None = None, readonly: bool | None = None, backend: str | None = None,
               db: str | None = None) -> Store:
    """Open a store; `create=True` lets `add` start a new one (the folder appears on the first write), its
    catalog in the database `db` (a SQLAlchemy URL; default CLIPSEARCH_DB, else SQLite in the folder).

    `readonly` (default: when the folder is not writable, e.g. a backup, a DVD or another user's store)
    opens the catalog read-only: queries answer, writes are refused with a clear error.
    """
    store_path = Path(path).expanduser() if path else default_store_path()
    manifest = read_manifest(store_path) if store_path.is_dir() else None
    if manifest is None and not create:
        raise ClipsearchError(f"no index at {store_path}",
                              "build one first by indexing a folder into it (or point the index option at it)")
    if manifest is None:
        check_new_store_folder(store_path)  # refused before anything is written
    if readonly is None:
        readonly = store_path.is_dir() and not os.access(store_path, os.W_OK)
    return Store(store_path, manifest, model=model, device=device, readonly=readonly, backend=backend, db=db)
