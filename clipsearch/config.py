"""One place for settings from the environment, read when first asked for (never at import time)."""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

from clipsearch.errors import ClipsearchError


@dataclass(frozen=True)
class Settings:
    store_path: Path  # CLIPSEARCH_INDEX, else index/ of the checkout we run from, else the user's data folder
    commit_every: int  # CLIPSEARCH_COMMIT_EVERY: images per index transaction
    debug: bool  # CLIPSEARCH_DEBUG: show tracebacks of unexpected errors
    cache_dir: Path  # CLIPSEARCH_CACHE, else $XDG_CACHE_HOME/clipsearch (~/.cache/clipsearch): model exports
    db: str | None  # CLIPSEARCH_DB: a new store's catalog database URL (else SQLite in the store folder)


def _default_store() -> Path:
    env = os.environ.get("CLIPSEARCH_INDEX")
    if env:
        return Path(env).expanduser()
    checkout = Path(__file__).resolve().parent.parent
    if (checkout / "pyproject.toml").is_file() and (checkout / "index").is_dir():
        return checkout / "index"
    data_home = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return data_home / "clipsearch" / "index"


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ClipsearchError(f"{name}={raw!r} is not a positive whole number", f"unset {name} or fix it")
    return value


def _default_cache() -> Path:
    env = os.environ.get("CLIPSEARCH_CACHE")
    if env:
        return Path(env).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "clipsearch"


@functools.cache
def _cached(store_env: str | None, commit_env: str | None, debug_env: str | None, xdg: str | None,
            cache_env: str | None, xdg_cache: str | None, db_env: str | None) -> Settings:
    return Settings(_default_store(), _int("CLIPSEARCH_COMMIT_EVERY", 256), bool(debug_env), _default_cache(),
                    db_env or None)


def settings() -> Settings:
    """The settings for the environment as it is now (cached per distinct environment)."""
    env = os.environ
    return _cached(env.get("CLIPSEARCH_INDEX"), env.get("CLIPSEARCH_COMMIT_EVERY"), env.get("CLIPSEARCH_DEBUG"),
                   env.get("XDG_DATA_HOME"), env.get("CLIPSEARCH_CACHE"), env.get("XDG_CACHE_HOME"), env.get("CLIPSEARCH_DB"))


def pq_min() -> int | None:
    """CLIPSEARCH_PQ_MIN: above this many vectors a store's index is IVF-PQ with re-ranking (None: the default)."""
    return _int("CLIPSEARCH_PQ_MIN", 0) if os.environ.get("CLIPSEARCH_PQ_MIN") else None
