"""Published ONNX exports as model sources: immich's Hugging Face repositories, rclip's, or a folder in either
layout. They run on ONNX Runtime with no torch, so a torch-free install (`clipsearch[cpu]`) gets real models.

Specs (parsed by `spec.parse_spec`):

* ``immich:NAME`` – the repository ``immich-app/NAME`` (one per model: ``ViT-B-32__openai``, the multilingual
  ``XLM-Roberta-Large-Vit-B-32`` or ``nllb-clip-base-siglip__v1``, ...). Its layout::

      config.json                      open_clip's model config (embed_dim, vision_cfg, text_cfg.context_length)
      visual/model.onnx                "image": float32 NCHW, normalised per preprocess_cfg → "embedding"
      visual/preprocess_cfg.json       size, mean, std, interpolation, resize_mode
      textual/model.onnx               "text": int32 token ids, padded with the pad token (M-CLIP: "input_ids" and
                                       "attention_mask") → "embedding"
      textual/tokenizer.json, tokenizer_config.json (pad_token), special_tokens_map.json
      visual/fp16/..., rknpu/...       other runtimes' variants, never downloaded

* ``rclip:ViT-B-32-256`` – rclip 3's model, ``yurijmikhalevich/rclip-models``: ``ViT-B-32-256-datacomp_s34b_b86k/
  visual.onnx`` ("input": float NCHW at 256 px, CLIP's mean and std) and ``textual.onnx`` ("input": int64 ids,
  zero-padded to 77, open_clip's BPE from ``tokenizer/bpe_simple_vocab_16e6.txt.gz``).
* a folder holding either layout (immich's ``config.json`` + ``visual/`` + ``textual/``, or ``visual.onnx`` +
  ``textual.onnx`` with the BPE vocabulary in ``tokenizer/`` beside or above them).

Identity: a hub spec is pinned to the repository's commit (``immich:NAME@REVISION``, the text a store records: a
git commit names every file's content), resolved from the local hub cache, or by downloading once; a folder's
key is a fingerprint of its files. Either way a store refuses embeddings of other files.

The files are made into an entry of the export cache (`onnx_encoder`) without torch: the visual model is linked as
``image.onnx`` (so int8 quantisation works as for any model), its input described in ``meta.json``, and the text
tower (`onnx_text`) set up in ``text_encoder/``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clipsearch.errors import ClipsearchError, ModelUnavailableError

if TYPE_CHECKING:  # pragma: no cover
    from clipsearch.encoders.model_spec import ModelSpec
    from clipsearch.encoders.onnx_encoder import Export

KIND = "published"
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
BPE_VOCAB = "bpe_simple_vocab_16e6.txt.gz"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}")
_REVISION = re.compile(r"[0-9a-f]{40}")


@dataclass(frozen=True)
class Layout:
    """Where a layout keeps its files, relative to the model's folder."""
    name: str  # "immich" or "rclip"
    visual: str
    textual: str
    needed: tuple[str, ...]  # besides the two models


IMMICH = Layout("immich", "visual/model.onnx", "textual/model.onnx",
                ("config.json", "visual/preprocess_cfg.json", "textual/tokenizer.json",
                 "textual/tokenizer_config.json"))
RCLIP = Layout("rclip", "visual.onnx", "textual.onnx", ())


@dataclass(frozen=True)
class Source:
    """A publisher: the spec prefix, how a name becomes a repository (and a folder inside it), the layout."""
    prefix: str
    layout: Layout

    def repo(self, name: str) -> tuple[str, str]:
        """(repository id, the model's folder inside it: '' for its root)."""
        if self.prefix == "immich":
            return f"immich-app/{name}", ""
        return RCLIP_REPO, RCLIP_MODELS[name]

    def patterns(self, name: str) -> list[str]:
        """The files to download: the two models (with any external weights) and what reads them, never the
        other runtimes' variants (fp16, ArmNN, RKNN)."""
        _repo, sub = self.repo(name)
        at = f"{sub}/" if sub else ""
        if self.layout is RCLIP:
            return [f"{at}visual.onnx*", f"{at}textual.onnx*", f"tokenizer/{BPE_VOCAB}"]
        return [f"{at}visual/model.onnx*", f"{at}textual/model.onnx*", f"{at}config.json", f"{at}visual/*.json",
                f"{at}textual/*.json", f"{at}textual/*.txt", f"{at}textual/*.model"]


