"""What one cell means: a number, a boolean, text, and the formula-injection rule for text.

d06 takes numbers as a program writes them (`1234.5`) and refuses locale-formatted ones: `1.234,5` is
one thousand two hundred and thirty-four and a half in Vietnam and one point two three four five…
nowhere; `1,234` is a thousand in English and one point two three four in Vietnamese. A national system
must not guess between them, so the message says how to write the number instead.
"""

from __future__ import annotations

import math
import re
import unicodedata
from decimal import Decimal, InvalidOperation

from shared.files.model import Cell, CellError, OutCell

_PLAIN = re.compile(r"^[+-]?\d+(?:\.\d+)?$")
_LOCALE = re.compile(r"^[+-]?[\d.,\s\u00a0\u202f']+$")  # digits with separators of some locale
_HOW = "write it with digits and at most one decimal point, without thousands separators: 1234.5 or 1234"

_TRUE = {"true", "co", "1", "dung"}
_FALSE = {"false", "khong", "0", "sai"}

#: A text cell that starts with one of these is a formula to Excel, LibreOffice and Google Sheets
#: (OWASP "CSV injection"): `=HYPERLINK(…)`, `+cmd|…`, `-2+3`, `@SUM(…)`, or one hidden behind a tab or CR.
INJECTION_STARTS = ("=", "+", "-", "@", "\t", "\r")
_QUOTE = "'"


def fold(text: str) -> str:
    """Lower case, no diacritics, single spaces: `  Mã  Đơn vị ` -> `ma don vi`.

    Headers and period words are matched on this, so that a file typed without Vietnamese accents (an
    old keyboard, a phone) reads the same as one typed with them.
    """
    decomposed = unicodedata.normalize("NFD", text.replace("đ", "d").replace("Đ", "D"))
    bare = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return " ".join(bare.lower().split())


def is_empty(cell: Cell) -> bool:
    return cell is None or (isinstance(cell, str) and not cell.strip())


def parse_number(cell: Cell) -> Decimal | None:
    """A cell's number as d06 takes it; None for an empty cell. Raises CellError saying how to write it."""
    if is_empty(cell):
        return None
    if isinstance(cell, bool):  # before int: a bool is an int to Python, never a count to d06
        raise CellError(f"'{cell}' is true/false, not a number")
    if isinstance(cell, int):
        return Decimal(cell)
    if isinstance(cell, float):
        if not math.isfinite(cell):
            raise CellError(f"'{cell}' is not a number")
        # repr is the shortest text that reads back as the same double: Excel's 1234.5 stays 1234.5
        return Decimal(repr(cell))
    assert isinstance(cell, str)
    text = cell.strip()
    if _PLAIN.match(text):
        try:
            return Decimal(text)
        except InvalidOperation as exc:  # pragma: no cover - the pattern admits only valid decimals
            raise CellError(f"'{text}' is not a number") from exc
    if _LOCALE.match(text) and any(ch.isdigit() for ch in text):
        raise CellError(f"'{text}' is written with separators that differ between countries; {_HOW}")
    raise CellError(f"'{text}' is not a number; {_HOW}")


def parse_boolean(cell: Cell) -> bool | None:
    """A boolean indicator's cell: true/false, có/không, 1/0 (text or Excel's own TRUE/FALSE); empty: None."""
    if is_empty(cell):
        return None
    if isinstance(cell, bool):
        return cell
    if isinstance(cell, int | float) and cell in (0, 1):
        return bool(cell)
    word = fold(str(cell))
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise CellError(f"'{cell}' is not yes or no; write true or false (có or không, 1 or 0)")


def parse_text(cell: Cell) -> str | None:
    """A text cell, stripped; None when empty. Excel numbers in text columns (a GSO code typed as 12345)
    come back as the digits that were typed, not as `12345.0`."""
    if is_empty(cell):
        return None
    if isinstance(cell, float) and cell.is_integer():
        return str(int(cell))
    return str(cell).strip()


def _quoted_start(text: str) -> bool:
    return len(text) > 1 and text[0] == _QUOTE and (text[1] in INJECTION_STARTS or text[1] == _QUOTE)


def neutralise(text: str) -> str:
    """A text cell as the CSV export writes it: a leading `'` before a formula start, so that Excel shows
    the text instead of running it. `unquote` undoes it exactly."""
    if text.startswith(INJECTION_STARTS) or _quoted_start(text):
        return _QUOTE + text
    return text


def protect_quote(text: str) -> str:
    """A text cell as the Excel export writes it. The cell is typed as a string, so a formula start is safe
    as it is; only a text that already starts with `'` plus a formula start needs one more `'`, so that
    `unquote` (which the reader applies to every file) gives it back unchanged."""
    return _QUOTE + text if _quoted_start(text) else text


def unquote(text: str) -> str:
    """The reader's half of the rule: `'=HYPERLINK(…)` -> `=HYPERLINK(…)`, `''x` -> `'x`; any other text
    (`'abc`, as people type to keep leading zeros) stays as it is."""
    return text[1:] if _quoted_start(text) else text


def as_text(cell: OutCell) -> str:
    """A figure as text files carry it: `1234.5`, never `1.2345E+3`; booleans as `true`/`false`."""
    if cell is None:
        return ""
    if isinstance(cell, bool):
        return "true" if cell else "false"
    if isinstance(cell, Decimal):
        return format(cell, "f")
    if isinstance(cell, float):
        return repr(cell) if not cell.is_integer() else str(int(cell))
    return str(cell)
