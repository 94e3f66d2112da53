"""The embeddings of the texts a long-running process embedded last, so asking again costs nothing.

A server is asked the same text again and again: the page's "more" (a bigger k), a changed filter, back and
forward, another user's popular query. The text tower is deterministic, so the embedding of a text it saw
recently can be answered from memory: a few hundred 512-d rows (~0.5 MB). Distinct texts (what
bench/serve_latency.py sends) pass straight through to the tower.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

import numpy as np

RECENT_TEXTS = 512


class RecentTexts:
    """Wraps a text encoder (`encode_texts`): texts seen among the last `size` are answered from memory, the rest
    go to the wrapped encoder in one call. Thread-safe; the results are exactly the wrapped encoder's."""

    def __init__(self, inner: Any, size: int = RECENT_TEXTS) -> None:
        self.inner = inner
        self.size = size
        self._rows: OrderedDict[tuple[str | None, str], np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> object:  # key, family, folder...: the wrapped encoder's
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def encode_texts(self, texts: Iterable[str], language: str | None = None) -> np.ndarray:
        """The texts' embeddings; `language` (NLLB's code, for a tower told it) is part of what is remembered."""
        texts = list(texts)
        with self._lock:
            known = {t: self._rows[(language, t)] for t in texts if (language, t) in self._rows}
            for t in known:
                self._rows.move_to_end((language, t))
        missing = list(dict.fromkeys(t for t in texts if t not in known))
        if missing:
            fresh = (self.inner.encode_texts(missing) if language is None
                     else self.inner.encode_texts(missing, language))
            with self._lock:
                for t, row in zip(missing, fresh, strict=True):
                    known[t] = self._rows[(language, t)] = np.array(row, dtype=np.float32)
                while len(self._rows) > self.size:
                    self._rows.popitem(last=False)
        return np.stack([known[t] for t in texts]) if texts else self.inner.encode_texts([])