RCLIP_REPO = "yurijmikhalevich/rclip-models"
RCLIP_MODELS = {"ViT-B-32-256": "ViT-B-32-256-datacomp_s34b_b86k"}
SOURCES = {"immich": Source("immich", IMMICH), "rclip": Source("rclip", RCLIP)}

# immich's CLIP repositories (immich-app/NAME), as its ML service names them: `clipsearch models` lists them
IMMICH_MODELS = (
    "RN101__openai", "RN101__yfcc15m", "RN50__cc12m", "RN50__openai", "RN50__yfcc15m", "RN50x16__openai",
    "RN50x4__openai", "RN50x64__openai", "ViT-B-16-SigLIP-256__webli", "ViT-B-16-SigLIP-384__webli",
    "ViT-B-16-SigLIP-512__webli", "ViT-B-16-SigLIP-i18n-256__webli", "ViT-B-16-SigLIP__webli",
    "ViT-B-16-plus-240__laion400m_e31", "ViT-B-16-plus-240__laion400m_e32", "ViT-B-16__laion400m_e31",
    "ViT-B-16__laion400m_e32", "ViT-B-16__openai", "ViT-B-32__laion2b-s34b-b79k", "ViT-B-32__laion2b_e16",
    "ViT-B-32__laion400m_e31", "ViT-B-32__laion400m_e32", "ViT-B-32__openai", "ViT-H-14-378-quickgelu__dfn5b",
    "ViT-H-14-quickgelu__dfn5b", "ViT-H-14__laion2b-s32b-b79k", "ViT-L-14-336__openai", "ViT-L-14-quickgelu__dfn2b",
    "ViT-L-14__laion2b-s32b-b82k", "ViT-L-14__laion400m_e31", "ViT-L-14__laion400m_e32", "ViT-L-14__openai",
    "ViT-L-16-SigLIP-256__webli", "ViT-L-16-SigLIP-384__webli", "ViT-SO400M-14-SigLIP-384__webli",
    "ViT-g-14__laion2b-s12b-b42k", "XLM-Roberta-Base-ViT-B-32__laion5b_s13b_b90k",
    "XLM-Roberta-Large-ViT-H-14__frozen_laion5b_s13b_b90k", "nllb-clip-base-siglip__mrl",
    "nllb-clip-base-siglip__v1", "nllb-clip-large-siglip__mrl", "nllb-clip-large-siglip__v1",
    "ViT-B-16-SigLIP2__webli", "ViT-B-32-SigLIP2-256__webli", "ViT-L-16-SigLIP2-256__webli",
    "ViT-L-16-SigLIP2-384__webli", "ViT-L-16-SigLIP2-512__webli", "ViT-SO400M-14-SigLIP2-378__webli",
    "ViT-SO400M-14-SigLIP2__webli", "ViT-SO400M-16-SigLIP2-256__webli", "ViT-SO400M-16-SigLIP2-384__webli",
    "ViT-SO400M-16-SigLIP2-512__webli", "ViT-gopt-16-SigLIP2-256__webli", "ViT-gopt-16-SigLIP2-384__webli",
    # M-CLIP: a multilingual text tower (XLM-R, LaBSE) beside an open_clip image tower
    "LABSE-Vit-L-14", "XLM-Roberta-Large-Vit-B-16Plus", "XLM-Roberta-Large-Vit-B-32", "XLM-Roberta-Large-Vit-L-14",
)


# --- specs -----------------------------------------------------------------------------------------------------
def parse_hub(text: str) -> ModelSpec | None:
    """`immich:NAME[@REVISION]` or `rclip:NAME[@REVISION]` → its spec pinned to a revision (resolved from the hub
    cache, else downloaded); None for any other text."""
    prefix, sep, rest = text.partition(":")
    source = SOURCES.get(prefix)
    if not sep or source is None:
        return None
    name, _at, revision = rest.partition("@")
    if not _NAME.fullmatch(name):
        raise ModelUnavailableError(f"bad model name {name[:60]!r} in {text[:80]!r}",
                                    f"use {prefix}:NAME, e.g. {example(prefix)}")
    if source.layout is RCLIP and name not in RCLIP_MODELS:
        raise ModelUnavailableError(f"rclip publishes no model {name!r}",
                                    f"use one of {', '.join('rclip:' + n for n in RCLIP_MODELS)}")
    if revision and not _REVISION.fullmatch(revision):
        raise ModelUnavailableError(f"revision {revision[:60]!r} in {text[:80]!r} is not a commit hash",
                                    f"use {prefix}:{name} (the cached or newest revision) or a 40-digit commit")
    if not revision:
        revision = resolve_revision(source, name)
    return _hub_spec(source, name, revision)


