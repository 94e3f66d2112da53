"""Encoding on a Ray cluster: the work list goes out in shards to actors that load the model once; the
(path facts, digest, embedding) results stream back to this process, the single writer, which commits them.
In a store that reads text, the actors also read the text of the files they encode (RapidOCR loaded once per
actor; `text_stage.read_still`, as the local stage reads it) and send the lines back with the embeddings; the
run's text stage commits them with the rows (a file an actor could not read is read by the stage).

Ray Data carries the work: a dataset with one row per encoder batch (the batches a run in this process would
make, so int8's per-batch activation scales, and therefore the embeddings, are the same), split into shards
(blocks), mapped by `map_batches` over a pool of `_EncodeActor`s — a callable class that loads the store's
model with its backend and precision once per actor, then reads, hashes, decodes (threads) and encodes the
files of each batch. The outputs come back in order (so rows get the ids a local run gives them) and go to the
pipeline's `ChunkWriter`; nothing is written on the workers. Paths must resolve on every worker: a shared
filesystem mounted at the same place. Ray is imported only here, only when a pool is used.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from clipsearch.catalog.codec import lines_from_json
from clipsearch.catalog.records import PhotoMeta, TextLine, TextTask
from clipsearch.errors import ClipsearchError

if TYPE_CHECKING:  # pragma: no cover
    from clipsearch.catalog.records import Known
    from clipsearch.encoders.base import ImageEncoder
    from clipsearch.encoders.factory import LoadedEncoder
    from clipsearch.indexing.scan import FileFacts
    from clipsearch.indexing.writer import ChunkWriter

INSTALL_HINT = 'install Ray with: pip install "clipsearch[ray]"'
BATCHES_PER_SHARD = 4  # encoder batches per shard: small enough to balance actors and stream results back
TEXTS_PER_CALL = 4  # images an OCR actor reads per call (~1 s each): results stream back, progress moves
TEXTS_PER_SHARD = 16
CHANGED = "changed"  # an actor's text column: the file no longer holds the content its row was made from
OK, FAILED, SAME = 0, 1, 2  # what became of a file on a worker


@dataclass(frozen=True)
class EncoderRecipe:
    """What an actor needs to load exactly the encoder this process uses (plain data, pickled to the workers)."""
    spec: str
    key: str  # the export cache key (ModelSpec.cache_key)
    backend: str  # onnx | torch
    precision: str  # fp32 | int8
    device: str | None  # as the store was opened; None: a GPU when Ray gave the actor one, else the CPU
    export_dir: str | None  # this machine's export folder: used by a worker whose own cache lacks the export

    @classmethod
    def of(cls, encoder: Any, device: str | None) -> EncoderRecipe:
        export = getattr(encoder, "export", None)
        return cls(encoder.spec.text, encoder.spec.cache_key, encoder.backend, encoder.precision, device,
                   str(export.folder) if export is not None else None)

    def load(self, device: str | None, threads: int | None) -> LoadedEncoder:
        """The encoder, from the encoder factory as the store loads it; a worker never exports a model: it
        finds the export in its own cache or in this machine's (`export_dir`, on a shared filesystem)."""
        import socket

        from clipsearch.encoders.factory import load_image_encoder
        from clipsearch.encoders.spec import parse_spec

        spec = parse_spec(self.spec)
        host = socket.gethostname()
        if spec.cache_key != self.key:
            raise ClipsearchError(f"worker {host} reads model {self.spec} as another model than the driver does",
                                  "give the workers the same model files at the same path")

        def missing() -> ClipsearchError:
            return ClipsearchError(f"worker {host} has no ONNX export of {self.spec}",
                                   f"share the export cache folder ({self.export_dir}) with the workers at the same "
                                   "path, or point CLIPSEARCH_CACHE on each worker at a copy of it")

        return load_image_encoder(spec, backend=self.backend, precision=self.precision, device=device,
                                  threads=threads, export_dir=Path(self.export_dir) if self.export_dir else None,
                                  missing_export=missing)


