"""What is checked in an .xlsx before openpyxl reads it: that it is one, that it is no zip bomb, and that
its header row is not merged or hidden.

An .xlsx is a zip of XML. A few kilobytes of zip can declare gigabytes of XML (a "zip bomb"); Python's
zipfile never inflates a member past the size its directory declares (it fails the CRC instead), so the
declared sizes checked here bound what any later read can inflate.
"""

from __future__ import annotations

import re
import zipfile
from dataclasses import dataclass
from typing import BinaryIO

from shared.files.model import FileRejected

#: A 1,000,000-row sheet (DESIGN §9's limit) is a few hundred MB of XML; more than this is no report.
MAX_UNCOMPRESSED = 1 << 30
#: Sheet XML compresses about 10:1, a sheet of identical rows about 100:1; a bomb, by 1,000:1 and more.
MAX_RATIO = 200
MAX_MEMBERS = 10_000
_NOT_XLSX = ("is not an Excel workbook (.xlsx); an old .xls or a password-protected workbook cannot be read "
             "either: save it as .xlsx without a password, or as CSV UTF-8")
_CHUNK = 1 << 20
_OVERLAP = 4096  # longer than any tag searched for, so a tag cut by a chunk's end is found in the next

_COL = re.compile(rb"<(?:\w+:)?col\s([^>]*)>")
_ROW1 = re.compile(rb"<(?:\w+:)?row\s[^>]*?\br=\"1\"[^>]*>")
_MERGE = re.compile(rb"<(?:\w+:)?mergeCell\s[^>]*?ref=\"([A-Z]+(\d+)(?::[A-Z]+\d+)?)\"")
_HIDDEN = re.compile(rb"\bhidden=\"(?:1|true)\"")
_MINMAX = re.compile(rb"\bmin=\"(\d+)\"[^>]*?\bmax=\"(\d+)\"|\bmax=\"(\d+)\"[^>]*?\bmin=\"(\d+)\"")


def open_checked(stream: BinaryIO, *, max_uncompressed: int = MAX_UNCOMPRESSED,
                 max_ratio: int = MAX_RATIO) -> zipfile.ZipFile:
    """The file as a zip, after checking it is an xlsx whose declared sizes are sane; raises FileRejected."""
    try:
        archive = zipfile.ZipFile(stream)
        members = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise FileRejected.one(f"the file {_NOT_XLSX}") from exc
    names = {m.filename for m in members}
    if "[Content_Types].xml" not in names or "xl/workbook.xml" not in names:
        raise FileRejected.one(f"the file is a zip but {_NOT_XLSX}")
    if len(members) > MAX_MEMBERS:
        raise FileRejected.one(f"the workbook holds {len(members)} parts; an export of figures holds a few")
    total = sum(m.file_size for m in members)
    bomb = ("the workbook would unpack to {} from {} bytes: refused as a possible zip bomb; if it is a real "
            "report, split it or save it as CSV")
    if total > max_uncompressed:
        raise FileRejected.one(bomb.format(f"{total:,} bytes", sum(m.compress_size for m in members)))
    for m in members:
        if m.file_size > _CHUNK and m.file_size > max_ratio * max(m.compress_size, 1):
            raise FileRejected.one(bomb.format(f"{m.file_size:,} bytes ({m.filename})", m.compress_size))
    return archive


@dataclass(frozen=True, slots=True)
class Layout:
    hidden_columns: frozenset[int]  # 1-based, as the XML numbers them
    header_hidden: bool
    header_merges: tuple[str, ...]  # ranges such as "A1:B1" that touch row 1


def sheet_layout(archive: zipfile.ZipFile, member: str) -> Layout:
    """The hidden columns, the header row's visibility and the merged ranges touching row 1 of one sheet.

    openpyxl's read-only mode, the one that keeps memory flat, does not read these, so the sheet's XML is
    scanned for the few tags that carry them (merges sit after all the rows, so the scan reads it all).
    """
    hidden: set[int] = set()
    header_hidden = False
    merges: list[str] = []
    tail = b""
    with archive.open(member) as xml:
        while chunk := xml.read(_CHUNK):
            buffer = tail + chunk
            fresh = len(tail)  # a match ending inside the old tail was seen with the previous chunk
            for match in _COL.finditer(buffer):
                if match.end() > fresh and _HIDDEN.search(match.group(1)):
                    bounds = _MINMAX.search(match.group(1))
                    if bounds:
                        low, high = (bounds.group(1), bounds.group(2)) if bounds.group(1) else (
                            bounds.group(4), bounds.group(3))
                        hidden.update(range(int(low), min(int(high), 16384) + 1))
            for match in _ROW1.finditer(buffer):
                if match.end() > fresh and _HIDDEN.search(match.group(0)):
                    header_hidden = True
            for match in _MERGE.finditer(buffer):
                if match.end() > fresh and int(match.group(2)) == 1:
                    merges.append(match.group(1).decode())
            tail = buffer[-_OVERLAP:]
    return Layout(frozenset(hidden), header_hidden, tuple(merges))