def example(prefix: str) -> str:
    return "immich:ViT-B-32__openai" if prefix == "immich" else "rclip:ViT-B-32-256"


def _hub_spec(source: Source, name: str, revision: str) -> ModelSpec:
    from clipsearch.encoders.model_spec import ModelSpec

    repo, sub = source.repo(name)
    text = f"{source.prefix}:{name}@{revision}"
    return ModelSpec(text=text, kind=KIND, arch=name, pretrained=repo, key=text,
                     extra={"layout": source.layout.name, "repo": repo, "subdir": sub, "revision": revision,
                            "source": source.prefix})


def folder_layout(folder: Path) -> Layout | None:
    """The published layout `folder` holds (immich's or rclip's), or None."""
    for layout in (IMMICH, RCLIP):
        if (folder / layout.visual).is_file() and (folder / layout.textual).is_file():
            return layout
    return None


def parse_folder(folder: Path, layout: Layout) -> ModelSpec:
    """A local folder in `layout`: keyed by a fingerprint of its files (size, head and tail of each)."""
    from clipsearch.encoders.model_spec import ModelSpec, file_fingerprint

    folder = folder.resolve()
    files = _layout_files(folder, layout)
    digest = hashlib.sha256()
    for rel, path in sorted(files.items()):
        digest.update(f"{rel}={file_fingerprint(path)};".encode())
    name = folder.name
    return ModelSpec(text=str(folder), kind=KIND, arch=name, folder=folder,
                     key=f"{layout.name}-folder:{digest.hexdigest()[:16]}",
                     extra={"layout": layout.name, "source": "folder"})


def _layout_files(folder: Path, layout: Layout) -> dict[str, Path]:
    """The files a model in `layout` at `folder` is read from, by their name in the layout; a clear error for
    one that is missing."""
    files = {name: folder / name for name in (layout.visual, layout.textual, *layout.needed)}
    if layout is RCLIP:
        vocab = next((p for p in (folder / "tokenizer" / BPE_VOCAB, folder.parent / "tokenizer" / BPE_VOCAB,
                                  folder / BPE_VOCAB) if p.is_file()), None)
        if vocab is None:
            raise ModelUnavailableError(f"{folder} has rclip's layout but no tokenizer/{BPE_VOCAB} beside or above it",
                                        "copy rclip's tokenizer folder next to the model files")
        files[BPE_VOCAB] = vocab
    missing = [name for name, path in files.items() if not path.is_file()]
    if missing:
        raise ModelUnavailableError(f"{folder} lacks {', '.join(missing)} of {layout.name}'s layout",
                                    "download the model's repository again")
    return files


# --- the hub cache -------------------------------------------------------------------------------------------
def _cache_repo(repo: str) -> Path:
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE) / f"models--{repo.replace('/', '--')}"


def _complete(snapshot: Path, source: Source, name: str) -> bool:
    _repo, sub = source.repo(name)
    try:
        _layout_files(snapshot / sub if sub else snapshot, source.layout)
    except ModelUnavailableError:
        return False
    return True


def resolve_revision(source: Source, name: str) -> str:
    """The revision of `name` in the local hub cache (refs/main, with the files it needs), else the one a
    download brings (once: later runs find it here)."""
    repo, _sub = source.repo(name)
    refs = _cache_repo(repo) / "refs" / "main"
    try:
        revision = refs.read_text().strip()
    except OSError:
        revision = ""
    if _REVISION.fullmatch(revision) and _complete(_cache_repo(repo) / "snapshots" / revision, source, name):
        return revision
    return download(source, name, None).name


