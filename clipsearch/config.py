"""One place for settings from the environment, read when first asked for (never at import time)."""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from clipsearch.errors import ClipsearchError

# every variable a setting depends on: the settings are cached per distinct set of their values
_NAMES = ("CLIPSEARCH_INDEX", "XDG_DATA_HOME", "CLIPSEARCH_COMMIT_EVERY", "CLIPSEARCH_DEBUG", "CLIPSEARCH_CACHE",
          "XDG_CACHE_HOME", "CLIPSEARCH_DB", "CLIPSEARCH_PQ_MIN", "CLIPSEARCH_TEXT_RUNTIME")


@dataclass(frozen=True)
class Settings:
    store_path: Path  # CLIPSEARCH_INDEX, else index/ of the checkout we run from, else the user's data folder
    commit_every: int  # CLIPSEARCH_COMMIT_EVERY: images per index transaction
    debug: bool  # CLIPSEARCH_DEBUG: show tracebacks of unexpected errors
    cache_dir: Path  # CLIPSEARCH_CACHE, else $XDG_CACHE_HOME/clipsearch (~/.cache/clipsearch): model exports
    db: str | None  # CLIPSEARCH_DB: a new store's catalog database URL (else SQLite in the store folder)
    pq_min: int | None  # CLIPSEARCH_PQ_MIN: above this many vectors the index is IVF-PQ (None: the default)
    text_runtime: str | None = None  # CLIPSEARCH_TEXT_RUNTIME: numpy | onnx for every text query (None: per process)


def _default_store(env: Mapping[str, str | None]) -> Path:
    if env["CLIPSEARCH_INDEX"]:
        return Path(env["CLIPSEARCH_INDEX"]).expanduser()
    checkout = Path(__file__).resolve().parent.parent
    if (checkout / "pyproject.toml").is_file() and (checkout / "index").is_dir():
        return checkout / "index"
    data_home = Path(env["XDG_DATA_HOME"] or Path.home() / ".local" / "share")
    return data_home / "clipsearch" / "index"


def _positive(env: Mapping[str, str | None], name: str) -> int | None:
    raw = env[name]
    if not raw:
        return None
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ClipsearchError(f"{name}={raw!r} is not a positive whole number", f"unset {name} or fix it")
    return value


def _default_cache(env: Mapping[str, str | None]) -> Path:
    if env["CLIPSEARCH_CACHE"]:
        return Path(env["CLIPSEARCH_CACHE"]).expanduser()
    return Path(env["XDG_CACHE_HOME"] or Path.home() / ".cache") / "clipsearch"


@functools.cache
def _settings_for(values: tuple[str | None, ...]) -> Settings:
    env = dict(zip(_NAMES, values, strict=True))
    return Settings(store_path=_default_store(env), commit_every=_positive(env, "CLIPSEARCH_COMMIT_EVERY") or 256,
                    debug=bool(env["CLIPSEARCH_DEBUG"]), cache_dir=_default_cache(env),
                    db=env["CLIPSEARCH_DB"] or None, pq_min=_positive(env, "CLIPSEARCH_PQ_MIN"),
                    text_runtime=env["CLIPSEARCH_TEXT_RUNTIME"] or None)


def settings() -> Settings:
    """The settings for the environment as it is now (cached per distinct environment)."""
    return _settings_for(tuple(os.environ.get(name) for name in _NAMES))
