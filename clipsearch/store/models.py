"""A store's model: which one, at which precision, on which backend, and its loaded encoders.

A store holds embeddings of one model at one precision (fp32 or int8: they rank alike, not identically), so
these rules live in one place: the model a new store defaults to (with a notice), the precision an index run
may write (a mismatch is a ModelMismatchError before anything is scanned), the image encoder from the
encoder factory, the model recorded in the manifest on the first write (after the model loaded, so a failed
load leaves no half store), and the text tower a store keeps for cold queries without torch (the NumPy tower,
copied from the export cache or exported from the torch model).

What one index run asks for (its `int8`, where its stages and notices go) is a `WriteCall` handed down with
each call, never state on the store.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from clipsearch.encoders.base import runs_on
from clipsearch.encoders.spec import ModelSpec, parse_spec
from clipsearch.errors import ModelMismatchError
from clipsearch.store.manifest import TEXT_ENCODER_DIR, new_manifest, precision as stored_precision

if TYPE_CHECKING:  # pragma: no cover
    from clipsearch.encoders.factory import LoadedEncoder
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
            return parse_spec(manifest["model"]["spec"])
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
        `catalog_record`, where a database holds the catalog), and the store gets its text tower."""
        from clipsearch.encoders.numpy_text import stored_key
        from clipsearch.encoders.onnx_encoder import OnnxImageEncoder

        encoder = self.encoder(call)
        if self._folder.manifest is None:
            self._folder.record(new_manifest(encoder.describe(), catalog_record, runs_on(encoder)))
        folder = self._folder.path / TEXT_ENCODER_DIR
        if stored_key(folder) != encoder.spec.key:
            if isinstance(encoder, OnnxImageEncoder):
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
        manifest = self._folder.manifest
        if self._encoder is None and manifest:
            from clipsearch.encoders.numpy_text import NumpyTextEncoder

            self._fast_text = NumpyTextEncoder.load(self._folder.path / TEXT_ENCODER_DIR, manifest["model"]["key"])
            if self._fast_text is not None:
                return self._fast_text
        return self.encoder()

    def coalesce_text_queries(self) -> None:
        """Concurrent text queries share packed passes of the NumPy text tower from now on."""
        from clipsearch.encoders.numpy_text import CoalescingTextEncoder, NumpyTextEncoder

        encoder = self.text_encoder()
        if isinstance(encoder, NumpyTextEncoder):
            self._fast_text = CoalescingTextEncoder(encoder)

    def loaded_towers(self) -> dict[str, bool]:
        """Which encoders this process holds now: `text` (NumPy tower or model), `images` (the model)."""
        return {"text": self._fast_text is not None or self._encoder is not None, "images": self._encoder is not None}