class _EncodeActor:
    """A Ray Data callable class: one per actor, the model loaded once in `__init__`, one batch per call."""

    recipe: EncoderRecipe  # set on a subclass made per run (`RayPool._run`): no constructor arguments
    read_text: bool = False  # also read the text of what it encodes (set with the recipe)

    def __init__(self) -> None:
        import ray

        recipe = self.recipe
        gpus = ray.get_gpu_ids()
        cpus = ray.get_runtime_context().get_assigned_resources().get("CPU") or 1
        device = recipe.device or ("cuda" if gpus else "cpu")
        self.threads = max(1, int(cpus))
        self.encoder = recipe.load(device, self.threads)
        self.decoders = ThreadPoolExecutor(max_workers=max(2, self.threads), thread_name_prefix="clipsearch-decode")
        self.reader: Any = None
        if self.read_text:
            from clipsearch.ocr.reader import TextReader, check_available

            check_available()  # a worker without the OCR extra fails the run with the fix, as the driver would
            self.reader = TextReader(threads=self.threads)

    def __call__(self, rows: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from clipsearch.media.images import DecodeError, read_and_decode

        size, mode, dim = self.encoder.image_size, self.encoder.resize_mode, self.encoder.embed_dim
        index: list[int] = []
        encode_at: list[int] = []
        pixels: list[np.ndarray] = []
        columns: tuple[list[Any], ...] = ([], [], [], [], [], [], [], [])  # what became of each file
        status, digest, width, height, fmt, error, hashes, meta = columns

        def one(path: str) -> Any:
            try:
                return read_and_decode(path, size, mode)
            except DecodeError as exc:
                return exc

        # one row: one encoder batch
        for first, paths, known in zip(rows["first"], rows["paths"], rows["known"], strict=False):
            for i, result in enumerate(self.decoders.map(one, list(paths))):
                index.append(int(first) + i)
                if isinstance(result, DecodeError):
                    facts: tuple[int, str, int, int, str, str, bytes, str] = (FAILED, "", 0, 0, "", str(result), b"",
                                                                              "")
                else:
                    dig, dec = result
                    same = dig == known[i]
                    facts = (SAME if same else OK, dig, dec.width, dec.height, dec.format or "", "", dec.hashes or b"",
                             json.dumps(dataclasses.astuple(dec.meta)))
                    if not same:
                        encode_at.append(len(index) - 1)
                        pixels.append(dec.pixels)
                for column, value in zip(columns, facts, strict=True):
                    column.append(value)
        vectors = np.zeros((len(index), dim), dtype=np.float32)
        if pixels:
            vectors[encode_at] = self.encoder.encode_images(np.stack(pixels))
        texts = [""] * len(index)  # "": not read here
        if self.reader is not None:
            paths = [str(p) for ps in rows["paths"] for p in ps]
            for at in encode_at:
                texts[at] = self._text(paths[at], digest[at])
        return {"index": np.asarray(index, dtype=np.int64), "status": np.asarray(status, dtype=np.int8),
                "digest": np.asarray(digest, dtype=object), "width": np.asarray(width, dtype=np.int64),
                "height": np.asarray(height, dtype=np.int64), "format": np.asarray(fmt, dtype=object),
                "error": np.asarray(error, dtype=object), "hashes": np.asarray(hashes, dtype=object),
                "meta": np.asarray(meta, dtype=object), "vector": vectors, "text": np.asarray(texts, dtype=object)}

    def _text(self, path: str, digest: str) -> str:
        text = read_text_here(self.reader, path, digest)
        return "" if text == CHANGED else text  # changed since it was decoded: the driver's stage sees it


class _TextActor:
    """A Ray Data callable class reading the text of catalogued still images: RapidOCR loaded once per actor."""

    def __init__(self) -> None:
        import ray

        from clipsearch.ocr.reader import TextReader, check_available

        check_available()
        cpus = ray.get_runtime_context().get_assigned_resources().get("CPU") or 1
        self.reader = TextReader(threads=max(1, int(cpus)))

    def __call__(self, rows: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        texts = [read_text_here(self.reader, str(p), str(d)) for p, d in zip(rows["path"], rows["digest"], strict=True)]
        return {"id": np.asarray(rows["id"], dtype=np.int64), "text": np.asarray(texts, dtype=object)}


def read_text_here(reader: Any, path: str, digest: str) -> str:
    """On an actor: the lines of text in one file as JSON (`lines_to_json`); CHANGED when the file no longer holds
    `digest`; "" when they could not be read here (the driver's text stage then reads the file, and reports a
    failure the way a local run does)."""
    from clipsearch.catalog.codec import lines_to_json
    from clipsearch.indexing.text_stage import read_still
    from clipsearch.ocr.reader import DRAFT_TO

    try:
        lines = read_still(path, digest, reader.read, DRAFT_TO)
    except Exception:  # noqa: BLE001 - unreadable file or a model refusing it: left to the driver's stage
        return ""
    return CHANGED if lines is None else lines_to_json((line.text, line.box) for line in lines)


class RayPool:
    """An `EncodePool` on Ray: `Store.add(..., ray_address=...)` builds one.

    `address`: None starts Ray on this machine (or joins the cluster that RAY_ADDRESS names); "auto" joins the
    cluster running here (`ray start --head`); "HOST:PORT" or "ray://HOST:PORT" joins that cluster. A Ray
    already initialised in this process is used as it is. `actors` defaults to one per GPU when the cluster has
    GPUs (each actor then holds one), else one per `cpus_per_actor` CPUs (default: min(4, the cluster's CPUs)).
    """

    def __init__(self, address: str | None = None, actors: int | None = None, cpus_per_actor: float | None = None,
                 gpus_per_actor: float | None = None) -> None:
        self.address = address
        self.actors = actors
        self.cpus_per_actor = cpus_per_actor
        self.gpus_per_actor = gpus_per_actor
        self._device: str | None = None

    def for_device(self, device: str | None) -> RayPool:
        """The device the store was opened with (None: each actor uses a GPU when Ray gave it one)."""
        self._device = device
        return self

    def encode(self, items: list[tuple[FileFacts, Known | None]], encoder: ImageEncoder, batch_size: int,
               writer: ChunkWriter, read_text: bool = False) -> None:
        with self._session() as ray:
            self._run(ray, items, encoder, batch_size, writer, read_text)

    def read_texts(self, tasks: list[TextTask], deliver: Callable[[list[TextTask]], None]) -> None:
        """Read the text of still images already in the catalog (rows earlier runs left unread) on actors that
        load only RapidOCR; each result goes to `deliver` as the task with its `lines` (None: the actor could not
        read it, the driver will). A file whose content changed since its row was written is dropped (the run
        that encodes it reads it)."""
        with self._session() as ray:
            self._run_texts(ray, tasks, deliver)

    @contextmanager
    def _session(self) -> Iterator[Any]:
        """Ray, connected (or started here, and shut down afterwards), with Ray Data's terminal output off."""
        unreachable = _unreachable(self.address)  # before importing Ray (seconds): it retries for minutes
        if unreachable:
            raise ClipsearchError(f"cannot reach the Ray cluster at {self.address}: {unreachable}",
                                  "check the address (ray start --head prints it) and that the head is running",
                                  param="ray_address")
        ray = _import_ray()
        started_here = self._connect(ray)
        from ray.data import DataContext

        context = DataContext.get_current()
        saved = (context.execution_options.preserve_order, context.enable_progress_bars)
        context.enable_progress_bars = False  # the caller shows progress
        data_log = logging.getLogger("ray.data")
        level = data_log.level
        data_log.setLevel(logging.ERROR)  # execution plans and timings at INFO: not for a user's terminal
        try:
            yield ray
        except Exception as exc:
            if not _from_ray(exc):
                raise  # e.g. the writer's own errors
            raise _as_clipsearch_error(exc) from None
        finally:
            context.execution_options.preserve_order, context.enable_progress_bars = saved
            data_log.setLevel(level)
            if started_here:
                ray.shutdown()

    def _connect(self, ray: Any) -> bool:
        if ray.is_initialized():
            return False
        local = self.address is None and not os.environ.get("RAY_ADDRESS")
        extra = {"_temp_dir": short_temp_dir()} if local and short_temp_dir() else {}
        try:
            ray.init(address=self.address, logging_level=logging.ERROR, log_to_driver=False, include_dashboard=False,
                     **extra)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            where = self.address or os.environ.get("RAY_ADDRESS") or "this machine"
            raise ClipsearchError(f"cannot start or reach Ray at {where}: {_first_line(exc)}",
                                  "check the address (the head prints it on ray start --head), or leave it out to "
                                  "run Ray on this machine", param="ray_address") from None
        return True

    def _resources(self, ray: Any) -> tuple[int, dict[str, float]]:
        cluster = ray.cluster_resources()
        cpus, gpus = float(cluster.get("CPU", 1)), float(cluster.get("GPU", 0))
        gpus_each = self.gpus_per_actor if self.gpus_per_actor is not None else (1.0 if gpus >= 1 else 0.0)
        if self._device == "cpu":
            gpus_each = 0.0
        if gpus_each > 0:
            cpus_each = self.cpus_per_actor or max(1.0, min(4.0, cpus // max(gpus, 1)))
            actors = self.actors or max(1, int(gpus // gpus_each))
        else:
            cpus_each = self.cpus_per_actor or min(4.0, cpus)
            actors = self.actors or max(1, int(cpus // cpus_each))
        return actors, {"num_cpus": cpus_each, "num_gpus": gpus_each}

    def _run(self, ray: Any, items: list[tuple[FileFacts, Known | None]], encoder: ImageEncoder,
             batch_size: int, writer: ChunkWriter, read_text: bool = False) -> None:
        from ray.data import DataContext

        rows = [{"first": i, "paths": [f.path for f, _k in items[i:i + batch_size]],
                 "known": [(k.digest or "") if k is not None and k.ok and k.has_vector else ""
                           for _f, k in items[i:i + batch_size]]}
                for i in range(0, len(items), batch_size)]
        actors, resources = self._resources(ray)
        DataContext.get_current().execution_options.preserve_order = True  # commit in order: a local run's ids
        ds = ray.data.from_items(rows, override_num_blocks=max(1, -(-len(rows) // BATCHES_PER_SHARD)))
        actor = type("EncodeActor", (_EncodeActor,), {"recipe": EncoderRecipe.of(encoder, self._device),
                                                      "read_text": read_text})
        ds = ds.map_batches(actor,
                            batch_size=1, batch_format="numpy", **resources,
                            # two calls at once per actor: one decodes while the other encodes
                            compute=ray.data.ActorPoolStrategy(size=actors, max_concurrent_calls_per_actor=2))
        for out in ds.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=2):
            self._deliver(out, items, writer)

    def _run_texts(self, ray: Any, tasks: list[TextTask], deliver: Callable[[list[TextTask]], None]) -> None:
        cpus = float(ray.cluster_resources().get("CPU", 1))
        cpus_each = self.cpus_per_actor or min(4.0, cpus)  # RapidOCR runs on CPUs: no GPU is asked for
        actors = self.actors or max(1, int(cpus // cpus_each))
        rows = [{"id": t.id, "path": t.path, "digest": t.digest} for t in tasks]
        by_id = {t.id: t for t in tasks}
        ds = ray.data.from_items(rows, override_num_blocks=max(1, -(-len(rows) // TEXTS_PER_SHARD)))
        ds = ds.map_batches(_TextActor, batch_size=TEXTS_PER_CALL, batch_format="numpy", num_cpus=cpus_each,
                            num_gpus=0, compute=ray.data.ActorPoolStrategy(size=actors))
        for out in ds.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=2):
            deliver([replace(by_id[int(i)], lines=_lines(text))
                     for i, text in zip(out["id"], out["text"], strict=True) if str(text) != CHANGED])

    @staticmethod
    def _deliver(out: dict[str, np.ndarray], items: list[tuple[FileFacts, Known | None]],
                 writer: ChunkWriter) -> None:
        for j, i in enumerate(out["index"]):
            facts, known = items[int(i)]
            status = int(out["status"][j])
            if status == FAILED:
                writer.failed(facts, known, str(out["error"][j]))
            elif status == SAME and known is not None:
                writer.unchanged(facts, known, bytes(out["hashes"][j]) or None, _meta(out["meta"][j]))
            else:
                writer.encoded(facts, known, str(out["digest"][j]), int(out["width"][j]), int(out["height"][j]),
                               str(out["format"][j]), np.asarray(out["vector"][j], dtype=np.float32),
                               bytes(out["hashes"][j]) or None, _meta(out["meta"][j]), _lines(out["text"][j]))


def _meta(column: Any) -> PhotoMeta:
    """An actor's photo metadata (JSON of the record's fields, in order) back into the record."""
    return PhotoMeta(*json.loads(str(column)))


def _lines(column: Any) -> tuple[TextLine, ...] | None:
    """An actor's text (`lines_to_json`; "": not read there) back into lines."""
    text = str(column)
    return tuple(TextLine(t, box) for t, box in lines_from_json(text)) if text else None


def _unreachable(address: str | None) -> str | None:
    """Why HOST:PORT (or ray://HOST:PORT) refuses a TCP connection, checked in seconds: Ray itself retries an
    unreachable head for minutes. None when it answers, or for None / "auto" (Ray finds those itself)."""
    import socket

    if not address or address == "auto":
        return None
    host, _, port = address.split("://", 1)[-1].rpartition(":")
    if not host or not port.isdigit():
        return "not HOST:PORT"
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=5).close()
    except OSError as exc:
        return exc.strerror or str(exc) or type(exc).__name__
    return None


def _import_ray() -> Any:
    try:
        import ray
        import ray.data  # noqa: F401 - the Data library is the [data] extra of ray
    except ImportError:
        raise ClipsearchError("Ray (with Ray Data) is not installed", INSTALL_HINT, param="ray_address") from None
    return ray


def _from_ray(exc: BaseException) -> bool:
    return any(t.__module__.split(".")[0] == "ray" for t in type(exc).__mro__)


def _chain(exc: BaseException) -> list[BaseException]:
    """The exception and what it wraps: Ray's `cause`, then Python's `__cause__` / `__context__`."""
    seen = [exc]
    while len(seen) < 10:
        last = seen[-1]
        nxt = getattr(last, "cause", None) or last.__cause__ or last.__context__
        if not isinstance(nxt, BaseException) or nxt in seen:
            break
        seen.append(nxt)
    return seen


def _as_clipsearch_error(exc: BaseException) -> ClipsearchError:
    """One line for what went wrong on a worker. A ClipsearchError raised there comes back as itself inside
    Ray's wrappers, or, when the actor died in `__init__` (e.g. no model export), only as text in Ray's message."""
    chain = _chain(exc)
    for e in chain:
        if isinstance(e, ClipsearchError) and getattr(e, "message", None):
            return ClipsearchError(e.message, e.hint, e.param or "ray_address")
    for e in chain:
        for line in str(e).splitlines():
            if "ClipsearchError: " in line:
                return ClipsearchError(f"a Ray worker failed: {line.split('ClipsearchError: ', 1)[1].strip()}",
                                       "fix it on the workers and run again; what was committed so far is kept",
                                       param="ray_address")
    told = next((e for e in chain if str(e).strip()), exc)
    return ClipsearchError(f"encoding on Ray failed: {_first_line(told)}",
                           "run again with CLIPSEARCH_DEBUG=1 and read the worker's log (ray logs); what was "
                           "committed so far is kept", param="ray_address")


# Ray puts Unix sockets under its temp dir (…/ray/session_<date>_<pid>/sockets/plasma_store: ~75 bytes past it),
# and a socket path cannot exceed 107 bytes.
_RAY_SOCKET_TAIL = 80
_UNIX_PATH_MAX = 107


def short_temp_dir() -> str | None:
    """A temp dir for a Ray started here when the default one (RAY_TMPDIR, else TMPDIR) would make its socket
    paths too long for the system (a long TMPDIR, as on CI runners); None when the default fits."""
    import tempfile

    base = os.environ.get("RAY_TMPDIR") or tempfile.gettempdir()
    if len(os.path.join(base, "ray")) + _RAY_SOCKET_TAIL <= _UNIX_PATH_MAX:
        return None
    return os.path.join("/tmp", f"ray-{os.getuid()}")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
