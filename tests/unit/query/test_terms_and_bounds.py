"""The query syntax and its bounds, in the library (the CLI and the server refuse through the same checks)."""

from __future__ import annotations

import pytest

from clipsearch.errors import ClipsearchError
from clipsearch.query.engine import (
    MAX_FILTERS,
    MAX_QUERY_CHARS,
    MAX_TERM_CHARS,
    MAX_TERMS,
    Query,
    parse_term,
    split_terms,
)


def test_split_terms_and_weights() -> None:
    assert split_terms("red dress -people +beach::2") == (["red dress", "beach::2"], ["people"])
    assert split_terms('"-20 degrees" -"blue sky"') == (["-20 degrees"], ["blue sky"])
    assert parse_term("beach::2") == ("beach", 2.0)
    assert parse_term("ratio::wide") == ("ratio::wide", 1.0)  # not a number: part of the text


def test_bounds_name_the_parameter() -> None:
    with pytest.raises(ClipsearchError) as too_many:
        Query.parse([f"t{i}" for i in range(MAX_TERMS + 1)], [])
    assert too_many.value.param == "text"
    with pytest.raises(ClipsearchError, match="characters long"):
        Query.parse(["x" * (MAX_TERM_CHARS + 1)], [])
    with pytest.raises(ClipsearchError, match="characters long"):
        split_terms("x " * MAX_QUERY_CHARS)
    with pytest.raises(ClipsearchError) as filters:
        Query.parse(["a dog"], [], under=[f"/d{i}" for i in range(MAX_FILTERS + 1)])
    assert filters.value.param == "under"
    assert Query.parse(["a dog"] * MAX_TERMS, []).k == 10  # at the bounds: accepted


def test_dates_out_of_range_and_nul_bytes_are_clear_errors() -> None:
    with pytest.raises(ClipsearchError, match="out of range") as early:
        Query.parse(["a dog"], [], before="0001-01-01")
    assert early.value.param == "before"
    with pytest.raises(ClipsearchError, match="NUL byte") as nul:
        Query.parse(["a dog"], [], under=["/photos\0/x"])
    assert nul.value.param == "under"
    assert Query.parse(["a dog"], [], after="9999-12-31").after_ns == 2**63 - 1  # the end of time, not an error


def test_weights_must_be_finite_and_bounded() -> None:
    for bad in ("cat::nan", "cat::inf", "cat::1e308", "cat::-1e9"):
        with pytest.raises(ClipsearchError, match="weights are numbers") as err:
            Query.parse([bad], [])
        assert err.value.param == "text"
    assert parse_term("cat::-2") == ("cat", -2.0) and parse_term("cat::1000") == ("cat", 1000.0)


def test_duplicates_take_no_more_folders_than_a_query() -> None:
    from clipsearch.query.dupes import find_duplicates

    class NoCatalog:  # refused before the catalog is asked anything
        def __getattr__(self, name: str) -> None:
            raise AssertionError(f"the catalog was asked for {name}")

    with pytest.raises(ClipsearchError, match="under filters; at most") as err:
        find_duplicates(NoCatalog(), None, "exact", under=[f"/d{i}" for i in range(MAX_FILTERS + 1)])
    assert err.value.param == "under"
