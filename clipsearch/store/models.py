"""A store's model: which one, at which precision, on which backend, and its loaded encoders.

A store holds embeddings of one model at one precision (fp32 or int8: they rank alike, not identically), so
these rules live in one place: the model a new store defaults to (with a notice), the precision an index run
may write (a mismatch is a ModelMismatchError before anything is scanned), the image encoder from the
encoder factory, the model recorded in the manifest on the first write (after the model loaded, so a failed
load leaves no half store), and the text encoder for queries without torch (the model's text tower in the export
cache, shared by every store of the model; a store written before keeps its own copy).

What one index run asks for (its `int8`, where its stages and notices go) is a `WriteCall` handed down with
each call, never state on the store.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from clipsearch.encoders.base import runs_on
from clipsearch.encoders.spec import ModelSpec, parse_spec
from clipsearch.errors import ModelMismatchError
from clipsearch.store.manifest import TEXT_ENCODER_DIR, new_manifest, precision as stored_precision

if TYPE_CHECKING:  # pragma: no cover
    from clipsearch.encoders.factory import LoadedEncoder
    from clipsearch.encoders.torch_encoder import Encoder
    from clipsearch.progress import Progress
    from clipsearch.store.folder import StoreFolder


@dataclass(frozen=True)
class WriteCall:
    """One index run's requests: `int8` (None: the store's precision, a new store's default) and where its
    stages and notices go. Embeddings made for it are stored, so their precision must be exact."""
    int8: bool | None = None
    progress: Progress | None = None


class StoreModel:
    """The model of the store in `folder`: `requested` (None: the manifest's, or the default for a new store),
    loaded on `device` with `backend`; notices for the user are appended to `notices`."""

    def __init__(self, folder: StoreFolder, requested: ModelSpec | None, device: str | None,
                 backend: str | None, notices: list[Any]) -> None:
        manifest = folder.manifest
        if manifest and requested and requested.key != manifest["model"]["key"]:
            raise ModelMismatchError(
                f"store {folder.path} was built with model {manifest['model']['spec']}, not {requested.text}",
                "query without a model, index into another store, or re-embed this one with the new model",
            )
        self._folder = folder
        self._requested = requested
        self._device = device
        self._backend = backend
        self._notices = notices
        self._encoder: LoadedEncoder | None = None
        self._fast_text: Any = None
        self._manifest_spec: ModelSpec | None = None
        self._warm_text: int | None = None  # threads of a warm process's text tower; None: a cold one

    # --- messages --------------------------------------------------------------------------------------
    @staticmethod
    def _stage(call: WriteCall | None, message: str) -> None:
        if call is not None and call.progress is not None:
            call.progress.stage(message)

    def _notice(self, call: WriteCall | None, message: Any) -> None:
        self._notices.append(message)
        if call is not None and call.progress is not None:
            call.progress.note(message)

    # --- which model, which precision ------------------------------------------------------------------
    def choose(self, model: str) -> None:
        """Pick the model of a store that has none yet (an existing store's model changes only by reembed)."""
        manifest = self._folder.manifest
        if manifest:
            raise ModelMismatchError(f"store {self._folder.path} already has model {manifest['model']['spec']}",
                                     "re-embed it to change the model")
        self._requested = parse_spec(model)

    def spec(self, call: WriteCall | None = None) -> ModelSpec:
        if self._requested:
            return self._requested
        manifest = self._folder.manifest
        if manifest:
            text = manifest["model"]["spec"]
            if self._manifest_spec is None or self._manifest_spec.text != text:  # parsed once, not per query
                self._manifest_spec = parse_spec(text)
            return self._manifest_spec
        from clipsearch.encoders.spec import choose_default_model

        name, notice = choose_default_model()
        if notice:
            self._notice(call, notice)
        self._requested = parse_spec(name)
        return self._requested

    def dim(self, call: WriteCall | None = None) -> int:
        manifest = self._folder.manifest
        if manifest:
            return int(manifest["model"]["embed_dim"])
        return self.encoder(call).embed_dim

    def precision(self, call: WriteCall | None = None) -> str | None:
        """fp32 or int8: what the run asked for, else what the store holds; None for a new store (the default).
        A store never mixes the two."""
        manifest = self._folder.manifest
        stored = stored_precision(manifest) if manifest else None
        if call is None or call.int8 is None:
            return stored
        wanted = "int8" if call.int8 else "fp32"
        if stored is not None and stored != wanted:
            raise ModelMismatchError(
                f"int8 embeddings would mix with the {stored} ones store {self._folder.path} holds"
                if wanted == "int8" else
                f"fp32 embeddings would mix with the int8 ones store {self._folder.path} holds",
                f"index {'without' if wanted == 'int8' else 'with'} int8 (the store's precision), or into a new store",
                param="int8")
        return wanted

    # --- encoders --------------------------------------------------------------------------------------
    @property
    def loaded(self) -> LoadedEncoder | None:
        """The image encoder this process holds now, if any."""
        return self._encoder

    def adopt(self, encoder: LoadedEncoder | None, precision: str) -> None:
        """Take an encoder already loaded elsewhere (a re-embed's old store) when it is this store's model at
        `precision`: no second load."""
        if encoder is not None and encoder.spec.key == self.spec().key and encoder.precision == precision:
            self._encoder = encoder

    def encoder(self, call: WriteCall | None = None) -> LoadedEncoder:
        """The image encoder (ONNX Runtime or torch, see the factory), at the store's precision, or at the one
        `call` asks for (an encoder loaded for a query at another precision is replaced)."""
        wanted = self.precision(call)
        if self._encoder is not None and call is not None and wanted is not None \
                and self._encoder.precision != wanted:
            self._encoder = None
        if self._encoder is None:
            from clipsearch.encoders.factory import load_image_encoder

            spec = self.spec(call)
            self._stage(call, f"loading model {spec.text}")
            encoder = load_image_encoder(spec, backend=self._backend, precision=wanted, device=self._device,
                                         stored=call is not None, stage=lambda m: self._stage(call, m),
                                         notice=lambda m: self._notice(call, m))
            manifest = self._folder.manifest
            if manifest and encoder.embed_dim != self.dim():
                raise ModelMismatchError(f"model {spec.text} makes {encoder.embed_dim}-d embeddings but store "
                                         f"{self._folder.path} holds {self.dim()}-d ones", "index into a new store")
            self._encoder = encoder
        return self._encoder

    def for_run(self, call: WriteCall, catalog_record: dict[str, str] | None) -> LoadedEncoder:
        """The encoder for an index run. The first write records the model in the manifest (with
        `catalog_record`, where a database holds the catalog). The text tower stays in the export cache, one
        per model; only a model that runs on torch (no export) gets its NumPy tower written there now."""
        encoder = self.encoder(call)
        if self._folder.manifest is None:
            self._folder.record(new_manifest(encoder.describe(), catalog_record, runs_on(encoder)))
        from clipsearch.encoders.text_runtime import text_tower_dir

        spec = encoder.spec
        if getattr(encoder, "backend", "") == "torch" and text_tower_dir(spec, spec.key) is None:
            from clipsearch.encoders.onnx_encoder import TEXT_DIR, export_dir
            from clipsearch.encoders.text_export import export_text_tower

            target = export_dir(spec.cache_key) / TEXT_DIR
            target.parent.mkdir(parents=True, exist_ok=True)
            export_text_tower(cast("Encoder", encoder), target)
        return encoder

    def _spec_if_known(self) -> ModelSpec | None:
        """The store's model spec, or None where it cannot be read now (a model folder moved away)."""
        from clipsearch.errors import ModelUnavailableError

        try:
            return self.spec()
        except ModelUnavailableError:
            return None

    def text_encoder(self) -> Any:
        """The text encoder without torch when a text tower of the store's model is at hand (the export cache's,
        or the copy a store written before kept in its folder), else the model.

        Cold (a CLI query) it is the NumPy tower; warm (`warm_text_queries`, as a server) ONNX Runtime; both give
        the same embeddings (`encoders/factory.py`). Once loaded it keeps answering text even after the image
        model is loaded (as a server does for image queries), so text latency does not change over a long-running
        process."""
        if self._fast_text is not None:
            return self._fast_text
        manifest = self._folder.manifest
        if manifest and getattr(self._encoder, "backend", "onnx") != "torch":
            from clipsearch.encoders.text_runtime import load_text_encoder, text_tower_dir

            key = manifest["model"]["key"]
            spec = self._spec_if_known()
            folder = text_tower_dir(spec, key, self._folder.path / TEXT_ENCODER_DIR)
            if folder is not None:
                self._fast_text = load_text_encoder(folder, key, warm=self._warm_text is not None,
                                                    threads=self._warm_text, spec=spec)
            if self._fast_text is not None:
                if self._warm_text is not None:
                    from clipsearch.encoders.numpy_text import CoalescingTextEncoder
                    from clipsearch.encoders.recent_texts import RecentTexts

                    self._fast_text = RecentTexts(CoalescingTextEncoder(self._fast_text))
                return self._fast_text
        return self.encoder()

    def warm_text_queries(self, threads: int = 1) -> None:
        """From now on text queries run as in a long-running process: the text tower on ONNX Runtime with
        `threads` each, concurrent queries sharing packed passes (`CoalescingTextEncoder`), and the texts asked
        for last answered from memory (`RecentTexts`)."""
        if self._warm_text != threads:
            self._warm_text = threads
            self._fast_text = None

    def loaded_towers(self) -> dict[str, bool]:
        """Which encoders this process holds now: `text` (a text tower or model), `images` (the model)."""
        return {"text": self._fast_text is not None or self._encoder is not None, "images": self._encoder is not None}