def download(source: Source, name: str, revision: str | None) -> Path:
    """Download the files of `name` (at `revision`, None: the newest) into the hub cache; its snapshot folder.
    Offline, or when the hub cannot be reached, one clear error says what to do."""
    from clipsearch.encoders.weights import hub_reachable, quiet_logs

    repo, _sub = source.repo(name)
    what = f"{source.prefix}:{name}"
    if not hub_reachable():
        offline = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")
        why = "HF_HUB_OFFLINE is set" if offline else "the hub is unreachable"
        raise ModelUnavailableError(
            f"model {what} is not in the Hugging Face cache and {why}",
            f"download it once with network access{' (unset HF_HUB_OFFLINE)' if offline else ''}, e.g. "
            f"`clipsearch index PHOTOS --model {what}`, or pass a folder in {source.layout.name}'s layout")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError

    try:
        with quiet_logs():
            path = Path(snapshot_download(repo, revision=revision, allow_patterns=source.patterns(name)))
    except (RepositoryNotFoundError, RevisionNotFoundError) as exc:
        raise ModelUnavailableError(f"the hub has no {repo}{'@' + revision if revision else ''} ({type(exc).__name__})",
                                    f"check the name: `clipsearch models` lists {source.prefix}'s models") from None
    except (HfHubHTTPError, OSError) as exc:
        first = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise ModelUnavailableError(f"downloading {what} failed: {first}", "try again, or check the network") from None
    if not _complete(path, source, name):
        raise ModelUnavailableError(f"{repo} does not hold {source.layout.name}'s layout",
                                    f"use a model `clipsearch models` lists under {source.prefix}")
    return path


def model_folder(spec: ModelSpec) -> Path:
    """The folder the model's files are read from: a local folder, or the hub snapshot of its revision (from the
    cache without a request; downloaded if the cache lacks it)."""
    if spec.folder is not None:
        return spec.folder
    source = SOURCES[str(spec.extra["source"])]
    revision = str(spec.extra["revision"])
    snapshot = _cache_repo(str(spec.pretrained)) / "snapshots" / revision
    if not _complete(snapshot, source, spec.arch):
        snapshot = download(source, spec.arch, revision)
    sub = str(spec.extra.get("subdir") or "")
    return snapshot / sub if sub else snapshot


def cached(source: Source, name: str) -> bool:
    """Whether `name` is in the hub cache (its refs/main names a snapshot): `models` marks it as working offline."""
    repo, _sub = source.repo(name)
    try:
        revision = (_cache_repo(repo) / "refs" / "main").read_text().strip()
    except OSError:
        return False
    return (_cache_repo(repo) / "snapshots" / revision).is_dir()


def list_rows() -> list[dict[str, Any]]:
    """The published models for `clipsearch models`."""
    rows = [{"spec": f"immich:{name}", "kind": f"immich ONNX export (Hugging Face immich-app/{name})",
             "cached": cached(SOURCES["immich"], name)} for name in IMMICH_MODELS]
    rows += [{"spec": f"rclip:{name}", "kind": f"rclip's ONNX export (Hugging Face {RCLIP_REPO})",
              "cached": cached(SOURCES["rclip"], name)} for name in RCLIP_MODELS]
    return rows


