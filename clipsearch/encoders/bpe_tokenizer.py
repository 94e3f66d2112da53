"""open_clip's byte-level BPE tokenizer in plain Python (no torch, no ftfy): the ids open_clip's own tokenizer
gives, from the same vocabulary file. Merge ranks are looked up in the merge text on demand and the full table
is built only after LAZY_LOOKUPS lookups, so a one-query process never pays for the table."""

from __future__ import annotations

import functools
import html
import re
import zlib
from pathlib import Path
from typing import Any


# the CLIP BPE, as in open_clip.tokenizer.SimpleTokenizer with clean='lower'
@functools.lru_cache
def _bytes_to_unicode() -> dict[int, str]:
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs], strict=False))


MERGES = 49152 - 256 - 2  # the BPE merges open_clip uses: the vocabulary file's lines 1..48894
LAZY_LOOKUPS = 512  # merge-rank lookups answered by a search in the merge text before the full table is built


def _merge_text(vocab_path: Path) -> str:
    """The merges as one string, each line between newlines ("\\nfirst second\\n..."): only the start of the
    gzip file that holds them is decompressed (the file goes on for 200k lines that CLIP never used)."""
    data = Path(vocab_path).read_bytes()
    inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
    parts: list[bytes] = []
    lines = 0
    while lines <= MERGES and data:
        chunk = inflate.decompress(data, 1 << 16)
        data = inflate.unconsumed_tail
        if not chunk:
            break
        parts.append(chunk)
        lines += chunk.count(b"\n")
    head = b"".join(parts).decode("utf-8").split("\n", MERGES + 1)[1:MERGES + 1]
    if len(head) != MERGES:
        raise ValueError(f"{vocab_path}: {len(head)} BPE merges, expected {MERGES}")
    return "\n" + "\n".join(head) + "\n"


class BPETokenizer:
    """open_clip's BPE, built for a fast start: no table is built up front. The merges stay one string, and a
    pair's rank is its line number there (`str.find`; the merges are unique), remembered once looked up; after
    LAZY_LOOKUPS lookups (a long text, or a server's many queries) the full table is built once. A token's id
    needs no table either: a byte's is its place among the 256 byte characters (+256 at the end of a word), a
    merged piece's is 512 + the rank of the merge that made it (no two merges make the same string, which
    tests check against open_clip's table). Plain printable ASCII text (what nearly every query is) skips ftfy
    and the `regex` module, which cannot change it (the pattern's letter and digit classes are ASCII there)."""

    _PATTERN = r"""<start_of_text>|<end_of_text>|'s|'t|'re|'ve|'m|'ll|'d|{L}+|{N}|[^\s{L_}{N_}]+"""

    def __init__(self, vocab_path: Path, context_length: int) -> None:
        self.merges = _merge_text(vocab_path)
        self.byte_ids = {c: i for i, c in enumerate(_bytes_to_unicode().values())}
        self.sot, self.eot = 2 * 256 + MERGES, 2 * 256 + MERGES + 1
        self.specials = {"<start_of_text>": self.sot, "<end_of_text>": self.eot}
        self.context_length = context_length
        self.ascii_pat = re.compile(self._PATTERN.format(L="[a-zA-Z]", N="[0-9]", L_="a-zA-Z", N_="0-9"),
                                    re.IGNORECASE)
        self._unicode_pat = None
        self._ranks: dict[str, int | None] = {}  # "first second" → merge priority (None: not a merge)
        self._full = False
        self.cache: dict[str, list[int]] = {}

    def rank(self, pair: str) -> int | None:
        """The priority of merging "first second" (lower merges first), None when it is not a merge."""
        if pair in self._ranks:
            return self._ranks[pair]
        if self._full:
            return None
        if len(self._ranks) >= LAZY_LOOKUPS:
            self._ranks = {m: i for i, m in enumerate(self.merges[1:-1].split("\n"))}
            self._full = True
            return self._ranks.get(pair)
        at = self.merges.find(f"\n{pair}\n")
        found = None if at < 0 else self.merges.count("\n", 0, at)
        self._ranks[pair] = found
        return found

    @property
    def unicode_pat(self) -> Any:
        if self._unicode_pat is None:
            import regex

            self._unicode_pat = regex.compile(self._PATTERN.format(L=r"[\p{L}]", N=r"[\p{N}]", L_=r"\p{L}",
                                                                   N_=r"\p{N}"), regex.IGNORECASE)
        return self._unicode_pat

    def _bpe(self, token: str) -> list[int]:
        """The ids of one pre-token (bytes already mapped to their characters), merged as open_clip merges."""
        if token in self.cache:
            return self.cache[token]
        word = list(token[:-1]) + [token[-1] + "</w>"]
        ids = [self.byte_ids[c] for c in token[:-1]] + [256 + self.byte_ids[token[-1]]]
        inf = float("inf")
        while len(word) > 1:
            pairs = {(a, b) for a, b in zip(word, word[1:], strict=False)}
            ranked = {p: self.rank(f"{p[0]} {p[1]}") for p in pairs}
            best = min(pairs, key=lambda p: inf if ranked[p] is None else float(ranked[p] or 0))
            rank = ranked[best]
            if rank is None:
                break
            merged: list[str] = []
            merged_ids: list[int] = []
            i = 0
            while i < len(word):
                if i < len(word) - 1 and (word[i], word[i + 1]) == best:
                    merged.append(word[i] + word[i + 1])
                    merged_ids.append(2 * 256 + rank)
                    i += 2
                else:
                    merged.append(word[i])
                    merged_ids.append(ids[i])
                    i += 1
            word, ids = merged, merged_ids
        self.cache[token] = ids
        return ids

    def encode(self, text: str) -> list[int]:
        plain = text.isascii() and text.isprintable() and "&" not in text  # ftfy leaves such text as it is
        if not plain:
            import ftfy

            text = ftfy.fix_text(text)
        text = " ".join(html.unescape(html.unescape(text)).strip().split()).lower()
        byte_encoder = _bytes_to_unicode()
        ids: list[int] = []
        for token in (self.ascii_pat if text.isascii() else self.unicode_pat).findall(text):
            if token in self.specials:  # special tokens typed in the text, as open_clip
                ids.append(self.specials[token])
                continue
            ids.extend(self._bpe("".join(byte_encoder[b] for b in token.encode("utf-8"))))
        return ids

    def __call__(self, text: str) -> list[int]:
        tokens = [self.sot] + self.encode(text) + [self.eot]
        if len(tokens) > self.context_length:
            tokens = tokens[: self.context_length]
            tokens[-1] = self.eot
        return tokens


# --- forward -------------------------------------------------------------------------------------------
