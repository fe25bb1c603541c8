"""How a history's values are read from the statement's text: exactly, whatever their size."""

from __future__ import annotations

from decimal import Decimal

from services.aggregate.quality_repository import _values


def test_whole_values_are_ints_and_a_fraction_makes_the_series_decimal() -> None:
    assert _values("12,-3,0") == [12, -3, 0]
    assert all(type(v) is int for v in _values("12,-3,0"))
    assert _values("12.5,3") == [Decimal("12.5"), Decimal(3)]


def test_an_integer_beyond_64_bits_stays_exact() -> None:
    # orjson alone reads it as the float 1e+20; a history must hold the integer.
    read = _values("100000000000000000001,7")
    assert read == [100000000000000000001, 7] and all(type(v) is int for v in read)
