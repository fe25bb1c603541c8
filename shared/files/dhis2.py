"""DHIS2 data value sets in (JSON and CSV, `idScheme=code`) and out (JSON), as d06 rows.

A DHIS2 data value is one number; a d06 ratio is two. DHIS2 carries a ratio's components as two data
elements, `code.numerator` and `code.denominator`, which are joined here into one row per unit, period
and indicator. Only the halves still waiting for their partner are held in memory, so a file whose
halves sit next to each other (as DHIS2 writes them) reads in flat memory.

JSON is parsed whole by orjson: DHIS2 puts set-level defaults (`orgUnit`, `period`) anywhere in the
document, the body is capped at 100 MB upstream, and orjson reads that in well under a second. A file
too large for memory at that cap should come as DHIS2 CSV, which is read line by line.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any, BinaryIO

import orjson

from shared.files.cells import as_text, fold
from shared.files.csvfile import records
from shared.files.model import Cell, FileError, FileRejected, OutCell, Row, Table, column_letter, shown
from shared.files.periods import PeriodCellError, dhis2_period, read_period
from shared.periods import parse_period

#: DHIS2's CSV columns, in the order DHIS2 documents and writes them (`deleted` since 2.36).
CSV_COLUMNS = ("dataelement", "period", "orgunit", "categoryoptioncombo", "attributeoptioncombo", "value",
               "storedby", "lastupdated", "comment", "followup", "deleted")
_CSV_REQUIRED = ("dataelement", "period", "orgunit", "value")
#: The default category option combination, by code and by the UID DHIS2 gives it: d06 has no
#: disaggregations (DESIGN §11), so a value for any other combination cannot be stored as it means.
_DEFAULT_COMBOS = {"", "default", "HllvX50cXC0"}
_PARTS = ("numerator", "denominator")
_JSON_COLUMNS = {"unit": "orgUnit", "indicator": "dataElement", "period": "period", "value": "value",
                 "numerator": "value", "denominator": "value", "comment": "comment"}


def _component(element: str) -> tuple[str, str | None]:
    code, _, part = element.rpartition(".")
    return (code, part) if code and part in _PARTS else (element, None)


class _Joiner:
    """Turns DHIS2 data values into d06 rows, holding each ratio half until its partner arrives."""

    def __init__(self, names: Mapping[str, str]) -> None:
        self.names = names  # DHIS2 field -> how an error names its column
        self.waiting: dict[tuple[str, str, str], tuple[int, str, Cell, Cell]] = {}

    def value(self, number: int, dv: Mapping[str, Any]) -> Row | FileError | None:
        for field in ("dataElement", "orgUnit", "period"):
            if not str(dv.get(field) or "").strip():
                return FileError(number, self.names[field], None, f"the data value has no {field}")
        for field in ("categoryOptionCombo", "attributeOptionCombo"):
            combo = str(dv.get(field) or "").strip()
            if combo not in _DEFAULT_COMBOS:
                return FileError(number, self.names[field], shown(combo), f"{field} '{combo}' is not the default: "
                                 "d06 keeps totals without disaggregation; send the total with the default combo")
        try:
            period = read_period(str(dv["period"]).strip()).code
        except PeriodCellError as exc:
            return FileError(number, self.names["period"], shown(dv["period"]), str(exc))
        unit, element = str(dv["orgUnit"]).strip(), str(dv["dataElement"]).strip()
        deleted = str(dv.get("deleted") or "").strip().lower() == "true"
        value = None if deleted else dv.get("value")
        if not isinstance(value, str | int | float | None):
            return FileError(number, self.names["value"], shown(value), "a value must be text or a number")
        comment: Cell = str(dv["comment"]) if dv.get("comment") else None
        code, part = _component(element)
        if part is None:
            return Row(number, {"unit": unit, "indicator": code, "period": period, "value": value, "comment": comment})
        key = (unit, code, period)
        other = self.waiting.pop(key, None)
        if other is None:
            self.waiting[key] = (number, part, value, comment)
            return None
        first, other_part, other_value, other_comment = other
        if other_part == part:
            self.waiting[key] = other
            return FileError(number, self.names["dataElement"], element, f"a second {element} for {unit} in "
                             f"{period} (the first is on row {first})")
        parts = {part: value, other_part: other_value}
        return Row(first, {"unit": unit, "indicator": code, "period": period, "numerator": parts["numerator"],
                           "denominator": parts["denominator"], "comment": other_comment or comment})

    def leftovers(self) -> Iterator[FileError]:
        for (unit, code, period), (number, part, _, _) in sorted(self.waiting.items(), key=lambda i: i[1][0]):
            partner = _PARTS[part == "numerator"]
            yield FileError(number, self.names["dataElement"], f"{code}.{part}", f"{code}.{part} for {unit} in "
                            f"{period} has no {code}.{partner}: a ratio needs both, for the same orgUnit and period")
        self.waiting.clear()

    def join(self, values: Iterable[tuple[int, Mapping[str, Any] | FileError]]) -> Iterator[Row | FileError]:
        for number, dv in values:
            out = dv if isinstance(dv, FileError) else self.value(number, dv)
            if out is not None:
                yield out
        yield from self.leftovers()


def read_dhis2_json(data: bytes) -> Table:
    """A DHIS2 `dataValueSets` JSON document; a row is a data value's position in `dataValues`, from 1."""
    try:
        document = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise FileRejected.one(f"the file is not JSON ({exc}); DHIS2 data value sets are JSON or CSV") from exc
    if not isinstance(document, dict) or not isinstance(document.get("dataValues"), list):
        raise FileRejected.one('the JSON has no "dataValues" list: it is not a DHIS2 data value set')
    defaults = {k: document[k] for k in ("orgUnit", "period", "attributeOptionCombo") if document.get(k)}

    def values() -> Iterator[tuple[int, Mapping[str, Any] | FileError]]:
        for number, dv in enumerate(document["dataValues"], start=1):
            if isinstance(dv, dict):
                yield number, {**defaults, **dv}
            else:
                yield number, FileError(number, None, shown(dv), "a data value must be a JSON object")

    names = {f: f for f in ("dataElement", "orgUnit", "period", "value", "categoryOptionCombo", "attributeOptionCombo")}
    return Table(_JSON_COLUMNS, _Joiner(names).join(values()))


