"""The store: one folder holding the catalog, the embeddings, the derived FAISS index and a manifest.

`Store` is the library API the CLI is a thin layer over::

    import clipsearch
    store = clipsearch.open("index/", model="ViT-B-32:laion2b_s34b_b79k")
    store.add(["~/photos"])
    for hit in store.search("a dog on grass", k=10):
        print(hit.score, hit.path)
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator

from sqlalchemy import select
from sqlalchemy.orm import Session

from . import catalog
from .errors import ClipsearchError, ModelMismatchError, StoreLockedError
from .fsutil import atomic_write_text
from .models import ModelSpec, parse_spec

if TYPE_CHECKING:  # pragma: no cover
    from .indexer import Progress, RunSummary
    from .models import Encoder
    from .search import Hit
    from .vectors import VectorIndex

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
CATALOG = "catalog.sqlite"
FAISS_FILE = "vectors.faiss"
TEXT_ENCODER_DIR = "text_encoder"
LOCK_FILE = "lock"


def default_store_path() -> Path:
    """CLIPSEARCH_INDEX, else `index/` of the checkout we run from, else the user's data folder."""
    env = os.environ.get("CLIPSEARCH_INDEX")
    if env:
        return Path(env).expanduser()
    checkout = Path(__file__).resolve().parent.parent
    if (checkout / "pyproject.toml").is_file() and (checkout / "index").is_dir():
        return checkout / "index"
    data_home = Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local" / "share"))
    return data_home / "clipsearch" / "index"


