"""The store: one folder holding the catalog, the embeddings, the derived FAISS index and a manifest.

`Store` is the library API the CLI is a thin layer over. It builds the collaborators — a `Catalog`, a
`VectorStore` and the encoders — and hands them to the indexing pipeline and the query engine::

    import clipsearch
    store = clipsearch.open("index/", model="ViT-B-32:laion2b_s34b_b79k")
    store.add(["~/photos"])
    for hit in store.search("a dog on grass", k=10):
        print(hit.score, hit.path)
"""

from __future__ import annotations

import contextlib
import os
import uuid
import weakref
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clipsearch.encoders.spec import ModelSpec, parse_spec
from clipsearch.errors import ClipsearchError, ModelMismatchError, NotFoundError, StoreLockedError
from clipsearch.store.manifest import (
    CATALOG,
    LOCK_FILE,
    TEXT_ENCODER_DIR,
    THUMB_DIR,
    catalog_url,
    new_manifest,
    precision as stored_precision,
    read_manifest,
    write_manifest,
)

BACKENDS = ("onnx", "torch")

if TYPE_CHECKING:  # pragma: no cover
    from clipsearch.catalog.catalog import Catalog, ImageRecord
    from clipsearch.catalog.sqlite_reader import QuickCatalog
    from clipsearch.encoders.onnx_encoder import OnnxImageEncoder
    from clipsearch.encoders.torch_encoder import Encoder
    from clipsearch.indexing.writer import EncodePool, RunSummary
    from clipsearch.media.thumbnails import SheetLayout, ThumbnailCache
    from clipsearch.progress import Progress
    from clipsearch.query.dupes import Duplicates
    from clipsearch.query.engine import Hit, Hits
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
        if backend is not None and backend not in BACKENDS:
            raise ClipsearchError(f"backend must be one of {', '.join(BACKENDS)}, not {backend!r}",
                                  "onnx runs ONNX Runtime (the default where the model exports), torch runs PyTorch",
                                  param="backend")
        self.path = Path(path)
        self.manifest = manifest
        self.device = device
        self.readonly = readonly
        self.backend = backend
        self._requested = parse_spec(model) if model else None
        if manifest and self._requested and self._requested.key != manifest["model"]["key"]:
            raise ModelMismatchError(
                f"store {self.path} was built with model {manifest['model']['spec']}, not {self._requested.text}",
                "query without a model, index into another store, or re-embed this one with the new model",
            )
        self._db = self._check_db(db)
        self._store_id = ((manifest or {}).get("catalog") or {}).get("store_id") or uuid.uuid4().hex
        self.notices: list[Any] = []  # things the user should know, e.g. which model a new store defaulted to
        self.progress: Progress | None = None  # where stages and notices go while a verb runs
        self._created_dir = False
        self._catalog: Catalog | None = None
        self._quick: QuickCatalog | None = None
        self._quick_tried = False
        self._vectors: VectorStore | None = None
        self._encoder: Encoder | OnnxImageEncoder | None = None
        self._fast_text: Any = None
        self._int8: bool | None = None  # what `add` asked for; None: the store's precision (or the default)
        self._writing = False  # inside `add`: embeddings made now are stored, so their precision must match

    # --- lifecycle -----------------------------------------------------------------------------------
    def close(self) -> None:
        if self._quick is not None:
            self._quick.close()
        if self._catalog is not None:
            self._catalog.close()
        if self._created_dir and self.manifest is None:  # nothing was stored (e.g. the model failed to load)
            from clipsearch.store.folder import remove_store_files

            remove_store_files(self.path)

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _writable(self) -> None:
        if self.readonly:
            raise ClipsearchError(f"store {self.path} is read-only", "copy it to a writable place to change it")
        if self.manifest is None:
            from clipsearch.store.folder import check_new_store_folder

            check_new_store_folder(self.path)  # never adopt somebody's folder as a store
        if not self.path.exists():
            self.path.mkdir(parents=True)
            self._created_dir = True

    def _check_db(self, db: str | None) -> str | None:
        """The database URL to open: an existing store's recorded one (with a password from `db` or
        CLIPSEARCH_DB when they name the same database), a new store's `db` or CLIPSEARCH_DB, else None."""
        from clipsearch.config import settings

        recorded = catalog_url(self.manifest)
        if self.manifest is not None and not db and recorded is None:
            return None  # the common case, a SQLite store: no SQLAlchemy import (a cold query skips it)
        if self.manifest is None and not (db or settings().db):
            return None
        from clipsearch.catalog.database import parse_url, public_url, same_database

        if self.manifest is not None:
            if db and (recorded is None or not same_database(parse_url(db), recorded)):
                given = public_url(parse_url(db)) if recorded is None else "names another database"
                raise ClipsearchError(f"db {given}: store {self.path} keeps its catalog in "
                                      f"{recorded or 'its folder (SQLite)'}",
                                      "leave the database option out: a store's catalog stays where it was made",
                                      param="db")
            if recorded is None:
                return None
            for candidate in (db, settings().db):
                if candidate and "://" in candidate and same_database(parse_url(candidate), recorded):
                    return candidate
            return recorded
        db = db or settings().db
        if db:
            parse_url(db)  # a bad URL fails before anything is written
        return db

    @property
    def shared(self) -> bool:
        """Whether the catalog lives in a database server (several writers, readers on other machines)."""
        return self._db is not None

    @property
    def catalog(self) -> Catalog:
        if self._catalog is None:
            from clipsearch.catalog.catalog import Catalog

            if not self.readonly:
                self._writable()
            self._catalog = Catalog(self._db or self.path / CATALOG, readonly=self.readonly,
                                    owner=self._store_id if self._db else None,
                                    folder=str(self.path.resolve()), new=self.manifest is None)
        return self._catalog

    @property
    def reads(self) -> Catalog | QuickCatalog:
        """What queries read through: the catalog when it is open, else (a SQLite catalog at this release's
        schema) a sqlite3 reader that spares a cold query SQLAlchemy and hands other verbs to the catalog."""
        if self._catalog is not None or self.shared:
            return self.catalog
        if not self._quick_tried:
            from clipsearch.catalog.sqlite_reader import QuickCatalog

            self._quick_tried = True
            me = weakref.ref(self)  # no cycle: the store (and its memory-mapped files) goes when unused
            self._quick = QuickCatalog.open(self.path / CATALOG, self.readonly, lambda: me().catalog)  # type: ignore[union-attr]
        return self._quick if self._quick is not None else self.catalog

    @contextlib.contextmanager
    def writer_lock(self, folders: Sequence[str] | None = None) -> Iterator[None]:
        """One writer at a time per store on SQLite; on a shared catalog one per folder (`folders`; None: the
        whole store), held as database advisory locks. Readers never wait (SQLite WAL or the server's MVCC,
        and atomic FAISS file replaces)."""
        import fcntl

        self._writable()
        if self.shared:
            with self.catalog.writer(folders):
                yield
            return
        lock_path = self.path / LOCK_FILE
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = Path(lock_path).read_text().strip() or "another process"
                raise StoreLockedError(f"store {self.path} is being written by {holder}",
                                       "wait for that run to finish (queries still work meanwhile)") from None
            os.ftruncate(fd, 0)
            os.write(fd, f"pid {os.getpid()}".encode())
            yield
        finally:
            os.close(fd)

    def writer_active(self, run_id: int | None = None) -> bool:
        """Whether another process holds the writer lock right now (a run in progress, not a killed one); on a
        shared catalog, whether run `run_id`'s writer is still at work."""
        import fcntl

        if self.shared:
            return run_id is not None and self.catalog.run_active(run_id)

        try:
            fd = os.open(self.path / LOCK_FILE, os.O_RDONLY)
        except OSError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            return False
        except BlockingIOError:
            return True
        finally:
            os.close(fd)

    def _stage(self, message: str) -> None:
        if self.progress is not None:
            self.progress.stage(message)

    def _notice(self, message: Any) -> None:
        self.notices.append(message)
        if self.progress is not None:
            self.progress.note(message)

    # --- model ---------------------------------------------------------------------------------------
    def choose_model(self, model: str) -> None:
        """Pick the model of a store that has none yet (an existing store's model changes only by reembed)."""
        if self.manifest:
            raise ModelMismatchError(f"store {self.path} already has model {self.manifest['model']['spec']}",
                                     "re-embed it to change the model")
        self._requested = parse_spec(model)

    @property
    def model_spec(self) -> ModelSpec:
        if self._requested:
            return self._requested
        if self.manifest:
            return parse_spec(self.manifest["model"]["spec"])
        from clipsearch.encoders.spec import choose_default_model

        name, notice = choose_default_model()
        if notice:
            self._notice(notice)
        self._requested = parse_spec(name)
        return self._requested

    @property
    def dim(self) -> int:
        if self.manifest:
            return int(self.manifest["model"]["embed_dim"])
        return self.encoder.embed_dim

    @property
    def encoder(self) -> Encoder | OnnxImageEncoder:
        """The image encoder (ONNX Runtime or torch, see `backend`), at the store's precision."""
        wanted = self._precision()
        if self._encoder is not None and self._writing and wanted is not None and self._encoder.precision != wanted:
            self._encoder = None  # e.g. loaded for a query, now asked for int8 by `add`
        if self._encoder is None:
            spec = self.model_spec
            self._stage(f"loading model {spec.text}")
            encoder = self._load_encoder(spec, wanted)
            if self.manifest and encoder.embed_dim != self.dim:
                raise ModelMismatchError(f"model {spec.text} makes {encoder.embed_dim}-d embeddings but store "
                                         f"{self.path} holds {self.dim}-d ones", "index into a new store")
            self._encoder = encoder
        return self._encoder

    def _precision(self) -> str | None:
        """fp32 or int8: what `add` asked for, else what the store holds; None for a new store (the default).
        A store never mixes the two: they rank alike, but not identically."""
        stored = stored_precision(self.manifest) if self.manifest else None
        if self._int8 is None:
            return stored
        wanted = "int8" if self._int8 else "fp32"
        if stored is not None and stored != wanted:
            raise ModelMismatchError(
                f"int8 embeddings would mix with the {stored} ones store {self.path} holds" if wanted == "int8" else
                f"fp32 embeddings would mix with the int8 ones store {self.path} holds",
                f"index {'without' if wanted == 'int8' else 'with'} int8 (the store's precision), or into a new store",
                param="int8")
        return wanted

    def _load_encoder(self, spec: ModelSpec, precision: str | None) -> Encoder | OnnxImageEncoder:
        """ONNX Runtime from the export cache (exporting once, with torch, when the model has no export yet);
        torch when asked, or, by default, when the model does not export (with a notice)."""
        from clipsearch.encoders.torch_encoder import load_encoder

        if self.backend == "torch":
            if precision == "int8" and self._writing:
                raise ClipsearchError("int8 runs on the onnx backend", "index with backend onnx, or without int8",
                                      param="int8")
            return load_encoder(spec, self.device)  # a query vector in fp32 ranks an int8 store alike
        from clipsearch.encoders import onnx_encoder as ox

        export, why_not, torch_encoder = None, ox.unavailable(self.device, explicit=self.backend == "onnx"), None
        if why_not is None:
            export = ox.find_export(spec.cache_key)
            if export is None:
                why_not = ox.refusal(spec.cache_key)
                if why_not is None:
                    from clipsearch.encoders.onnx_export import ExportRefused, export as export_model

                    torch_encoder = load_encoder(spec, self.device)
                    self._stage(f"exporting {spec.text} to ONNX (once per model)")
                    try:
                        export = ox.Export.at(export_model(torch_encoder))
                    except ExportRefused as exc:
                        why_not = str(exc)
                if why_not is not None:
                    why_not = f"model {spec.text} has no ONNX export: {why_not}"
        if export is None:
            if self.backend == "onnx":
                raise ClipsearchError(f"backend onnx cannot run {spec.text}: {why_not}", "use backend torch",
                                      param="backend")
            if precision == "int8" and self._writing:
                raise ClipsearchError(f"int8 runs on the onnx backend, and {why_not}", "index without int8",
                                      param="int8")
            self._notice(f"{why_not}; using torch")
            return torch_encoder or load_encoder(spec, self.device)
        return ox.OnnxImageEncoder(spec, export, precision or ox.default_precision(self.device), self.device)

    def _prepare_encoder(self) -> Encoder | OnnxImageEncoder:
        """The encoder for an index run; records the model on first write, after it loaded, so a failed load
        leaves no half store, and gives the store its text tower for torch-free cold queries (copied from the
        export cache, else exported from the torch model)."""
        from clipsearch.encoders.numpy_text import stored_key

        encoder = self.encoder
        if self.manifest is None:
            from clipsearch.catalog.database import public_url

            shared = {"url": public_url(self._db), "store_id": self._store_id} if self._db else None
            self.manifest = new_manifest(encoder.describe(), shared)
            write_manifest(self.path, self.manifest)
        folder = self.path / TEXT_ENCODER_DIR
        if stored_key(folder) != encoder.spec.key:
            if encoder.backend == "onnx":
                source = encoder.export.text_dir
                if source is not None:
                    from clipsearch.fsutil import link_tree

                    link_tree(source, folder)
            else:
                from clipsearch.encoders.text_export import export_text_tower

                export_text_tower(encoder, folder)
        return encoder

    def text_encoder(self) -> Any:
        """The NumPy text encoder when the store has one for its model (no torch import), else the model.

        Once loaded, the NumPy tower keeps answering text even after the image model is loaded (as a server
        does for image queries), so text latency does not change under a long-running process."""
        if self._fast_text is not None:
            return self._fast_text
        if self._encoder is None and self.manifest:
            if self._fast_text is None:
                from clipsearch.encoders.numpy_text import NumpyTextEncoder

                self._fast_text = NumpyTextEncoder.load(self.path / TEXT_ENCODER_DIR, self.manifest["model"]["key"])
            if self._fast_text is not None:
                return self._fast_text
        return self.encoder

    def coalesce_text_queries(self) -> None:
        """From now on, text queries running at the same time in several threads (a server's) share packed passes
        of the NumPy text tower: same results, several texts for little more than the cost of one."""
        from clipsearch.encoders.numpy_text import CoalescingTextEncoder, NumpyTextEncoder

        encoder = self.text_encoder()
        if isinstance(encoder, NumpyTextEncoder):
            self._fast_text = CoalescingTextEncoder(encoder)

    def loaded(self) -> dict[str, bool]:
        """Which encoders this process holds now: `text` (NumPy tower or model), `images` (the model)."""
        return {"text": self._fast_text is not None or self._encoder is not None, "images": self._encoder is not None}

    # --- vectors -------------------------------------------------------------------------------------
    @property
    def vectors(self) -> VectorStore:
        if self._vectors is None:
            from clipsearch.vectors.store import VectorStore

            self._vectors = VectorStore(self.path, self.reads, self.dim)
        return self._vectors

    def vector_index(self) -> VectorIndex:
        """The FAISS index matching the catalog; rebuilt from stored embeddings if the file is stale or damaged."""
        return self.vectors.current()

    def rebuild_vectors(self, kind: str | None = None) -> VectorIndex:
        """Rebuild (and save) the FAISS index from stored embeddings; a given `kind` is kept from then on."""
        self._require_manifest()
        with self.writer_lock():
            vi = self.vectors.build(kind, forced=kind is not None)
            self.vectors.save()
        return vi

    def _require_manifest(self) -> None:
        if self.manifest is None:
            raise ClipsearchError(f"store {self.path} is empty", "add images first: index a folder into it")

    # --- the public verbs ----------------------------------------------------------------------------
    def add(self, paths: Iterable[str | Path], *, exclude: Iterable[str] = (), include_hidden: bool = False,
            verify: bool = False, frame_interval: float | None = None, batch_size: int | None = None,
            workers: int | None = None, progress: Progress | None = None, commit_every: int | None = None,
            int8: bool | None = None, thumbnails: bool = False, ray_address: str | None = None,
            encode_pool: EncodePool | None = None) -> RunSummary:
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
        """
        from clipsearch.config import settings
        from clipsearch.indexing.pipeline import Workbench, run_index
        from clipsearch.indexing.scan import canonical, scan
        from clipsearch.indexing.writer import IndexOptions

        targets = list(paths)
        self._writable()
        self._int8 = int8
        self.progress = progress
        self._writing = True
        try:
            self._precision()  # a mismatch fails before anything is scanned
            with self.writer_lock([canonical(t) for t in targets]):
                store_roots = [r["path"] for r in self.catalog.roots()]
                for target in targets:
                    self._check_target(target, store_roots)
                existing = [r for r in store_roots if os.path.isdir(r)]
                roots, scanned = scan(targets, covered=existing, exclude=tuple(exclude),
                                      include_hidden=include_hidden, skip_dirs=[canonical(self.path)])
                options = IndexOptions(verify=verify, batch_size=batch_size, workers=workers,
                                       commit_every=commit_every or settings().commit_every)
                if frame_interval is not None:
                    if frame_interval <= 0:
                        raise ClipsearchError(f"frame_interval must be positive, got {frame_interval}",
                                              param="frame_interval")
                    options.frame_interval = frame_interval
                if ray_address is not None and encode_pool is None:
                    from clipsearch.indexing.ray_pool import RayPool

                    encode_pool = RayPool(None if ray_address == "local" else ray_address)
                if encode_pool is not None and hasattr(encode_pool, "for_device"):
                    encode_pool = encode_pool.for_device(self.device)
                bench = Workbench(encoder=self._prepare_encoder, vectors=lambda: self.vectors, pool=encode_pool)
                summary = run_index(self.catalog, bench, roots, scanned, options, progress, other_roots=store_roots)
            if thumbnails and self.manifest is not None:
                summary.thumbnails, failed = self.make_thumbnails(workers=workers, progress=progress)
                summary.problems.extend(failed)
            return summary
        finally:
            self.progress = None
            self._int8 = None  # from now on the manifest says
            self._writing = False

    def _check_target(self, target: str | Path, store_roots: list[str]) -> None:
        from clipsearch.indexing.scan import canonical

        path = os.path.abspath(os.path.expanduser(str(target)))
        if os.path.exists(path):
            return
        if path in store_roots or canonical(path) in store_roots:
            n = self.catalog.count_under(path)
            raise ClipsearchError(f"{path} no longer exists; its {n} indexed images are hidden from results",
                                  "if it is gone for good, drop it from the store with forget; if it is an "
                                  "unmounted drive, mount it and index again")
        raise ClipsearchError(f"no such file or folder: {target}", "check the path and try again")

    def forget(self, path: str | Path) -> dict[str, int]:
        """Drop a folder (e.g. a vanished root) or file from the store: its rows, embeddings and vectors."""
        self._require_manifest()
        raw = os.path.abspath(os.path.expanduser(str(path)))
        from clipsearch.indexing.scan import canonical

        with self.writer_lock():
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
               like: Iterable[int] = ()) -> Hits:
        """Text terms and query images (paths, or bytes such as an upload: decoded in memory, never written),
        minus either; `like` adds the stored embeddings of indexed images by id ("more like this"; those images
        are left out of the results). Filters: `under` folders, `ext` extensions, file modified in
        [after, before) (dates or ISO strings). A video is one hit at its best moment (`timestamp`), unless
        `all_frames`."""
        from clipsearch.query.engine import Query, QueryEngine

        self._require_manifest()
        texts = [text] if isinstance(text, str) else list(text or [])
        images = [image] if isinstance(image, (str, Path, bytes)) else list(image or [])
        query = Query.parse(texts, [str(i) for i in images if not isinstance(i, bytes)], list(minus),
                            [str(i) for i in minus_image], k, list(under) if under else None,
                            list(ext) if ext else None, after, before, all_frames,
                            image_data=[i for i in images if isinstance(i, bytes)], like=list(like))
        engine = QueryEngine(self.reads, self.vectors, self.text_encoder, lambda: self.encoder)
        return engine.search(query)

    def duplicates(self, threshold: float = 0.99, exact: bool = False,
                   under: Iterable[str] | None = None) -> Duplicates:
        """Groups of duplicate images, biggest first, each with a suggested keeper (nothing is deleted).

        Near duplicates: embeddings with cosine >= `threshold` (0.99 finds re-encoded and resized copies;
        lower values also find edits, crops, then other shots of one scene). `exact`: byte-identical files
        only, by content digest (no vectors). `under`: only images inside these folders.
        """
        from clipsearch.query.dupes import check_threshold, find_duplicates

        check_threshold(threshold)
        self._require_manifest()
        if self.catalog.counts()["images"] == 0:
            raise ClipsearchError(f"store {self.path} holds no images", "index a folder into it first")
        return find_duplicates(self.catalog, None if exact else self.vectors, threshold, exact,
                               [str(u) for u in under] if under else None)

    def switch_model(self, model: str, *, batch_size: int | None = None, workers: int | None = None,
                     progress: Progress | None = None) -> RunSummary | None:
        """Use `model` from now on: re-embed what the store holds, or, for a store with nothing yet, just choose it."""
        if self.manifest is None:
            self.choose_model(model)
            return None
        return self.reembed(model, batch_size=batch_size, workers=workers, progress=progress)

    def reembed(self, model: str, *, batch_size: int | None = None, workers: int | None = None,
                progress: Progress | None = None) -> RunSummary:
        """Re-encode every catalogued image with `model` into a fresh store beside this one, then swap it in.

        Queries keep answering from the old vectors until the new store is complete; a crash mid-way
        leaves the old store untouched (the half-built one is discarded on the next try).
        """
        from clipsearch.fsutil import swap_dirs
        from clipsearch.store.folder import check_new_store_folder, check_replaceable, remove_store_files

        self._require_manifest()
        if self.shared:
            raise ClipsearchError(f"store {self.path} keeps its catalog in a database, and re-embedding such a "
                                  "store is not supported yet", "index into a new store (new folder and database) "
                                  "with the new model")
        check_replaceable(self.path, "re-embedding")
        tmp = self.path.with_name(f".{self.path.name}.reembed")
        check_new_store_folder(tmp)  # a leftover half-built store is discarded, anything else is refused
        with self.writer_lock():
            paths = [p for p in self.catalog.indexed_paths() if os.path.exists(p)]
            roots = [r["path"] for r in self.catalog.roots()]
            remove_store_files(tmp)
            keep = stored_precision(self.manifest)
            with open_store(tmp, model, create=True, device=self.device, backend=self.backend) as new:
                if self._encoder is not None and self._encoder.spec.key == new.model_spec.key \
                        and self._encoder.precision == keep:
                    new._encoder = self._encoder  # same model already loaded here: no second load
                summary = new.add(paths, batch_size=batch_size, workers=workers, progress=progress,
                                  int8=keep == "int8")
                new.catalog.add_roots(roots)
            with contextlib.suppress(OSError):  # thumbnails depend on content only: keep them
                os.rename(self.path / THUMB_DIR, tmp / THUMB_DIR)
            self.close()
            swap_dirs(tmp, self.path, discard=remove_store_files)
        self.__init__(self.path, read_manifest(self.path), device=self.device,  # type: ignore[misc]
                      backend=self.backend)
        return summary

    # --- images by id (what a server hands out: catalog ids, never paths) -----------------------------
    def image(self, image_id: int) -> dict[str, Any]:
        """An indexed image's facts by id (the keys of a search hit, less rank and score)."""
        from clipsearch.query.engine import modified_iso

        rec = self.record(image_id)
        return {"path": rec.path, "size": rec.size, "width": rec.width, "height": rec.height, "format": rec.format,
                "modified": modified_iso(rec.mtime_ns), "id": rec.id}

    def record(self, image_id: int) -> ImageRecord:
        """The catalog's record of an indexed image (path, size, mtime, dimensions, format, content digest)."""
        rec = self.catalog.image(image_id) if self.manifest else None
        if rec is None:
            raise NotFoundError(f"no image with id {image_id} in the store", "search again: it may have been "
                                "removed since")
        return rec

    def image_bytes(self, image_id: int) -> tuple[bytes, str, str | None]:
        """(content, digest, format) of an indexed image: only the exact bytes that were indexed come back,
        whatever sits at its path now (a changed file, a symlink swapped in, a FIFO) is refused."""
        from clipsearch.media.images import read_verified

        rec = self.record(image_id)
        data = read_verified(rec.path, rec.digest)
        if data is None:
            raise NotFoundError(f"image {image_id} is gone or has changed since it was indexed",
                                "index its folder again")
        return data, rec.digest, rec.format

    @property
    def thumbnail_cache(self) -> ThumbnailCache:
        from clipsearch.media.thumbnails import ThumbnailCache

        return ThumbnailCache(self.path / THUMB_DIR)

    def thumbnail(self, image_id: int) -> tuple[bytes, str]:
        """(WebP thumbnail, content digest) of an indexed image, made on first use and cached in the store."""
        from clipsearch.media.images import DecodeError, read_verified

        rec = self.record(image_id)
        try:
            thumb = self.thumbnail_cache.get_or_make(rec.digest, lambda: read_verified(rec.path, rec.digest))
        except DecodeError as exc:
            raise NotFoundError(f"no thumbnail for image {image_id}: {exc}", "index its folder again") from exc
        if thumb is None:
            raise NotFoundError(f"image {image_id} is gone or has changed since it was indexed",
                                "index its folder again")
        return thumb, rec.digest

    def thumbnail_png(self, image_id: int, size: int = 160) -> bytes | None:
        """A small PNG of an indexed image (for terminal image protocols), or None when its file is gone."""
        from clipsearch.media.thumbnails import to_png

        try:
            return to_png(self.thumbnail(image_id)[0], size)
        except NotFoundError:
            return None

    def contact_sheet(self, hits: Iterable[Hit], out: str | Path, columns: int | None = None) -> SheetLayout:
        """Write the hits' thumbnails as one labelled grid image (.jpg/.png/.webp); a missing file gets a grey tile."""
        from clipsearch.media.thumbnails import contact_sheet

        tiles = []
        for h in hits:
            try:
                thumb: bytes | None = self.thumbnail(h.id)[0]
            except NotFoundError:
                thumb = None
            tiles.append((thumb, f"#{h.rank}  {h.score:.3f}", os.path.basename(h.path)))
        return contact_sheet(tiles, out, columns)

    def make_thumbnails(self, workers: int | None = None,
                        progress: Progress | None = None) -> tuple[int, list[tuple[str, str]]]:
        """Make every missing thumbnail: (how many were made, [(path, why)] for images that could not be read)."""
        from clipsearch.media.images import read_verified

        if self.manifest is None:
            return 0, []
        made, failed = self.thumbnail_cache.fill(self.catalog.digests(), read_verified, workers, progress)
        return made, failed

    def info(self, disk: bool = True) -> dict[str, Any]:
        """Counts, model, index type, roots (vanished ones apart), the last run, and (unless `disk=False`, which
        skips a walk of the store folder) the size on disk."""
        from clipsearch.catalog.catalog import parse_datetime
        from clipsearch.vectors.store import FAISS_FILE, saved_meta

        exists = self.path.exists()  # a new store's folder appears on its first write
        counts = self.catalog.counts() if exists else {"images": 0, "failed": 0, "vectors": 0}
        roots = [r["path"] for r in self.catalog.roots()] if exists else []
        last = self.catalog.last_run() if exists else None
        if last is not None:
            run_id = last.pop("id")
            if last["status"] == "running":
                last["status"] = "in progress" if self.writer_active(run_id) else "interrupted"
            last.update(seconds=round(last["seconds"], 2), started_at=parse_datetime(last["started_at"]),
                        finished_at=parse_datetime(last["finished_at"]))
        return {
            "store": str(self.path.resolve()),
            "model": (self.manifest or {}).get("model"),
            "catalog": self.catalog.where if self._db else "sqlite",
            **counts,
            "index_type": (saved_meta(self.path / FAISS_FILE) or {}).get("kind", "flat (not built yet)"),
            "disk_bytes": (sum(p.stat().st_size for p in self.path.rglob("*") if p.is_file()) if exists else 0)
            if disk else None,
            "roots": roots,
            "vanished_roots": [r for r in roots if not os.path.isdir(r)],
            "last_run": last,
        }

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
        from clipsearch.store.folder import check_new_store_folder

        check_new_store_folder(store_path)  # refused before anything is written
    if readonly is None:
        readonly = store_path.is_dir() and not os.access(store_path, os.W_OK)
    return Store(store_path, manifest, model=model, device=device, readonly=readonly, backend=backend, db=db)
