"""The figures of one event, read by the indicator's measure into the stored pair (DESIGN §2–3).

flow/stock `value` → (value, None); ratio `numerator`/`denominator` → (num, den); boolean `value`
true/false → (1|0, 1) or a coverage `numerator`/`denominator` → (true count, reported count);
`"value": null` (or a null numerator and denominator) → (None, None), the retraction.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, TypeGuard

from shared.catalog import Indicator, Measure

# Reported figures are counts of people, dossiers or services: a quadrillion is far above any of them.
MAX_FIGURE = Decimal(10) ** 15
# Sums of 10^15-sized figures across the tree stay within Decimal's 28 significant digits only if
# the fraction is short; six places also cover any real score or rate.
MAX_FRACTION_DIGITS = 6
ONE = Decimal(1)
ZERO = Decimal(0)

_MISSING = object()


class InvalidValues(Exception):
    def __init__(self, problems: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{f}: {m}" for f, m in problems))
        self.problems = problems


@dataclass(frozen=True, slots=True)
class Figures:
    num: Decimal | None  # both None: the event retracts the value
    den: Decimal | None


RETRACTION = Figures(None, None)


def parse_values(raw: Mapping[str, Any], indicator: Indicator) -> Figures:
    """The stored pair of an event, or InvalidValues listing every bad field."""
    value = raw.get("value", _MISSING)
    num = raw.get("numerator", _MISSING)
    den = raw.get("denominator", _MISSING)
    problems: list[tuple[str, str]] = []

    if indicator.measure in (Measure.FLOW, Measure.STOCK):
        figures = _amount(indicator, value, num, den, problems)
    elif indicator.measure is Measure.RATIO:
        figures = _ratio(indicator, value, num, den, problems)
    else:
        figures = _boolean(indicator, value, num, den, problems)
    if problems or figures is None:
        raise InvalidValues(problems)
    return figures


def _amount(indicator: Indicator, value: Any, num: Any, den: Any, problems: list[tuple[str, str]]) -> Figures | None:
    for field, given in (("numerator", num), ("denominator", den)):
        if given is not _MISSING:
            problems.append((field, f"{indicator.code} is a {indicator.measure.value} counted in "
                                    f"{indicator.unit}: send `value`, not numerator/denominator"))
    if value is _MISSING:
        problems.append(("value", "value is required (null retracts a value sent before)"))
        return None
    if value is None:
        return RETRACTION
    if _plain(value):
        return Figures(value, None)  # before the message of _figure's `what` is written (once per event)
    amount = _figure("value", value, problems, what=f"{indicator.code} counts {indicator.unit}")
    return None if amount is None else Figures(amount, None)


def _ratio(indicator: Indicator, value: Any, num: Any, den: Any, problems: list[tuple[str, str]]) -> Figures | None:
    if value is not _MISSING:
        if value is not None:
            problems.append(("value", "a percentage needs its numerator and denominator: send them instead "
                                      "of `value` (for example numerator 87700, denominator 90412)"))
            return None
        return _retraction_only(num, den, problems)
    return _components(indicator, num, den, problems, coverage=False)


def _boolean(indicator: Indicator, value: Any, num: Any, den: Any, problems: list[tuple[str, str]]) -> Figures | None:
    if value is _MISSING:
        return _components(indicator, num, den, problems, coverage=True)
    if value is None:
        return _retraction_only(num, den, problems)
    if not isinstance(value, bool):
        problems.append(("value", f"{indicator.code} is yes/no: send true or false, or numerator/denominator "
                                  "as a coverage of units (24 of 24 communes)"))
        return None
    if num is not _MISSING or den is not _MISSING:
        problems.append(("value", "send either `value` or numerator/denominator, not both"))
        return None
    return Figures(ONE if value else ZERO, ONE)


def _retraction_only(num: Any, den: Any, problems: list[tuple[str, str]]) -> Figures | None:
    if (num is not _MISSING and num is not None) or (den is not _MISSING and den is not None):
        problems.append(("value", "`value: null` retracts; do not send numerator/denominator with it"))
        return None
    return RETRACTION


def _components(
    indicator: Indicator, num: Any, den: Any, problems: list[tuple[str, str]], *, coverage: bool
) -> Figures | None:
    kind = "a coverage" if coverage else "a percentage"
    if num is _MISSING and den is _MISSING:
        hint = "`value` true/false, or " if coverage else ""
        problems.append(("numerator", f"{indicator.code} needs {hint}numerator and denominator "
                                      "(both null retract a value sent before)"))
        return None
    if num is None and den is None:
        return RETRACTION
    missing = [field for field, given in (("numerator", num), ("denominator", den))
               if given is _MISSING or given is None]
    for field in missing:
        problems.append((field, f"{kind} needs its {field} too"))
    if missing:
        return None
    numerator = _figure("numerator", num, problems)
    denominator = _figure("denominator", den, problems)
    if denominator is not None and denominator == 0:
        problems.append(("denominator", "the denominator must be greater than zero"))
        return None
    if numerator is None or denominator is None:
        return None
    if coverage:
        fractional = [field for field, figure in (("numerator", numerator), ("denominator", denominator))
                      if figure != figure.to_integral_value()]
        for field in fractional:
            problems.append((field, "a coverage counts units: use whole numbers"))
        if numerator > denominator:
            problems.append(("numerator", f"the numerator ({numerator} units where it holds) cannot exceed "
                                          f"the denominator ({denominator} units that reported)"))
        if fractional or numerator > denominator:
            return None
    return Figures(numerator, denominator)


def _plain(raw: Any) -> TypeGuard[Decimal]:
    """A JSON integer in range, already in its normal form."""
    return type(raw) is Decimal and str(raw).isdigit() and raw <= MAX_FIGURE


def _figure(field: str, raw: Any, problems: list[tuple[str, str]], *, what: str | None = None) -> Decimal | None:
    """A finite, non-negative, bounded number, normalised (`87700.0` → `87700`) so equal figures hash alike."""
    if _plain(raw):
        return raw  # the common case, a JSON integer in range: already plain (skips the checks below, once per figure)
    if isinstance(raw, bool):
        problems.append((field, f"{what}: send a number, not true/false" if what
                         else "expected a number, not true/false"))
        return None
    if isinstance(raw, str):
        problems.append((field, f"expected a number, got the string \"{raw[:40]}\"; send numbers without quotes"))
        return None
    if not isinstance(raw, int | Decimal):
        problems.append((field, "expected a number"))
        return None
    if isinstance(raw, Decimal) and not raw.is_finite():
        problems.append((field, "NaN and Infinity are not figures; send a finite number"))
        return None
    if raw < 0:
        problems.append((field, f"must not be negative (got {_shown(raw)})"))
        return None
    if raw > MAX_FIGURE:
        problems.append((field, f"{_shown(raw)} is above the largest accepted figure, 10^15"))
        return None
    if isinstance(raw, int):
        return Decimal(raw)  # the common case: already plain and whole
    return _normalised(field, raw, problems)


def _shown(figure: int | Decimal) -> str:
    """A figure quoted in a message: a number of 5,000 digits is not echoed back whole."""
    text = str(figure)
    return text if len(text) <= 32 else f"{text[:24]}… ({len(text):,} characters)"


def _normalised(field: str, figure: Decimal, problems: list[tuple[str, str]]) -> Decimal | None:
    if figure == 0:
        return ZERO  # also turns -0 into 0
    reduced = figure.normalize()
    exponent = reduced.as_tuple().exponent
    if not isinstance(exponent, int) or exponent < -MAX_FRACTION_DIGITS:  # str exponents are NaN/Inf only
        problems.append((field, f"at most {MAX_FRACTION_DIGITS} decimal places (got {_shown(figure)})"))
        return None
    # Plain notation (87700, not 8.77E+4), so the outbox and the wire carry the figure as people write it.
    return reduced.quantize(ONE) if exponent > 0 else reduced
