"""Words, matches and the fusion of the CLIP ranking with the text ranking (no OCR, no catalog)."""

from __future__ import annotations

import pytest

from clipsearch.catalog.records import TextLine
from clipsearch.errors import ClipsearchError
from clipsearch.query.text_match import (
    RRF_K,
    TEXT_WEIGHT,
    coverage,
    filter_words,
    fuse,
    fusion_words,
    matched_lines,
    rank_by_text,
)

BOX = (0.1, 0.2, 0.5, 0.3)


def test_words_keep_chinese_runs_whole_and_drop_function_words() -> None:
    assert filter_words("Invoice, 2024!") == ["invoice", "2024"]
    assert filter_words("发票 INVOICE2024") == ["发票", "invoice2024"]
    assert fusion_words(["a dog on grass", "the DOG"]) == ["dog", "grass"]
    assert fusion_words(["x 狗 photo of"]) == []  # one character and stop words only
    with pytest.raises(ClipsearchError, match="no letters"):
        filter_words(" ,;! ")


def test_coverage_and_matched_lines_say_where_the_words_are() -> None:
    lines = (TextLine("Total: 42", BOX), TextLine("发票INVOICE2024", (0.1, 0.5, 0.9, 0.6)))
    assert coverage(lines, ["invoice", "total"]) == 1.0
    assert coverage(lines, ["invoice", "receipt"]) == pytest.approx(7 / 14)
    assert matched_lines(lines, ["invoice", "发票"]) == [
        {"text": "发票INVOICE2024", "box": [0.1, 0.5, 0.9, 0.6], "words": ["invoice", "发票"]}]
    assert matched_lines(lines, ["nothing"]) == []


def test_fusion_lifts_an_image_found_by_its_words_and_keeps_the_look_order() -> None:
    clip = [10, 11, 12, 13, *range(100, 200)]  # CLIP's ranking; image 99 is not in it at all (its look says nothing)
    text = rank_by_text({99: (TextLine("INVOICE 2024", BOX),), 12: (TextLine("invoice", BOX),)}, ["invoice", "2024"])
    assert text.ids == [99, 12] and text.share[12] == pytest.approx(7 / 11)  # all the query's words first
    fused = fuse(clip, text)
    assert fused[:2] == [12, 10]  # both lists rank 12: it leads; 10 (CLIP's first) next
    assert [i for i in fused if i != 99] == [12, 10, 11, 13, *range(100, 200)]  # CLIP's order otherwise
    # a text rank counts TEXT_WEIGHT (0.5) of a CLIP rank: 0.5/61 lies between CLIP's ranks 62 and 63
    assert TEXT_WEIGHT == 0.5 and fused.index(99) == 62
    plain = fuse(clip, text, weighted=False, text_weight=1.0)
    assert plain[:3] == [12, 10, 99]  # plain RRF: the text's first ties CLIP's first (CLIP's comes first)
    assert fuse(clip, rank_by_text({}, ["invoice"])) == clip  # no text match: CLIP's order unchanged
    assert RRF_K == 60