def read_manifest(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads((Path(path) / MANIFEST).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ClipsearchError(f"store manifest {path / MANIFEST} is unreadable: {exc}",
                              "restore it from a backup or index into a new --index folder") from exc


class Store:
    """An index store. Opening is cheap; the model and the FAISS index load on first use."""

    def __init__(self, path: Path, manifest: dict[str, Any] | None, model: str | None = None,
                 device: str | None = None) -> None:
        self.path = Path(path)
        self.manifest = manifest
        self.device = device
        self._requested = parse_spec(model) if model else None
        if manifest and self._requested and self._requested.key != manifest["model"]["key"]:
            raise ModelMismatchError(
                f"store {self.path} was built with model {manifest['model']['spec']}, not {self._requested.text}",
                f"query without --model, index into another store with --index, "
                f"or re-embed it: clipsearch index --index {self.path} --model {self._requested.text} --reembed",
            )
        self.path.mkdir(parents=True, exist_ok=True)
        self.engine = catalog.open_engine(self.path / CATALOG)
        self.notices: list[str] = []  # things the user should know, e.g. which model a new store defaulted to
        self._encoder: Encoder | None = None
        self._fast_text: Any = None
        self._vectors: VectorIndex | None = None
        self._vectors_version = -1

    # --- lifecycle -----------------------------------------------------------------------------------
    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def session(self) -> Session:
        return Session(self.engine, expire_on_commit=False)

    @contextlib.contextmanager
    def writer_lock(self) -> Iterator[None]:
        """One writer at a time; readers never wait (SQLite WAL + atomic FAISS file replace)."""
        import fcntl

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

    # --- model ---------------------------------------------------------------------------------------
    def choose_model(self, model: str) -> None:
        """Pick the model of a store that has none yet (an existing store's model changes only by reembed)."""
        if self.manifest:
            raise ModelMismatchError(f"store {self.path} already has model {self.manifest['model']['spec']}",
                                     "use reembed to change it")
        self._requested = parse_spec(model)

    @property
    def model_spec(self) -> ModelSpec:
        if self._requested:
            return self._requested
        if self.manifest:
            return parse_spec(self.manifest["model"]["spec"])
        from .models import choose_default_model

        name, notice = choose_default_model()
        if notice:
            self.notices.append(notice)
        self._requested = parse_spec(name)
        return self._requested

    @property
    def dim(self) -> int:
        if self.manifest:
            return int(self.manifest["model"]["embed_dim"])
        return self.encoder.embed_dim

    @property
    def encoder(self) -> "Encoder":
        if self._encoder is None:
            from .models import load_encoder

            self._encoder = load_encoder(self.model_spec, self.device)
        return self._encoder

    def use_encoder(self, encoder: "Encoder") -> None:
        """Inject an already-loaded encoder (saves a reload when one process indexes and queries)."""
        if self.manifest and encoder.spec.key != self.manifest["model"]["key"]:
            raise ModelMismatchError(f"encoder {encoder.spec.text} does not match store model "
                                     f"{self.manifest['model']['spec']}")
        self._encoder = encoder

    def ensure_manifest(self) -> None:
        """Record the model on first write, after it loaded, so a failed load leaves no half store."""
        if self.manifest is None:
            self.manifest = {
                "format_version": FORMAT_VERSION,
                "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                "model": self.encoder.describe(),
            }
            atomic_write_text(self.path / MANIFEST, json.dumps(self.manifest, indent=2))

    def ensure_text_cache(self) -> None:
        """Export the text tower for torch-free cold queries (see textfast.py), once per store and model."""
        from .textfast import NumpyTextEncoder, export_text_tower

        folder = self.path / TEXT_ENCODER_DIR
        if NumpyTextEncoder.load(folder, self.encoder.spec.key) is None:
            export_text_tower(self.encoder, folder)

    def text_encoder(self):
        """The NumPy text encoder when the store has one for its model (no torch import), else the model."""
        if self._encoder is None and self.manifest:
            if self._fast_text is None:
                from .textfast import NumpyTextEncoder

                self._fast_text = NumpyTextEncoder.load(self.path / TEXT_ENCODER_DIR, self.manifest["model"]["key"])
            if self._fast_text is not None:
                return self._fast_text
        return self.encoder

    # --- vectors -------------------------------------------------------------------------------------
    def vector_index(self) -> "VectorIndex":
        """The FAISS index matching the catalog; rebuilt from stored embeddings if the file is stale."""
        from .vectors import VectorIndex

        with self.session() as s:
            version = catalog.get_version(s)
        if self._vectors is not None and self._vectors_version == version:
            return self._vectors
        loaded = VectorIndex.load(self.path / FAISS_FILE)
        if loaded and loaded[1] == version:
            self._vectors, self._vectors_version = loaded
            return self._vectors
        forced = loaded[0].forced if loaded else False
        return self.build_vectors(loaded[0].kind if forced else None, forced)  # type: ignore[union-attr]

    def build_vectors(self, kind: str | None = None, forced: bool = False) -> "VectorIndex":
        """Build the FAISS index from the stored embeddings (no image decoded) and make it current."""
        from .vectors import VectorIndex

        with self.session() as s:
            version = catalog.get_version(s)
            ids, vecs = catalog.all_embeddings(s, self.dim)
        self.set_vector_index(VectorIndex.build(ids, vecs, self.dim, kind, forced), version)
        return self._vectors  # type: ignore[return-value]

    def set_vector_index(self, index: "VectorIndex", version: int) -> None:
        self._vectors, self._vectors_version = index, version

    def save_vector_index(self) -> None:
        if self._vectors is not None:
            self._vectors.save(self.path / FAISS_FILE, self._vectors_version)

    def retype_vectors_if_needed(self) -> None:
        """Switch flat ↔ IVF when the collection crossed the size threshold (unless the user forced a type)."""
        from .vectors import choose_type

        vi = self.vector_index()
        if not vi.forced and choose_type(vi.ntotal) != vi.kind:
            self.build_vectors()

    def sync_vector_file(self) -> None:
        """Save the FAISS file if it is missing or older than the catalog (a reader only rebuilds in memory)."""
        from .vectors import saved_meta

        if not self.manifest:
            return
        with self.session() as s:
            version = catalog.get_version(s)
        faiss_file = self.path / FAISS_FILE
        if not faiss_file.exists() or (saved_meta(faiss_file) or {}).get("version") != version:
            self.vector_index()
            self.save_vector_index()

    def rebuild_vectors(self, kind: str | None = None) -> "VectorIndex":
        """Rebuild (and save) the FAISS index from stored embeddings; a given `kind` is kept from then on."""
        with self.writer_lock():
            vi = self.build_vectors(kind, forced=kind is not None)
            self.save_vector_index()
        return vi

    # --- the public verbs ----------------------------------------------------------------------------
    def add(self, paths: Iterable[str | Path], *, exclude: Iterable[str] = (), include_hidden: bool = False,
            batch_size: int | None = None, workers: int | None = None, progress: "Progress | None" = None,
            commit_every: int | None = None) -> "RunSummary":
        """Index (or incrementally update) folders and files; `commit_every` images per transaction."""
        from .indexer import COMMIT_EVERY, run_index

        return run_index(self, list(paths), exclude=tuple(exclude), include_hidden=include_hidden,
                         batch_size=batch_size, workers=workers, progress=progress,
                         commit_every=commit_every or COMMIT_EVERY)

    def search(self, text: str | list[str] | None = None, *, image: str | list[str] | None = None,
               minus: Iterable[str] = (), minus_image: Iterable[str] = (), k: int = 10,
               under: Iterable[str] | None = None, ext: Iterable[str] | None = None,
               after: Any = None, before: Any = None) -> list["Hit"]:
        """Filters: `under` folders, `ext` extensions, file modified in [after, before) (dates or ISO strings)."""
        from .search import search

        texts = [text] if isinstance(text, str) else list(text or [])
        images = [image] if isinstance(image, (str, Path)) else list(image or [])
        return search(self, texts=texts, images=[str(i) for i in images], minus=list(minus),
                      minus_images=[str(i) for i in minus_image], k=k,
                      under=list(under) if under else None, exts=list(ext) if ext else None,
                      after=after, before=before)

    def reembed(self, model: str, *, batch_size: int | None = None, workers: int | None = None,
                progress: "Progress | None" = None) -> "RunSummary":
        """Re-encode every catalogued image with `model` into a fresh store beside this one, then swap it in.

        Queries keep answering from the old vectors until the new store is complete; a crash mid-way
        leaves the old store untouched (the half-built one is discarded on the next try).
        """
        import shutil

        with self.writer_lock():
            with self.session() as s:
                paths = [p for p in s.scalars(select(catalog.ImageRow.path)) if os.path.exists(p)]
                roots = list(s.scalars(select(catalog.RootRow.path)))
            tmp = self.path.with_name(f".{self.path.name}.reembed")
            shutil.rmtree(tmp, ignore_errors=True)
            with open_store(tmp, model, create=True, device=self.device) as new:
                summary = new.add(paths, batch_size=batch_size, workers=workers, progress=progress)
                with new.session() as s, s.begin():
                    s.add_all(catalog.RootRow(path=r) for r in roots)
            old = self.path.with_name(f".{self.path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(self.path, old)
            os.replace(tmp, self.path)
        shutil.rmtree(old, ignore_errors=True)
        self.engine.dispose()
        self.__init__(self.path, read_manifest(self.path), device=self.device)  # type: ignore[misc]
        return summary

    def info(self) -> dict[str, Any]:
        from .vectors import saved_meta

        with self.session() as s:
            counts = catalog.counts(s)
            last = s.scalars(select(catalog.RunRow).order_by(catalog.RunRow.id.desc()).limit(1)).first()
            roots = list(s.scalars(select(catalog.RootRow.path).order_by(catalog.RootRow.path)))
        disk = sum(p.stat().st_size for p in self.path.rglob("*") if p.is_file())
        faiss_meta = saved_meta(self.path / FAISS_FILE) or {}
        return {
            "store": str(self.path.resolve()),
            "model": (self.manifest or {}).get("model"),
            **counts,
            "index_type": faiss_meta.get("kind", "flat (not built yet)"),
            "disk_bytes": disk,
            "roots": roots,
            "last_run": None if last is None else {
                "started_at": last.started_at.isoformat(timespec="seconds"),
                "status": last.status,
                "added": last.added, "updated": last.updated, "moved": last.moved, "removed": last.removed,
                "unchanged": last.unchanged, "failed": last.failed, "seconds": round(last.seconds, 2),
            },
        }

    def failures(self) -> list[dict[str, Any]]:
        with self.session() as s:
            rows = s.execute(select(catalog.ImageRow.path, catalog.ImageRow.error, catalog.ImageRow.size)
                             .where(catalog.ImageRow.ok.is_(False)).order_by(catalog.ImageRow.path)).all()
        return [{"path": p, "error": e, "size": n} for p, e, n in rows]


def open_store(path: str | Path | None = None, model: str | None = None, *, create: bool = False,
               device: str | None = None) -> Store:
    """Open a store; `create=True` lets `add` start a new one. Model mismatch is an error here."""
    store_path = Path(path).expanduser() if path else default_store_path()
    manifest = read_manifest(store_path) if store_path.is_dir() else None
    if manifest is None and not create:
        raise ClipsearchError(f"no index at {store_path}",
                              "build one first: clipsearch index FOLDER (or point --index / CLIPSEARCH_INDEX at it)")
    if manifest and manifest.get("format_version") != FORMAT_VERSION:
        raise ClipsearchError(f"store {store_path} has format {manifest.get('format_version')}, "
                              f"this clipsearch reads {FORMAT_VERSION}", "re-index into a new --index folder")
    return Store(store_path, manifest, model=model, device=device)
