"""A file's rows as the events of POST /v1/events, and the events' rejections as the file's errors.

Pure, like validation.py: the readers of shared/files give rows of cells; this turns each row into the
dict a client would have sent in `events` (figures as exact decimals, periods as d06 codes, a unit named
by its name replaced by its code), so that validation.py judges an imported row exactly as it judges a
posted event. Its `events[i].field` locations are turned back into the row and column a spreadsheet shows.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from services.ingest.validation import BatchValidation, Context, Rejection, validate_batch
from shared.auth import Principal
from shared.catalog import Catalog, Measure
from shared.files.cells import is_empty, parse_boolean, parse_number, parse_text
from shared.files.model import Cell, CellError, FileError, Row, shown
from shared.files.periods import read_period
from shared.hierarchy import Edition, Hierarchy, Unit, edition_for

FIGURES = ("value", "numerator", "denominator")
_EDITIONS = tuple(e.value for e in Edition)


def _name_key(name: str) -> str:
    # An exact name, as typed with or without Vietnamese's composed letters and in any case.
    return " ".join(unicodedata.normalize("NFC", name).casefold().split())


class Units:
    """Units by GSO code, or by exact name where that name is unique among the units the key may see.

    Names are looked up only inside the key's scope: a commune's officer means the `Xã Tân Lập` of their
    own district, not one of the others of the country. The index of an edition is built on first use.
    """

    def __init__(self, hierarchy: Hierarchy, principal: Principal) -> None:
        self.hierarchy = hierarchy
        self.principal = principal
        self._names: dict[str, dict[str, list[Unit]]] = {}
        self._codes: dict[tuple[str, str | None], str] = {}  # a file names a few thousand units, many times

    def _index(self, edition: str) -> dict[str, list[Unit]]:
        index = self._names.get(edition)
        if index is None:
            index = {}
            for unit in self.hierarchy:
                if unit.edition == edition and self.principal.can_see(unit):
                    index.setdefault(_name_key(unit.name), []).append(unit)
            self._names[edition] = index
        return index

    def code(self, given: str, edition: str | None) -> str:
        """The GSO code a cell names; raises CellError for a name no unit or several units have."""
        code = self._codes.get((given, edition))
        if code is None:
            code = self._codes[given, edition] = self._code(given, edition)  # errors are not remembered
        return code

    def _code(self, given: str, edition: str | None) -> str:
        if edition is None or any(self.hierarchy.get(e, given) for e in _EDITIONS):
            return given  # a code (validation checks its edition and scope), or nothing to look a name up in
        found = self._index(edition).get(_name_key(given), [])
        if len(found) == 1:
            return found[0].code
        if not found:
            raise CellError(f"no unit has the code or the name '{given}' in the {edition} edition within the "
                            "key's scope; write the GSO code (e.g. 00001) or the unit's full name (Phường Phúc Xá)")
        candidates = ", ".join(f"{u.code} ({self._parent(u)})" for u in sorted(found, key=lambda u: u.code)[:10])
        raise CellError(f"'{given}' is the name of {len(found)} units in the key's scope: {candidates}; "
                        "write the GSO code instead")

    def _parent(self, unit: Unit) -> str:
        parent = self.hierarchy.get(unit.edition, unit.parent_code or "")
        return f"in {parent.name}" if parent else unit.level


@dataclass(slots=True)
class Prepared:
    """One chunk of a file: the events validated (events[i] came from rows[i]) and the rows already
    refused by the reader or a cell parser."""

    rows: list[Row] = field(default_factory=list)
    validation: BatchValidation = field(default_factory=lambda: BatchValidation([], []))
    refused: list[FileError] = field(default_factory=list)
    derived: list[Row] = field(default_factory=list)  # rows of d06's own figures: counted unchanged
    read: int = 0  # rows of the file this chunk covers, refused ones included


class Derived:
    """A row an export marked as d06's own figure (`source: computed`, `basis: reexpressed`): a sum or a
    re-expression d06 keeps computing, never a figure anyone reported. Importing it again changes nothing."""


DERIVED = Derived()


#: A file repeats a few dozen period cells thousands of times; `typed`, so that True is not taken for 1.
_period = lru_cache(maxsize=4096, typed=True)(read_period)


def _text(cell: Cell) -> str | None:
    # parse_text's answer without its checks for CSV's cells (text, or None for a column the file lacks)
    if cell is None:
        return None
    if type(cell) is str:
        return cell.strip() or None
    return parse_text(cell)


def to_event(
    row: Row, columns: dict[str, str], catalog: Catalog, units: Units
) -> dict[str, Any] | FileError | Derived:
    """The event a row stands for, DERIVED, or the error of the first cell that cannot be read."""
    cells = row.cells
    get = cells.get
    current = "unit"
    if _text(get("source")) == "computed" or _text(get("basis")) == "reexpressed":
        return DERIVED
    try:
        event: dict[str, Any] = {}
        for name in ("indicator", "event_id", "edition", "comment"):
            current = name
            text = _text(get(name))
            if text is not None:
                event[name] = text
        current = "period"
        cell = get("period")
        period = None if is_empty(cell) else _period(cell.strip() if type(cell) is str else cell)
        if period is not None:
            event["period"] = period.code
        current = "unit"
        unit = _text(get("unit"))
        if unit is not None:
            edition = event.get("edition")
            if edition is not None:
                edition = edition if edition in _EDITIONS else None
            elif period is not None:
                edition = edition_for(period.end).value
            event["unit"] = units.code(unit, edition)
        indicator = catalog.get(str(event.get("indicator", "")))
        measure = indicator.measure if indicator else None
        given = [f for f in FIGURES if (c := get(f)) is not None and not is_empty(c)]
        if measure is Measure.RATIO and "numerator" in given and "denominator" in given:
            given = [f for f in given if f != "value"]  # the percentage an export writes beside them
        for name in given:
            current = name
            boolean = measure is Measure.BOOLEAN and name == "value"
            event[name] = parse_boolean(cells[name]) if boolean else parse_number(cells[name])
        if not given:  # an empty figure is no value: the row withdraws the one sent before
            if measure is Measure.RATIO:
                event.update(numerator=None, denominator=None)
            else:
                event["value"] = None
    except CellError as exc:
        return FileError(row.number, columns.get(current), shown(cells.get(current)), str(exc))
    return event


def prepare(rows: Iterator[Row | FileError], size: int, columns: dict[str, str], ctx: Context,
            units: Units) -> Prepared | None:
    """The next `size` rows of a file read, turned into events and validated; None at the file's end."""
    chunk = Prepared()
    events: list[dict[str, Any]] = []
    for item in rows:
        chunk.read += 1
        event = item if isinstance(item, FileError) else to_event(item, columns, ctx.catalog, units)
        if isinstance(event, FileError):
            chunk.refused.append(event)
        elif isinstance(event, Derived):
            assert isinstance(item, Row)
            chunk.derived.append(item)
        else:
            assert isinstance(item, Row)
            chunk.rows.append(item)
            events.append(event)
        if chunk.read >= size:
            break
    if chunk.read == 0:
        return None
    chunk.validation = validate_batch(events, ctx)
    return chunk


def rejection_errors(rejection: Rejection, row: Row, columns: dict[str, str]) -> list[FileError]:
    """A validation rejection (`events[3].period: …`) as errors on the row and column of the file."""
    errors = []
    for error in rejection.errors:
        name = error.loc.rpartition(".")[2] if "." in error.loc else None
        column = columns.get(name) if name else None
        value = row.cells.get(name) if name else None
        errors.append(FileError(row.number, column, shown(value), error.message))
    return errors
