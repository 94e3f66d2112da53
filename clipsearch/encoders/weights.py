"""Where pretrained weights come from: open_clip's normal download path, made fast and clear offline.

Without this, an offline machine spends ~55 s in the hub client's retries before failing with a wall
of log lines. We check the local cache first (then load with the hub in offline mode, so nothing is
requested) and probe the hub once, with a short timeout, before asking open_clip to download.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

HUB_PROBE_TIMEOUT_S = 3.0
_HF_FILENAMES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def weights_cached(pretrained_cfg: dict) -> bool:
    """True when open_clip would find these weights on disk without any request."""
    hub = str(pretrained_cfg.get("hf_hub", "")).strip("/")
    if hub:
        from huggingface_hub import try_to_load_from_cache

        parts = hub.split("/")
        repo, filenames = "/".join(parts[:2]), (["/".join(parts[2:])] if len(parts) > 2 else list(_HF_FILENAMES))
        if any(isinstance(try_to_load_from_cache(repo, name), str) for name in filenames):
            return True
    url = pretrained_cfg.get("url")
    if url:
        return (Path.home() / ".cache" / "clip" / os.path.basename(urlparse(url).path)).is_file()
    return False


def hf_text_repos(model_cfg: dict) -> list[str]:
    """The Hugging Face repositories an open_clip model's text tower is built from (XLM-R, NLLB: its config and
    tokenizer), which must be cached besides the weights; none for CLIP's own text transformer."""
    text = model_cfg.get("text_cfg", {}) if isinstance(model_cfg, dict) else {}
    return list(dict.fromkeys(r for r in (text.get("hf_model_name"), text.get("hf_tokenizer_name")) if r))


def repo_cached(repo: str) -> bool:
    """True when the hub's cache holds `repo`'s config (a model) or tokenizer config."""
    from huggingface_hub import try_to_load_from_cache

    return any(isinstance(try_to_load_from_cache(repo, name), str) for name in ("config.json", "tokenizer_config.json"))


def hub_reachable(timeout: float = HUB_PROBE_TIMEOUT_S) -> bool:
    """One TCP connect to the hub: DNS failure or no route answers in milliseconds, not minutes."""
    if _truthy(os.environ.get("HF_HUB_OFFLINE")):
        return False
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True  # a proxy may reach what we cannot: let the real download decide
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


@contextlib.contextmanager
def hub_offline(active: bool) -> Iterator[None]:
    """Make huggingface_hub serve from its cache without a HEAD request (no retries when offline)."""
    if not active:
        yield
        return
    from huggingface_hub import constants

    previous = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = previous


@contextlib.contextmanager
def quiet_logs(level: int = logging.ERROR) -> Iterator[None]:
    """open_clip and the hub client log to the root logger; our own error says it in one line."""
    logging.disable(level)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)
