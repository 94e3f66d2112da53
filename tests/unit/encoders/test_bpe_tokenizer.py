"""The NumPy tower's BPE tokenizer builds no table at start-up, yet gives open_clip's ids for any text."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from clipsearch.encoders import bpe_tokenizer
from clipsearch.encoders.bpe_tokenizer import MERGES, BPETokenizer

open_clip_tokenizer = pytest.importorskip("open_clip.tokenizer")
VOCAB = Path(open_clip_tokenizer.__file__).parent / "bpe_simple_vocab_16e6.txt.gz"


@pytest.fixture(scope="module")
def reference() -> object:
    return open_clip_tokenizer.SimpleTokenizer(str(VOCAB))


def test_ids_need_no_table(reference) -> None:
    """A merged piece's id is 512 + its merge's rank and a byte's its place: what open_clip's table holds."""
    lazy = BPETokenizer(VOCAB, 77)
    merges = lazy.merges[1:-1].split("\n")
    assert len(merges) == MERGES == len(set(merges))
    for rank, merge in enumerate(merges):
        assert reference.encoder[merge.replace(" ", "")] == 2 * 256 + rank
    for char, i in lazy.byte_ids.items():
        assert reference.encoder[char] == i and reference.encoder[char + "</w>"] == 256 + i
    assert (lazy.sot, lazy.eot) == (reference.encoder["<start_of_text>"], reference.encoder["<end_of_text>"])


def _texts() -> list[str]:
    rng = np.random.default_rng(0)
    words = "dog grass sunset photograph mountain café naïve 東京 über-cool it's 4:30 #tag &amp; x y".split()
    texts = ["a dog on grass", "A Dog on GRASS!!  &amp; friends", "ünïcödé café 123", "x " * 100,
             "<end_of_text> typed by a user", "", "it's 4:30 o'clock", "unbelievably antidisestablishmentarianism"]
    texts += [" ".join(rng.choice(words, size=6)) for _ in range(20)]
    letters = np.array(list("abcdefghijklmnopqrstuvwxyzéü"))
    texts += ["".join(rng.choice(letters, size=int(rng.integers(3, 14)))) for _ in range(300)]  # made-up words
    return texts


@pytest.mark.parametrize("lookups", [bpe_tokenizer.LAZY_LOOKUPS, 0])
def test_tokens_equal_open_clip(reference, monkeypatch, lookups: int) -> None:
    """Both ways of finding a merge's rank: searched in the merge text, and the full table built once the
    searches pass LAZY_LOOKUPS (0: built at the first lookup); the made-up words push past the limit."""
    monkeypatch.setattr(bpe_tokenizer, "LAZY_LOOKUPS", lookups)
    lazy = BPETokenizer(VOCAB, 77)
    for text in _texts():
        expected = [t for t in open_clip_tokenizer.tokenize([text])[0].tolist() if t]
        assert lazy(text) == expected, text
    assert lazy._full
