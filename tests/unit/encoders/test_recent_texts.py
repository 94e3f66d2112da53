"""RecentTexts answers a text it embedded lately from memory, exactly, and sends only new texts to the tower."""

from __future__ import annotations

import threading

import numpy as np

from clipsearch.encoders.recent_texts import RecentTexts


class _Tower:
    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.key = "tower-key"

    def encode_texts(self, texts, language=None):
        self.calls.append([f"{language}:{t}" if language else t for t in texts])
        out = np.array([[len(t), sum(map(ord, t)) % 97, 1.0] for t in texts], dtype=np.float32).reshape(-1, 3)
        return out


def test_only_new_texts_reach_the_tower_and_answers_are_exact() -> None:
    tower = _Tower()
    recent = RecentTexts(tower, size=3)
    first = recent.encode_texts(["a cat", "a dog", "a cat"])
    assert tower.calls == [["a cat", "a dog"]]  # once each, in one call
    assert np.array_equal(first, _Tower().encode_texts(["a cat", "a dog", "a cat"]))
    again = recent.encode_texts(["a dog", "a bird"])
    assert tower.calls[-1] == ["a bird"] and np.array_equal(again, _Tower().encode_texts(["a dog", "a bird"]))
    recent.encode_texts(["x", "y"])  # "a cat" is now the oldest beyond size 3: forgotten
    recent.encode_texts(["a cat"])
    assert tower.calls[-1] == ["a cat"]
    assert recent.key == "tower-key"  # the wrapped encoder's attributes show through
    assert recent.encode_texts([]).shape == (0, 3)
    recent.encode_texts(["a cat"], language="fra_Latn")  # another language: not the English row
    assert tower.calls[-1] == ["fra_Latn:a cat"]


def test_concurrent_callers_get_their_own_rows() -> None:
    recent = RecentTexts(_Tower(), size=8)
    errors: list[str] = []

    def worker(n: int) -> None:
        for i in range(50):
            text = f"q{(n + i) % 12}"
            if not np.array_equal(recent.encode_texts([text]), _Tower().encode_texts([text])):
                errors.append(text)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