def read_dhis2_csv(stream: BinaryIO) -> Table:
    """A DHIS2 CSV data value set. DHIS2 itself reads the columns by position and skips the header; d06
    reads them by the header's names (any case), so a file with its columns in another order is read right."""
    reader = records(stream)
    _, head = next(reader)
    where: dict[str, int] = {}
    problems: list[FileError] = []
    for index, name in enumerate(head):
        key = fold(name).replace(" ", "").replace("_", "")
        if key in where or key not in CSV_COLUMNS:
            problems.append(FileError(1, column_letter(index), shown(name), f"column {column_letter(index)} "
                            f"'{name}' is {'a second' if key in where else 'not a DHIS2 CSV column, one of'} "
                            f"{key if key in where else ', '.join(CSV_COLUMNS)}"))
        where.setdefault(key, index)
    problems += [FileError(1, None, None, f"the header has no column {c}") for c in _CSV_REQUIRED if c not in where]
    if problems:
        raise FileRejected(problems)
    fields = {"dataElement": "dataelement", "orgUnit": "orgunit", "period": "period", "value": "value",
              "comment": "comment", "categoryOptionCombo": "categoryoptioncombo",
              "attributeOptionCombo": "attributeoptioncombo", "deleted": "deleted"}
    names = {f: column_letter(where[c]) for f, c in fields.items() if c in where}
    names.update({f: c for f, c in fields.items() if c not in where})

    def values() -> Iterator[tuple[int, Mapping[str, Any] | FileError]]:
        for number, record in reader:
            if any(cell.strip() for cell in record):
                yield number, {f: record[where[c]] for f, c in fields.items() if c in where and where[c] < len(record)}

    columns = {"unit": names["orgUnit"], "indicator": names["dataElement"], "period": names["period"],
               "value": names["value"], "numerator": names["value"], "denominator": names["value"],
               "comment": names["comment"]}
    return Table(columns, _Joiner(names).join(values()))


def _data_value(element: str, row: Mapping[str, OutCell], value: OutCell) -> bytes:
    dv = {"dataElement": element, "period": dhis2_period(parse_period(str(row["period"]))),
          "orgUnit": row["unit"], "value": as_text(value)}
    if row.get("comment"):
        dv["comment"] = str(row["comment"])
    return orjson.dumps(dv)


def write_dhis2_json(rows: Iterable[Mapping[str, OutCell]]) -> Iterator[bytes]:
    """A DHIS2 `dataValueSets` JSON export in chunks: a ratio (a row with a denominator) as its two
    components, `code.numerator` and `code.denominator`; periods in DHIS2's form (`202407`, `2024S1`)."""
    yield b'{"dataValues":['
    separator = b""
    for row in rows:
        code = str(row["indicator"])
        if row.get("denominator") is not None:
            parts = [_data_value(f"{code}.{p}", row, row.get(p)) for p in _PARTS]
        else:
            parts = [_data_value(code, row, row.get("value"))]
        for part in parts:
            yield separator + part
            separator = b","
    yield b"]}"
