"""Bad files (DESIGN §9, issue 12): each refused with the row and column a spreadsheet would show, and a
message that says what to do."""

from __future__ import annotations

import pytest

from tests.fixtures.files import BAD, DAY, HEAD, csv, read_all, xlsx


@pytest.mark.parametrize(("kind", "data", "row", "column", "fragment"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_a_bad_file_is_refused_naming_row_and_column(
    kind: str, data: bytes, row: int | None, column: str | None, fragment: str
) -> None:
    _, errors = read_all(kind, data)
    assert errors, "the file was read without an error"
    assert any(e.row == row and e.column == column and fragment in e.message for e in errors), errors


def test_the_table_holds_at_least_thirty_bad_files() -> None:
    assert len(BAD) >= 30


def test_good_rows_beside_a_bad_one_are_still_read() -> None:
    """Non-atomic imports keep the good rows: a row's error does not stop the reader."""
    data = xlsx([HEAD, ["00001", "a", "2024-07", 1], ["00001", "b", DAY, 2], ["00001", "c", "2024-08", 3]])
    rows, errors = read_all("xlsx", data)
    assert [r["indicator"] for r in rows] == ["a", "c"]
    assert [(e.row, e.column) for e in errors] == [(3, "C")]


def test_every_header_problem_is_listed_at_once() -> None:
    _, errors = read_all("csv", csv("unit,foo,unit,bar", "1,2,3,4"))
    assert {(e.column, e.message.split(" ")[0]) for e in errors} >= {("B", "column"), ("C", "columns"),
                                                                     ("D", "column")}
    assert any("no column period" in e.message for e in errors)
