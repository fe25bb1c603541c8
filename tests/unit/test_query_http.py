"""The query service's HTTP helpers: ETag matching, cursors, default series bounds (pure)."""

from __future__ import annotations

import pytest

from services.query.caching import etag_matches, etag_of
from services.query.pagination import decode_cursor, encode_cursor
from services.query.periods import default_series_end, default_series_start
from shared.errors import ValidationFailed
from shared.periods import PeriodType, parse_period


def test_etag_is_a_quoted_hash_of_the_body() -> None:
    assert etag_of(b"{}") == etag_of(b"{}") != etag_of(b"[]")
    assert etag_of(b"{}").startswith('"') and etag_of(b"{}").endswith('"')


@pytest.mark.parametrize(
    ("header", "matches"),
    [(None, False), ("", False), ('"abc"', True), ('W/"abc"', True), ('"x", "abc"', True), ("*", True),
     ('"abcd"', False), ("abc", False)],
)
def test_if_none_match(header: str | None, matches: bool) -> None:
    assert etag_matches(header, '"abc"') is matches


def test_cursor_round_trip_and_garbage() -> None:
    payload = {"s": "-value", "k": [False, -12.5, "00004"]}
    assert decode_cursor(encode_cursor(payload)) == payload
    for garbage in ("%%%", "bm90IGpzb24", encode_cursor({"k": 1})[:-3], "WzEsMl0"):  # last: a JSON list
        with pytest.raises(ValidationFailed) as err:
            decode_cursor(garbage)
        assert err.value.errors == [{"loc": "cursor", "message": err.value.detail}]


def test_default_series_is_twelve_native_periods_ending_now() -> None:
    end = default_series_end(PeriodType.MONTH, parse_period("2025-03-15").start)
    assert end.code == "2025-03"
    assert default_series_start(PeriodType.MONTH, end).code == "2024-04"
    half = default_series_end(PeriodType.HALF, parse_period("2025-03-15").start)
    assert default_series_start(PeriodType.HALF, half).code == "2019-H2"
