"""The text half of one query on a store that reads the text inside its images.

Three jobs: a `text_in_image` filter narrows the ids the vectors may return (every word must appear in the
image's text, through the catalog's full-text index); a query with text terms is fused with the images whose
text holds its words (`text_match.fuse`), so a screenshot is found by what it says even where CLIP ranks it
low; and every hit carries its text and the lines where the words matched (with their boxes).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from clipsearch.errors import ClipsearchError
from clipsearch.query.text_match import CANDIDATES, TextRanked, fuse, fusion_words, matched_lines, rank_by_text

if TYPE_CHECKING:  # pragma: no cover
    from clipsearch.catalog.reads import CatalogReads


class TextSide:
    def __init__(self, catalog: CatalogReads, required: Sequence[str], wanted: Sequence[str]) -> None:
        self.catalog = catalog
        self.required = list(required)  # the filter's words (all must match)
        self.wanted = list(wanted)  # the text terms' words (fused: any may match)

    @classmethod
    def of(cls, catalog: CatalogReads, query: Any) -> TextSide | None:
        """The text side of `query` (a `Query`), or None on a store that does not read text."""
        if not catalog.reads_text():
            if query.text_in_image:
                raise ClipsearchError("this store has not read the text inside its images",
                                      "index its folders again with --ocr (only the text is read; nothing is "
                                      "encoded again)", param="text_in_image")
            return None
        return cls(catalog, query.text_in_image or [], fusion_words([t for t, w in query.texts if w > 0]))

    @property
    def fused(self) -> bool:
        return bool(self.wanted)

    def restrict(self, allowed: np.ndarray | None) -> np.ndarray | None:
        """The allowed ids narrowed to images whose text holds every required word."""
        if not self.required:
            return allowed
        ids = self.catalog.text_ids(self.required)
        return ids if allowed is None else np.intersect1d(allowed, ids)

    @staticmethod
    def clip_depth(k: int) -> int:
        """How deep the CLIP ranking is read for fusion: a text match can lift an image from this far down."""
        return max(4 * k, 100)

    def ranked_alone(self, allowed: np.ndarray | None, excluded: set[int]) -> list[tuple[float, int]]:
        """A filter without vector terms: (score, id), the images where the words fill most of the text first;
        the score is that share."""
        ids = [int(i) for i in (allowed if allowed is not None else [])[:CANDIDATES] if int(i) not in excluded]
        texts = self.catalog.texts(ids)
        size = sum(len(w) for w in self.required)
        density = {i: size / max(size, len("".join(line.text for line in texts.get(i, ())))) for i in ids}
        return [(round(density[i], 6), i) for i in sorted(ids, key=lambda i: (-density[i], i))]

    def fused_pairs(self, pairs: list[tuple[float, int]], qvec: np.ndarray, allowed: np.ndarray | None,
                    excluded: set[int], dim: int) -> list[tuple[float, int]]:
        """The CLIP ranking (score, id) fused with the text ranking; scores stay cosine similarities (looked up
        for images that only the text side brought)."""
        ranked = self.text_ranking(allowed, excluded)
        if not ranked.ids:
            return pairs
        cosine = {i: s for s, i in pairs}
        order = fuse([i for _s, i in pairs], ranked)
        missing = [i for i in order if i not in cosine]
        for i, vec in self.catalog.embeddings_by_id(missing, dim).items():
            cosine[i] = float(vec @ qvec)
        return [(cosine[i], i) for i in order if i in cosine]

    def text_ranking(self, allowed: np.ndarray | None, excluded: set[int]) -> TextRanked:
        """The images whose text holds some of the query's words, most of them first (within `allowed`)."""
        candidates = self.catalog.text_candidates(self.wanted, CANDIDATES)
        if allowed is not None:
            keep = set(np.intersect1d(np.fromiter(candidates, dtype=np.int64), allowed).tolist())
            candidates = {i: v for i, v in candidates.items() if i in keep}
        return rank_by_text({i: v for i, v in candidates.items() if i not in excluded}, self.wanted)

    def annotate(self, hits: Sequence[Any]) -> None:
        """Each hit's text, and the lines where the query's words matched (empty when none did)."""
        texts = self.catalog.texts([h.id for h in hits])
        words = list(dict.fromkeys([*self.required, *self.wanted]))
        for hit in hits:
            lines = texts.get(hit.id, ())
            hit.text = "\n".join(line.text for line in lines)
            hit.text_matches = matched_lines(lines, words)
