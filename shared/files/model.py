"""What every reader and writer shares: a cell, a row, a table, the one shape of an error."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import NamedTuple

#: A cell as a reader hands it on: text from CSV and JSON; text, a number or a boolean from Excel.
Cell = str | int | float | bool | None
#: A cell as a writer takes it: d06's figures are exact decimals.
OutCell = str | int | float | Decimal | bool | None


@dataclass(frozen=True, slots=True)
class FileError:
    """One thing wrong with a file, as the import summary lists it (DESIGN §9: row, column, value, message).

    `row` is numbered as a spreadsheet numbers it (the header is row 1; in DHIS2 JSON, the data value's
    position in `dataValues` from 1); `column` is the spreadsheet's letter (`C`) for CSV and Excel and the
    field's name for DHIS2 JSON; either is None where the error is about the whole file.
    """

    row: int | None
    column: str | None
    value: str | None
    message: str


class Row(NamedTuple):
    """A data row: its spreadsheet number and its cells by d06 field name (`unit`, `value`, …)."""

    number: int
    cells: dict[str, Cell]


@dataclass(frozen=True, slots=True)
class Table:
    """A file being read: its rows (or the errors of single rows) one by one, and where each field is,
    to name the column of an error found later (in a cell's number, say): `{"value": "D"}` for CSV and
    Excel, `{"value": "value"}` for DHIS2 JSON."""

    columns: Mapping[str, str]
    rows: Iterator[Row | FileError]


class FileRejected(Exception):
    """The file as a whole cannot be read (no header, not UTF-8, not an xlsx, …): nothing in it is used."""

    def __init__(self, errors: list[FileError]) -> None:
        super().__init__("; ".join(e.message for e in errors))
        self.errors = errors

    @classmethod
    def one(cls, message: str, *, row: int | None = None, column: str | None = None,
            value: str | None = None) -> FileRejected:
        return cls([FileError(row, column, value, message)])


class CellError(ValueError):
    """One cell cannot be read as what its column holds; the caller knows the row and column to name."""


def column_letter(index: int) -> str:
    """A 0-based column index as a spreadsheet names the column: 0 -> A, 25 -> Z, 26 -> AA."""
    letters = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        letters = chr(ord("A") + rest) + letters
    return letters


def shown(value: object) -> str | None:
    """A cell as an error quotes it: long comments cut so that a summary of 1,000 errors stays readable."""
    if value is None:
        return None
    text = str(value)
    return text if len(text) <= 200 else text[:199] + "…"
