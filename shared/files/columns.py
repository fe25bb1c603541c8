"""d06's file columns: their names in English and Vietnamese, and a header row mapped onto them.

One table serves the import (which header means which field) and the export (which header to write), so
that an exported file always imports again: the export's informational columns are in the table too,
marked as not imported.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from shared.files.cells import fold, is_empty, unquote
from shared.files.model import Cell, FileError, FileRejected, Row, column_letter, shown


@dataclass(frozen=True, slots=True)
class Column:
    field: str  # d06's name, also the CSV export's header
    header_vi: str  # the Excel export's header
    aliases: tuple[str, ...] = ()  # other headers people write, folded
    imported: bool = True  # False: written by the export for people to read, ignored on import


COLUMNS: tuple[Column, ...] = (
    Column("unit", "Mã đơn vị", ("don vi",)),
    Column("name", "Tên đơn vị", ("ten",), imported=False),
    Column("level", "Cấp", (), imported=False),
    Column("indicator", "Mã chỉ tiêu", ("chi tieu",)),
    Column("period", "Kỳ", ("ky bao cao",)),
    Column("value", "Giá trị"),
    Column("numerator", "Tử số"),
    Column("denominator", "Mẫu số"),
    Column("edition", "Phiên bản", ("ky dia gioi",)),
    Column("event_id", "Mã sự kiện"),
    Column("comment", "Ghi chú"),
    Column("source", "Nguồn", (), imported=False),
    Column("basis", "Cơ sở", (), imported=False),
    Column("estimated", "Ước tính", (), imported=False),
    Column("reporting", "Số đơn vị đã báo cáo", (), imported=False),
    Column("expected", "Số đơn vị phải báo cáo", (), imported=False),
    Column("target", "Mục tiêu", (), imported=False),
    Column("flags", "Cảnh báo", (), imported=False),
)
BY_FIELD = {c.field: c for c in COLUMNS}
IMPORTED = tuple(c.field for c in COLUMNS if c.imported)
# Written by the export and read back, never submitted: they tell a figure d06 derived (a computed sum, a
# re-expressed value) from one a unit reported, so that importing an export again submits only the latter.
PROVENANCE = ("source", "basis")
REQUIRED = ("unit", "indicator", "period")


def _key(header: str) -> str:
    return fold(header).replace("_", " ")


_BY_HEADER: dict[str, Column] = {}
for _column in COLUMNS:
    for _name in (_column.field, _column.header_vi, *_column.aliases):
        _BY_HEADER[_key(_name)] = _column


def _named(column: Column) -> str:
    return f"{column.field} ({column.header_vi})"


@dataclass(frozen=True, slots=True)
class Header:
    """A file's header row mapped onto d06's fields; turns each data row into a Row."""

    positions: tuple[tuple[int, str], ...]  # (0-based index, field) of the imported columns
    width: int  # cells in the header row; a value right of them has no column
    letters: dict[str, str]  # field -> the column's letter, for errors

    def row(self, number: int, raw: Sequence[Cell]) -> Row | FileError | None:
        """A data row's cells by field; None for a blank row (spreadsheets keep them); a FileError for a
        value in a column that has no header."""
        width = len(raw)
        for index in range(self.width, width):
            if not is_empty(raw[index]):
                letter = column_letter(index)
                return FileError(number, letter, shown(raw[index]),
                                 f"a value in column {letter}, which has no header")
        if all(is_empty(cell) for cell in raw):
            return None
        # Once per row of a million-row file: a cell is unquoted only when it starts with `'` (rarely).
        cells: dict[str, Cell] = {}
        for index, field in self.positions:
            cell = raw[index] if index < width else None
            cells[field] = unquote(cell) if type(cell) is str and cell[:1] == "'" else cell
        return Row(number, cells)


def map_header(raw: Sequence[Cell]) -> Header:
    """Map a header row (any order, any case, surrounding spaces, Vietnamese with or without diacritics);
    raises FileRejected listing every unknown, duplicate, blank or missing column at once."""
    cells = list(raw)
    while cells and is_empty(cells[-1]):
        cells.pop()
    if not cells:
        raise FileRejected.one("the first row is empty: it must be the header, naming the columns "
                               f"({', '.join(IMPORTED)})", row=1)
    errors: list[FileError] = []
    seen: dict[str, str] = {}
    positions: list[tuple[int, str]] = []
    for index, cell in enumerate(cells):
        letter = column_letter(index)
        if is_empty(cell):
            errors.append(FileError(1, letter, None, f"column {letter} has no header (a merged or blank header "
                                                     "cell): give every column its own header in row 1"))
            continue
        text = str(cell).strip()
        column = _BY_HEADER.get(_key(text))
        if column is None:
            errors.append(FileError(1, letter, shown(text), f"column {letter} '{text}' is not a d06 column; the "
                                    f"columns are {', '.join(_named(BY_FIELD[f]) for f in IMPORTED)}"))
        elif column.field in seen:
            errors.append(FileError(1, letter, shown(text), f"columns {seen[column.field]} and {letter} are both "
                                    f"{_named(column)}: keep one"))
        else:
            seen[column.field] = letter
            if column.imported or column.field in PROVENANCE:
                positions.append((index, column.field))
    missing = [f for f in REQUIRED if f not in seen]
    if "value" not in seen and "numerator" not in seen:
        missing.append("value")
    if ("numerator" in seen) != ("denominator" in seen):
        missing.append("denominator" if "numerator" in seen else "numerator")
    errors.extend(FileError(1, None, None, f"the header has no column {_named(BY_FIELD[f])}") for f in missing)
    if errors:
        raise FileRejected(errors)
    return Header(tuple(positions), len(cells), seen)
