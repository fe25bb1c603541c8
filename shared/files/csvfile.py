"""CSV in (UTF-8 with or without a BOM, comma or semicolon) and out (UTF-8 with a BOM, comma).

Read line by line from a byte stream: a file of a million rows never sits in memory. Excel on Windows
opens a CSV without a BOM in the machine's code page and garbles Vietnamese, so the export writes one;
Excel in a Vietnamese locale saves CSV with semicolons, so the import takes both.
"""

from __future__ import annotations

import codecs
import csv
import io
import itertools
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import BinaryIO

from shared.files.cells import as_text, neutralise
from shared.files.columns import map_header
from shared.files.model import FileError, FileRejected, OutCell, Row, Table

_BOM = codecs.BOM_UTF8
_NOT_UTF8 = ("is not UTF-8 text; in Excel choose File > Save As > 'CSV UTF-8 (Comma delimited)', "
             "or save the file as .xlsx")
#: How many rows the writer gathers into one chunk of bytes: a streamed response sends each chunk.
_CHUNK_ROWS = 1000


def _lines(stream: BinaryIO) -> Iterator[str]:
    first = True
    for raw in stream:
        if first:
            raw = raw.removeprefix(_BOM)
            first = False
        yield raw.decode("utf-8")


def _delimiter(header_line: str) -> str:
    return ";" if header_line.count(";") > header_line.count(",") else ","


def records(stream: BinaryIO) -> Iterator[tuple[int, list[str]]]:
    """Each record of a CSV byte stream with its spreadsheet row number (the header is row 1; a quoted
    field over several lines is one row, as Excel counts it). Raises FileRejected on an empty file or a
    row that is not UTF-8, naming the row."""
    lines = _lines(stream)
    number = 0
    try:
        head = next(lines, "")
        if not head:  # no bytes, or a BOM alone
            raise FileRejected.one("the file is empty: the first row must be the header")
        reader = csv.reader(itertools.chain((head,), lines), delimiter=_delimiter(head), strict=True)
        for number, record in enumerate(reader, start=1):
            yield number, record
    except UnicodeDecodeError as exc:
        raise FileRejected.one(f"row {number + 1} {_NOT_UTF8}", row=number + 1) from exc
    except csv.Error as exc:
        raise FileRejected.one(f"row {number + 1} cannot be read as CSV: {exc}", row=number + 1) from exc


def read_csv(stream: BinaryIO) -> Table:
    """A d06 CSV: the header is mapped at once (raising FileRejected), the rows are read as they are
    iterated; each row is a Row of text cells or the FileError of that row."""
    reader = records(stream)
    first = next(reader, None)
    if first is None:  # pragma: no cover - records() raises on an empty file
        raise FileRejected.one("the file is empty: the first row must be the header")
    header = map_header(first[1])

    def rows() -> Iterator[Row | FileError]:
        for number, record in reader:
            row = header.row(number, record)
            if row is not None:
                yield row

    return Table(header.letters, rows())


def count_csv(stream: BinaryIO, limit: int) -> int:
    """The rows read_csv would give (a blank row is none), counted up to `limit + 1`, the header checked
    first; raises FileRejected as read_csv does. Only the csv module's parse: no cell is looked at alone."""
    reader = records(stream)
    first = next(reader, None)
    if first is None:  # pragma: no cover - records() raises on an empty file
        raise FileRejected.one("the file is empty: the first row must be the header")
    map_header(first[1])
    n = 0
    for _, record in reader:
        if "".join(record).strip():  # a cell with more than spaces: a row, or the error of one
            n += 1
            if n > limit:
                break
    return n


def write_csv(columns: Sequence[str], rows: Iterable[Mapping[str, OutCell]]) -> Iterator[bytes]:
    """A CSV export in chunks of bytes: BOM, header (d06's field names), rows. Text cells that Excel would
    run as a formula get a leading `'` (shared.files.cells.neutralise), which the reader removes."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(columns)
    yield _BOM + buffer.getvalue().encode()
    buffer.seek(0)
    buffer.truncate()
    for count, row in enumerate(rows, start=1):
        writer.writerow([neutralise(c) if isinstance(c := row.get(f), str) else as_text(c) for f in columns])
        if count % _CHUNK_ROWS == 0:
            yield buffer.getvalue().encode()
            buffer.seek(0)
            buffer.truncate()
    if buffer.tell():
        yield buffer.getvalue().encode()
