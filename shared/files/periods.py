"""Periods as people and DHIS2 write them, read into d06's period codes.

A commune officer writes `T7/2024` or `6 tháng đầu năm 2024`; DHIS2 exports `202407` and `2024S1`. All
of them name one d06 period (`2024-07`, `2024-H1`), parsed by shared.periods so that the bounds and the
year window are the same as for `POST /v1/events`.
"""

from __future__ import annotations

import re
from datetime import date, datetime

from shared.files.cells import fold
from shared.files.model import Cell, CellError
from shared.periods import Period, PeriodError, PeriodType, parse_period

ACCEPTED = ("2024-07, 07/2024 or T7/2024 (a month); Q3/2024 or 2024-Q3 (a quarter); 6 tháng đầu năm 2024 or "
            "2024-H1 (a half-year); 2024 (a year); 15/07/2024 or 2024-07-15 (a day); or DHIS2's 202407, "
            "2024Q3, 2024S1, 20240715")

_ROMAN = {"i": 1, "ii": 2, "iii": 3, "iv": 4}
_YEAR = r"(?:nam\s*)?(\d{4})"  # `năm 2024` and `2024` alike
_SEP = r"\s*(?:[/.-]|\s|nam)\s*"  # 7/2024, 7-2024, 7.2024, tháng 7 năm 2024

# Each pattern is matched on the folded text (lower case, no diacritics) and gives the d06 code.
_FORMS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(rf"^{_YEAR}$"), "{0}"),
    (re.compile(r"^(\d{4})-(\d{1,2})$"), "{0}-{1:02d}"),  # 2024-7, and 2024-13 said to be no month
    (re.compile(r"^(\d{4})(\d{2})$"), "{0}-{1:02d}"),  # DHIS2 monthly 202407
    (re.compile(r"^(\d{4})(\d{2})(\d{2})$"), "{0}-{1:02d}-{2:02d}"),  # DHIS2 daily 20240715
    (re.compile(r"^(\d{4})q([1-4])$"), "{0}-Q{1}"),  # DHIS2 quarterly
    (re.compile(r"^(\d{4})s([12])$"), "{0}-H{1}"),  # DHIS2 six-monthly
    (re.compile(rf"^(?:t|thang)?\s*(\d{{1,2}}){_SEP}(\d{{4}})$"), "{1}-{0:02d}"),
    (re.compile(rf"^(?:q|quy)\s*([1-4]|i{{1,3}}|iv){_SEP}(\d{{4}})$"), "{1}-Q{0}"),
    (re.compile(rf"^(?:h|s)([12]){_SEP}(\d{{4}})$"), "{1}-H{0}"),
    (re.compile(r"^6 thang dau(?: nam)?\s*(\d{4})$"), "{0}-H1"),
    (re.compile(r"^6 thang cuoi(?: nam)?\s*(\d{4})$"), "{0}-H2"),
    (re.compile(r"^(\d{1,2})\s*[/.-]\s*(\d{1,2})\s*[/.-]\s*(\d{4})$"), "{2}-{1:02d}-{0:02d}"),  # 15/07/2024
]

_DHIS2 = {
    PeriodType.YEAR: "{y}",
    PeriodType.HALF: "{y}S{n}",
    PeriodType.QUARTER: "{y}Q{n}",
    PeriodType.MONTH: "{y}{m:02d}",
    PeriodType.DAY: "{y}{m:02d}{d:02d}",
}


class PeriodCellError(CellError):
    """A period cell that names no period; the message lists the forms accepted."""


def _number(group: str) -> int:
    return _ROMAN[group] if group in _ROMAN else int(group)


def read_period(cell: Cell) -> Period:
    """The d06 period a cell names, in any form people or DHIS2 write; raises PeriodCellError."""
    if isinstance(cell, datetime | date):
        raise PeriodCellError("a date is not a period; write the period as text, e.g. 2024-07")
    if isinstance(cell, bool) or cell is None or (isinstance(cell, float) and not cell.is_integer()):
        raise PeriodCellError(f"'{cell if cell is not None else ''}' is not a period; write {ACCEPTED}")
    text = str(int(cell)) if isinstance(cell, int | float) else cell.strip()
    try:
        return parse_period(text)  # d06's own codes first: the export writes them
    except PeriodError:
        pass
    folded = fold(text)
    for pattern, template in _FORMS:
        match = pattern.match(folded)
        if match is None:
            continue
        code = template.format(*(_number(g) for g in match.groups()))
        try:
            return parse_period(code)
        except PeriodError as exc:  # 13/2024, 2024Q3 of the year 1900: say it about what was written
            raise PeriodCellError(f"'{text}' is not a real period ({exc})") from exc
    raise PeriodCellError(f"'{text}' is not a period; write {ACCEPTED}")


def dhis2_period(period: Period) -> str:
    """A d06 period in DHIS2's form: `2024-07` -> `202407`, `2024-H1` -> `2024S1`."""
    start = period.start
    n = {PeriodType.HALF: (start.month - 1) // 6 + 1, PeriodType.QUARTER: (start.month - 1) // 3 + 1}
    return _DHIS2[period.type].format(y=start.year, m=start.month, d=start.day, n=n.get(period.type, 0))
