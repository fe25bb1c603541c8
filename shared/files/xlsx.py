"""Excel in (the first sheet of an .xlsx, openpyxl's read-only mode) and out (write-only mode).

Both modes keep memory flat whatever the sheet's size: read-only parses the sheet's XML as it is
iterated, write-only spools rows to a temporary file. A cell the import cannot take as it stands — a
formula, a date where a period should be, an error value — is refused on its row, never evaluated or
guessed at: d06 stores the figure the commune typed.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import date, datetime, time
from typing import IO, Any, BinaryIO

from openpyxl import Workbook, load_workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.cell.cell import Cell as XlCell
from openpyxl.styles import Font
from openpyxl.utils.exceptions import InvalidFileException

from shared.files.cells import protect_quote
from shared.files.columns import BY_FIELD, map_header
from shared.files.model import Cell, FileError, FileRejected, OutCell, Row, Table, column_letter, shown
from shared.files.xlsx_guard import open_checked, sheet_layout

_UNREADABLE = (KeyError, ValueError, OSError, SyntaxError, zipfile.BadZipFile, InvalidFileException)
_DATE_AS_PERIOD = ("is a date, and a date is not a period: write the period as text, e.g. 2024-07 (format the "
                   "column as Text before typing, or type '2024-07)")


def _check_header(archive: zipfile.ZipFile, member: str, width: int) -> None:
    layout = sheet_layout(archive, member)
    problems: list[FileError] = []
    if layout.header_hidden:
        problems.append(FileError(1, None, None, "the header row (row 1) is hidden: unhide it, so that what is "
                                                 "imported is what you see"))
    for ref in layout.header_merges:
        problems.append(FileError(1, ref.split(":")[0].rstrip("0123456789"), None, f"the header cells {ref} are "
                                  "merged: give every column its own header cell"))
    for index in sorted(i - 1 for i in layout.hidden_columns if i <= width):
        letter = column_letter(index)
        problems.append(FileError(1, letter, None, f"column {letter} is hidden: unhide it or delete it, so that "
                                                   "what is imported is what you see"))
    if problems:
        raise FileRejected(problems)


def _plain(value: object) -> Cell:
    """A cell's value as the import handles it; rich text and the like as the text they show."""
    return value if value is None or isinstance(value, str | int | float) else str(value)


def _cell(number: int, index: int, cell: Any, period_at: int | None) -> Cell | FileError:
    letter = column_letter(index)
    value = cell.value
    if cell.data_type == "f":
        return FileError(number, letter, shown(value), f"cell {letter}{number} holds a formula; d06 takes the "
                         "figure itself: copy the column and paste it back as values only")
    if cell.data_type == "e":
        return FileError(number, letter, shown(value), f"cell {letter}{number} holds the error {value}")
    if isinstance(value, datetime | date | time):
        what = _DATE_AS_PERIOD if index == period_at else "is a date, where text or a number should be"
        return FileError(number, letter, shown(value), f"cell {letter}{number} {what}")
    return _plain(value)


def read_xlsx(stream: BinaryIO) -> Table:
    """The first sheet of an .xlsx: the header checked at once (raising FileRejected), rows as iterated.

    `stream` must be seekable (a zip is read from its end); the route spools the upload to a file.
    """
    archive = open_checked(stream)
    stream.seek(0)
    try:
        workbook = load_workbook(stream, read_only=True, data_only=False)
        sheet = workbook.worksheets[0]
    except _UNREADABLE as exc:
        raise FileRejected.one(f"the workbook cannot be read ({exc}); save it again from Excel as .xlsx") from exc
    sheet.reset_dimensions()  # some writers record a wrong size; read every row there is
    rows = sheet.iter_rows()
    first = next(rows, None)
    if first is None:
        raise FileRejected.one("the first sheet is empty: its first row must be the header")
    names = [_plain(c.value) for c in first]
    width = max((i + 1 for i, name in enumerate(names) if name is not None), default=0)
    # before the header's own checks: a merge leaves blank cells, and the merge is what to tell the user
    _check_header(archive, sheet._worksheet_path, width)  # type: ignore[attr-defined]  # read-only sheets have it
    header = map_header(names)
    period_at = next((i for i, f in header.positions if f == "period"), None)
    imported = {i for i, _ in header.positions}

    def data() -> Iterator[Row | FileError]:
        try:
            for number, cells in enumerate(rows, start=2):
                raw: list[Cell] = []
                for index, cell in enumerate(cells):
                    value = _cell(number, index, cell, period_at)
                    if isinstance(value, FileError):
                        if index in imported or index >= header.width:
                            yield value
                            break
                        value = None  # an informational column's formula is the export's own business
                    raw.append(value)
                else:
                    row = header.row(number, raw)
                    if row is not None:
                        yield row
        finally:
            workbook.close()

    return Table(header.letters, data())


def _out(cell: OutCell, ws: Any) -> XlCell:
    if isinstance(cell, str):
        out = WriteOnlyCell(ws, value=protect_quote(cell))
        out.data_type = "s"  # openpyxl makes any text starting with `=` a formula; this one stays text
        return out
    return WriteOnlyCell(ws, value=cell)  # type: ignore[arg-type]


def write_xlsx(out: IO[bytes], columns: Sequence[str], rows: Iterable[Mapping[str, OutCell]]) -> None:
    """An Excel export: one sheet, Vietnamese headers in bold, numbers as numbers, periods and codes as text."""
    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet("d06")
    bold = Font(bold=True)
    heads = []
    for field in columns:
        head = WriteOnlyCell(sheet, value=BY_FIELD[field].header_vi)
        head.font = bold
        heads.append(head)
    sheet.append(heads)
    for row in rows:
        sheet.append([_out(row.get(field), sheet) for field in columns])
    workbook.save(out)