# --- into the export cache -------------------------------------------------------------------------------------
def install(spec: ModelSpec, cache_root: Path | None = None) -> Export:
    """Make the export-cache entry of a published model (no torch): the visual model linked as image.onnx with
    its input described, the text tower in text_encoder/. Returns the export."""
    from clipsearch.encoders import onnx_encoder as ox
    from clipsearch.encoders.text_folder import CONFIG, FORMAT
    from clipsearch.fsutil import atomic_write_text

    folder = model_folder(spec)
    layout = IMMICH if spec.extra.get("layout") == "immich" else RCLIP
    files = _layout_files(folder, layout)
    target = ox.export_dir(spec.cache_key, cache_root)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f"{target.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / ox.TEXT_DIR).mkdir(parents=True)
    try:
        _link_model(files[layout.visual], tmp / ox.IMAGE_FP32)
        image_session, image_input = _graph_input(tmp / ox.IMAGE_FP32)
        preprocess = _read_json(files["visual/preprocess_cfg.json"]) if layout is IMMICH else {}
        config = _read_json(files["config.json"]) if layout is IMMICH else {}
        size = preprocess.get("size") or (image_input["shape"][2] if isinstance(image_input["shape"][2], int)
                                          else 256)
        size = int(size[0] if isinstance(size, list) else size)
        probe = _probe_dim(image_session, image_input, size)
        del image_session
        from clipsearch.encoders.languages import model_languages

        model = {"spec": spec.text, "key": spec.key, "arch": spec.arch, "embed_dim": probe, "image_size": size,
                 "mean": [float(v) for v in preprocess.get("mean", CLIP_MEAN)],
                 "std": [float(v) for v in preprocess.get("std", CLIP_STD)],
                 "resize_mode": str(preprocess.get("resize_mode", "shortest")),
                 "languages": list(model_languages(spec)), "published": layout.name}
        text_dir = tmp / ox.TEXT_DIR
        _link_model(files[layout.textual], text_dir / TEXTUAL)
        text_cfg = config.get("text_cfg", {}) if isinstance(config.get("text_cfg"), dict) else {}
        if layout is IMMICH:
            shutil.copyfile(files["textual/tokenizer.json"], text_dir / "tokenizer.json")
            tok_cfg = _read_json(files["textual/tokenizer_config.json"])
            tokenizer: dict[str, Any] = {"kind": "hf", "pad_token": _token_text(tok_cfg.get("pad_token"))}
            kwargs = text_cfg.get("tokenizer_kwargs")
            canonical = isinstance(kwargs, dict) and kwargs.get("clean") == "canonicalize"
            clean = "canonicalize" if canonical else "whitespace"
        else:
            shutil.copyfile(files[BPE_VOCAB], text_dir / BPE_VOCAB)
            tokenizer, clean = {"kind": "bpe"}, "none"
        text_input = _graph_input(text_dir / TEXTUAL)[1]
        context = text_input["shape"][1] if isinstance(text_input["shape"][1], int) else None
        text_config = {"format": FORMAT, "family": "onnx", "key": spec.key, "model": TEXTUAL,
                       "context_length": int(context or text_cfg.get("context_length", 77)),
                       "tokenizer": tokenizer, "clean": clean,
                       "language_code": spec.arch.startswith("nllb-clip"), "embed_dim": probe}
        atomic_write_text(text_dir / CONFIG, json.dumps(text_config, indent=2))
        meta = {"format": ox.EXPORT_FORMAT, "key": spec.cache_key, "model": model, "text_tower": True,
                "input": {k: image_input[k] for k in ("name", "dtype", "batch")}, "source": spec.text}
        atomic_write_text(tmp / ox.META_FILE, json.dumps(meta, indent=2))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    ox.install_export(tmp, target)
    return ox.Export.at(target)


TEXTUAL = "textual.onnx"


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ClipsearchError(f"cannot read {path}: {exc}", "download the model again") from None
    if not isinstance(data, dict):
        raise ClipsearchError(f"{path} is not a JSON object", "download the model again")
    return data


def _token_text(token: Any) -> str | None:
    """tokenizer_config's pad_token: a string, or an AddedToken's dict."""
    if isinstance(token, dict):
        token = token.get("content")
    return token if isinstance(token, str) else None


def _link_model(source: Path, target: Path) -> None:
    """A hard link to the downloaded model (no copy, and it outlives a cleared hub cache), else a copy; an
    external-data file beside it comes along under its own name."""
    real = source.resolve()
    for src, dst in [(real, target)] + [(p, target.parent / p.name) for p in _external_data(source)]:
        try:
            os.link(src, dst)
        except OSError:
            shutil.copyfile(src, dst)


def _external_data(model: Path) -> list[Path]:
    """Weights an ONNX model keeps in files beside it (models over 2 GB), which ONNX Runtime finds by name."""
    return sorted(p for p in model.parent.glob(model.name + "*") if p.name != model.name and p.is_file())


def _graph_input(path: Path) -> tuple[Any, dict[str, Any]]:
    """A session of an ONNX model and its first input: name, element type, shape (ints where fixed) and the
    fixed batch size (immich's graphs take one image or text at a time)."""
    from clipsearch.encoders.onnx_encoder import session

    sess = session(path, ["CPUExecutionProvider"], 1)
    inp = sess.get_inputs()[0]
    dtype = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(int32)": "int32",
             "tensor(int64)": "int64"}.get(inp.type, inp.type)
    shape = [d if isinstance(d, int) else None for d in inp.shape]
    return sess, {"name": inp.name, "dtype": dtype, "shape": shape, "batch": shape[0] if shape else None}


def _probe_dim(sess: Any, image_input: dict[str, Any], size: int) -> int:
    """The embedding width, from one run on a blank image (the config may not say it: M-CLIP, rclip)."""
    import numpy as np

    blank = np.zeros((1, 3, size, size), dtype=np.float16 if image_input["dtype"] == "float16" else np.float32)
    out = sess.run(None, {image_input["name"]: blank})[0]
    return int(np.asarray(out).reshape(1, -1).shape[1])
