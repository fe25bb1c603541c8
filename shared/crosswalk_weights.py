"""A weights file for the crosswalk (`d06 crosswalk weights FILE.csv`), read and checked without a database.

Columns `legacy_code,code_2025,weight,basis`. Every problem is reported against its line as a spreadsheet
numbers it (the header is line 1), so that a file is fixed in one pass; a file with any problem changes
nothing. Each legacy commune the file names must have every piece it went into listed, with weights that
sum to 1 within TOLERANCE; they are stored settled to exactly 1 (shared.crosswalk.settle).
"""

from __future__ import annotations

import csv
import io
import re
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from shared.crosswalk import WHOLE, settle

COLUMNS = ("legacy_code", "code_2025", "weight", "basis")
TOLERANCE = Decimal("1e-6")
_BASIS = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,39}")


@dataclass(frozen=True, slots=True)
class WeightLine:
    line: int
    legacy_code: str
    code_2025: str
    weight: Decimal
    basis: str


@dataclass(frozen=True, slots=True)
class BadLine:
    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


@dataclass(frozen=True, slots=True)
class Known:
    """What the database holds: the crosswalk's pairs and the codes of both editions."""

    targets: Mapping[str, frozenset[str]]  # legacy code -> the 2025 codes it goes into
    levels: Mapping[str, str]  # legacy code -> its legacy_level in the crosswalk
    legacy_codes: frozenset[str]
    codes_2025: frozenset[str]


def parse_weights(data: bytes) -> tuple[list[WeightLine], list[BadLine]]:
    """The file's well-formed lines and its malformed ones."""
    try:
        content = data.decode("utf-8-sig")  # a spreadsheet's "CSV UTF-8" starts with a byte-order mark
    except UnicodeDecodeError as exc:
        return [], [BadLine(1, f"the file is not UTF-8 text ({exc.reason} at byte {exc.start})")]
    rows = list(csv.reader(io.StringIO(content, newline="")))
    if not rows or tuple(c.strip() for c in rows[0]) != COLUMNS:
        return [], [BadLine(1, f"the header must be {','.join(COLUMNS)}")]
    lines: list[WeightLine] = []
    bad: list[BadLine] = []
    for number, row in enumerate(rows[1:], start=2):
        if not any(c.strip() for c in row):
            continue  # a blank line
        cells = [c.strip() for c in row]
        if len(cells) != len(COLUMNS):
            bad.append(BadLine(number, f"{len(cells)} column(s), expected {len(COLUMNS)}: {','.join(COLUMNS)}"))
            continue
        legacy_code, code_2025, weight_text, basis = cells
        problems = [f"{name} is empty" for name, value in zip(COLUMNS, cells, strict=True) if not value]
        weight = _weight(weight_text, problems)
        if basis and not _BASIS.fullmatch(basis):
            problems.append(f"basis {basis!r} is not a label (a letter, then letters, digits, _ . -; ≤ 40)")
        if basis == WHOLE and weight is not None and weight != 1:
            problems.append(f"basis 'whole' means weight 1, not {weight_text}")
        if problems or weight is None:
            bad.extend(BadLine(number, p) for p in problems)
        else:
            lines.append(WeightLine(number, legacy_code, code_2025, weight, basis))
    if not lines and not bad:
        bad.append(BadLine(1, "the file names no weights"))
    return lines, bad


def _weight(text: str, problems: list[str]) -> Decimal | None:
    if not text:
        return None
    try:
        weight = Decimal(text)
    except InvalidOperation:
        problems.append(f"weight {text!r} is not a number")
        return None
    if not weight.is_finite() or not 0 <= weight <= 1:
        problems.append(f"weight {text} is not between 0 and 1")
        return None
    return weight


def check_weights(lines: list[WeightLine], known: Known) -> list[BadLine]:
    """Lines naming unknown codes or pairs, a pair twice, or a legacy commune whose pieces are missing or whose
    weights do not sum to 1: every such line, by line number."""
    bad: list[BadLine] = []
    by_legacy: dict[str, list[WeightLine]] = defaultdict(list)
    seen: dict[tuple[str, str], int] = {}
    for w in lines:
        by_legacy[w.legacy_code].append(w)
        if (w.legacy_code, w.code_2025) in seen:
            bad.append(BadLine(w.line, f"{w.legacy_code} -> {w.code_2025} is already on line "
                                       f"{seen[w.legacy_code, w.code_2025]}"))
        seen.setdefault((w.legacy_code, w.code_2025), w.line)
        if w.legacy_code not in known.legacy_codes:
            bad.append(BadLine(w.line, f"no legacy unit {w.legacy_code}"))
        if w.code_2025 not in known.codes_2025:
            bad.append(BadLine(w.line, f"no 2025 unit {w.code_2025}"))
        if known.levels.get(w.legacy_code) == "province":
            bad.append(BadLine(w.line, f"legacy province {w.legacy_code} goes whole into its 2025 province: "
                                       "it has no weights to set"))
        elif w.legacy_code in known.legacy_codes and w.code_2025 in known.codes_2025 \
                and w.code_2025 not in known.targets.get(w.legacy_code, frozenset()):
            bad.append(BadLine(w.line, f"{w.legacy_code} -> {w.code_2025} is not in the crosswalk"))
    for legacy_code, pieces in by_legacy.items():
        total = sum((w.weight for w in pieces), Decimal(0))
        if abs(total - 1) > TOLERANCE:
            bad.extend(BadLine(w.line, f"the weights of legacy unit {legacy_code} sum to {total}, not 1")
                       for w in pieces)
        missing = known.targets.get(legacy_code, frozenset()) - {w.code_2025 for w in pieces}
        if missing and known.levels.get(legacy_code) != "province":
            bad.extend(BadLine(w.line, f"legacy unit {legacy_code} also goes into {', '.join(sorted(missing))}: "
                                       "give the weight of every piece") for w in pieces)
    return sorted(bad, key=lambda b: b.line)


def settled(lines: list[WeightLine]) -> list[WeightLine]:
    """The checked lines with each legacy unit's weights summing to exactly 1 at the stored precision."""
    by_legacy: dict[str, list[WeightLine]] = defaultdict(list)
    for w in lines:
        by_legacy[w.legacy_code].append(w)
    result: list[WeightLine] = []
    for pieces in by_legacy.values():
        weights = settle([w.weight for w in pieces])
        result.extend(WeightLine(w.line, w.legacy_code, w.code_2025, x, w.basis)
                      for w, x in zip(pieces, weights, strict=True))
    return result
