"""Matching queries against the text read inside images, and fusing that with the CLIP ranking.

Words: a query's text split at spaces and punctuation, case-folded; runs of Chinese or Japanese characters stay
whole (the catalog's trigram index matches them as substrings, with no word segmentation). A fused query drops
English function words ("a dog on grass" looks for "dog" and "grass") and words of one character.

Fusion (`fuse`): reciprocal rank fusion (Cormack et al., 2009) of the CLIP ranking and the text ranking, each
rank r contributing 1/(RRF_K + r); a text rank's contribution is weighted by the share of the query's words
(by characters) that the image's text holds, so one stray word matched in a sign does not count as much as
the query read in full, and by TEXT_WEIGHT (0.5): a picture whose text names the query's words ("RED CIRCLE
SALE") must not push the pictures that look like it out of the first ranks, while one found only by its words
still reaches them. Measured against CLIP alone, the text alone, plain RRF and other weights in
bench/text_fusion.py (README: "Text inside images").
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from clipsearch.catalog.records import TextLine
from clipsearch.errors import ClipsearchError

TEXT_WEIGHT = 0.5  # a text rank counts half a CLIP rank (bench/text_fusion.py: the best balance of look and words)
RRF_K = 60  # the constant of reciprocal rank fusion (the paper's; it damps the weight of the first ranks)
CANDIDATES = 1000  # images a fused query takes from the text side at most
MAX_WORDS = 16  # words a text filter holds at most (each is a term of the catalog's match)

_WORD = re.compile(r"\w+", re.UNICODE)
_STOP = frozenset(
    "a an and are as at be by for from has have in is it its of on or that the this to was were with "
    "photo picture image images photos pictures".split())


def words_of(text: str) -> list[str]:
    """Case-folded words, each once, in order."""
    return list(dict.fromkeys(w.casefold() for w in _WORD.findall(text or "")))


def filter_words(text: str) -> list[str]:
    """The words a `text_in_image` filter requires (every one, as a substring of the image's text)."""
    if "\0" in text:
        raise ClipsearchError("the text-in-image filter holds a NUL byte", param="text_in_image")
    words = words_of(text)
    if not words:
        raise ClipsearchError(f"the text-in-image filter {text!r} holds no letters or digits",
                              'give a word the image shows, e.g. "invoice"', param="text_in_image")
    if len(words) > MAX_WORDS:
        raise ClipsearchError(f"the text-in-image filter has {len(words)} words; at most {MAX_WORDS}",
                              param="text_in_image")
    return words


def fusion_words(texts: Iterable[str]) -> list[str]:
    """The words of a query's text terms worth looking for in images' text (no function words, none of one
    character)."""
    words = (w for t in texts for w in words_of(t) if w not in _STOP and len(w) > 1)
    return list(dict.fromkeys(words))[:MAX_WORDS]


def coverage(lines: Sequence[TextLine], words: Sequence[str]) -> float:
    """The share of the words (by characters) that the lines hold: 0 when none, 1 when all."""
    text = " ".join(line.text for line in lines).casefold()
    total = sum(len(w) for w in words)
    return sum(len(w) for w in words if w in text) / total if total else 0.0


def matched_lines(lines: Sequence[TextLine], words: Sequence[str]) -> list[dict[str, object]]:
    """The lines that hold one of the words, each with its box and which words: where the words matched."""
    out: list[dict[str, object]] = []
    for line in lines:
        folded = line.text.casefold()
        found = [w for w in words if w in folded]
        if found:
            out.append({**line.to_dict(), "words": found})
    return out


@dataclass(frozen=True)
class TextRanked:
    """Images ranked by how much of the query their text holds (best first), with that share."""
    ids: list[int]
    share: dict[int, float]


def rank_by_text(candidates: dict[int, tuple[TextLine, ...]], words: Sequence[str]) -> TextRanked:
    share = {i: coverage(lines, words) for i, lines in candidates.items()}
    ids = sorted((i for i, s in share.items() if s > 0), key=lambda i: (-share[i], i))
    return TextRanked(ids, share)


def fuse(clip_ids: Sequence[int], text: TextRanked, weighted: bool = True,
         text_weight: float = TEXT_WEIGHT) -> list[int]:
    """Reciprocal rank fusion of the CLIP ranking and the text ranking (best first). `weighted`: a text rank
    counts in proportion to the share of the query its text holds (the default); False: plain RRF. The text
    side's ranks count `text_weight` times CLIP's."""
    score: dict[int, float] = {}
    for rank, i in enumerate(clip_ids, 1):
        score[i] = 1.0 / (RRF_K + rank)
    for rank, i in enumerate(text.ids, 1):
        score[i] = score.get(i, 0.0) + text_weight * (text.share[i] if weighted else 1.0) / (RRF_K + rank)
    first_seen = {i: n for n, i in enumerate([*clip_ids, *text.ids])}
    return sorted(score, key=lambda i: (-score[i], first_seen[i]))
