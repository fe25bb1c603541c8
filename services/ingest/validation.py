"""Validation of submitted events: a pure function of the events, the catalogue, the hierarchy and the key.

No I/O happens here, so every rule can be unit-tested with a small in-memory hierarchy. Each bad field
gets its own entry with its location (`events[3].period`) and a sentence a reporting officer can act
on; the batch-level decisions (atomic or not, conflicts with stored events) belong to `service.py`.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from enum import StrEnum
from functools import lru_cache
from typing import Any

import orjson

from services.ingest.body import field_name
from services.ingest.values import InvalidValues, parse_values
from shared.auth import Principal
from shared.catalog import Catalog, Indicator
from shared.errors import FieldError, problem_type, safe_echo
from shared.hierarchy import NATION, REFORM_DATE, Edition, Hierarchy, Unit, edition_for
from shared.limits import unsafe_character
from shared.periods import ADVERB, NOUN, Period, PeriodError, parse_period

FIELDS = ("event_id", "unit", "edition", "indicator", "period", "value", "numerator", "denominator", "comment")
_FIELD_SET = frozenset(FIELDS)
MAX_COMMENT = 1000
# Figures from before this year are typos or tests: Project 06 began in 2022, and 2015 leaves room for
# the baselines its reports compare against. The other end is "the period has started" (today), so a
# year 3000 typo is refused whatever the window of shared.periods.
EARLIEST_YEAR = 2015
MAX_PERIOD_CODE = len("2024-07-15")
EVENT_ID_PATTERN = r"[A-Za-z0-9._:-]{1,128}"  # the OpenAPI schema anchors it; here it is fullmatched
EVENT_ID = re.compile(EVENT_ID_PATTERN)
UNKNOWN_GROUP = "unknown"  # metrics label for events whose indicator is not in the catalogue
Fail = Any  # the `fail(field, message)` callback of validate_event

class RejectReason(StrEnum):
    """Why an event was refused; also the bounded `reason` label of the rejection metric."""

    VALIDATION = "validation"
    SCOPE = "scope"
    CONFLICT = "conflict"


_STATUS = {RejectReason.VALIDATION: 422, RejectReason.SCOPE: 403, RejectReason.CONFLICT: 409}
_SLUG = {RejectReason.VALIDATION: "validation-error", RejectReason.SCOPE: "forbidden",
         RejectReason.CONFLICT: "conflict"}


@dataclass(slots=True)  # not frozen: a frozen dataclass's __init__ is several times slower, once per event
class ValidEvent:
    """An event ready for the outbox: edition resolved, numbers normalised, content hashed. Never changed
    once built (`dataclasses.replace` gives a copy)."""

    index: int
    event_id: str | None  # None: the client sent none, the service generates one
    edition: str
    unit: str
    province: str
    indicator: str
    group: str
    period: str
    num: Decimal | None  # num and den both None: a retraction
    den: Decimal | None
    comment: str | None
    content_hash: str

    def with_id(self, event_id: str) -> ValidEvent:
        """A copy carrying `event_id` (what `dataclasses.replace` does, several times faster: once per event)."""
        return ValidEvent(self.index, event_id, self.edition, self.unit, self.province, self.indicator, self.group,
                          self.period, self.num, self.den, self.comment, self.content_hash)


@dataclass(frozen=True, slots=True)
class Rejection:
    index: int
    event_id: str | None
    reason: RejectReason
    errors: tuple[FieldError, ...]
    group: str = UNKNOWN_GROUP

    @property
    def status(self) -> int:
        return _STATUS[self.reason]

    def as_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "event_id": self.event_id,
            "status": self.status,
            "type": problem_type(_SLUG[self.reason]),
            "errors": [e.as_dict() for e in self.errors],
        }


@dataclass(frozen=True, slots=True)
class Context:
    """Everything validation consults, passed in so that the function stays pure."""

    catalog: Catalog
    hierarchy: Hierarchy
    principal: Principal
    today: date  # in Vietnam: a period that has not started yet cannot have a figure


@dataclass(frozen=True, slots=True)
class BatchValidation:
    valid: list[ValidEvent]
    rejected: list[Rejection]


def validate_batch(events: list[Any], ctx: Context) -> BatchValidation:
    valid: list[ValidEvent] = []
    rejected: list[Rejection] = []
    references = References(ctx)
    for index, raw in enumerate(events):
        outcome = validate_event(raw, index, ctx, references)
        if isinstance(outcome, ValidEvent):
            valid.append(outcome)
        else:
            rejected.append(outcome)
    return BatchValidation(valid, rejected)


@dataclass(frozen=True, slots=True)
class Reference:
    """What an event's `indicator`, `period` and `edition` resolve to, with the problems found in them."""

    indicator: Indicator | None
    period: Period | None
    edition: str | None
    problems: tuple[tuple[str, str], ...]  # (field, message) in the order they are reported
    group: str  # the metrics label


def resolve_reference(indicator_code: Any, period_code: Any, edition: Any, today: date, catalog: Catalog) -> Reference:
    """Resolve the three fields that depend on nothing else in the event (and on the day)."""
    problems: list[tuple[str, str]] = []

    def fail(field: str, message: str) -> None:
        problems.append((field, message))

    indicator = _indicator(indicator_code, catalog, fail)
    period = _period(period_code, indicator, today, fail)
    resolved = _edition(edition, period, fail)
    group = indicator.group.value if indicator else UNKNOWN_GROUP
    return Reference(indicator, period, resolved, tuple(problems), group)


_PLAIN = (str, type(None))


class References:
    """The references of one batch, each distinct (indicator, period, edition) resolved once.

    A batch of 1,000 events repeats a few dozen combinations, and resolving one (catalogue lookup, period
    parse and window, edition) costs more than the rest of an event's checks. Only strings and nulls are
    remembered: other JSON values may be unhashable, or equal across types (`1 == true`).
    """

    def __init__(self, ctx: Context) -> None:
        self._today = ctx.today
        self._catalog = ctx.catalog
        self._known: dict[tuple[str | None, str | None, str | None], Reference] = {}

    def of(self, raw: Mapping[str, Any]) -> Reference:
        indicator, period, edition = raw.get("indicator"), raw.get("period"), raw.get("edition")
        if type(indicator) not in _PLAIN or type(period) not in _PLAIN or type(edition) not in _PLAIN:
            return resolve_reference(indicator, period, edition, self._today, self._catalog)
        key = (indicator, period, edition)
        reference = self._known.get(key)
        if reference is None:
            reference = resolve_reference(indicator, period, edition, self._today, self._catalog)
            self._known[key] = reference
        return reference


def validate_event(
    raw: Any, index: int, ctx: Context, references: References | None = None
) -> ValidEvent | Rejection:
    at = f"events[{index}]"
    if not isinstance(raw, dict):
        return Rejection(index, None, RejectReason.VALIDATION,
                         (FieldError(at, "an event is a JSON object"),))
    errors: list[FieldError] = []

    def fail(field: str, message: str) -> None:
        errors.append(FieldError(f"{at}.{field}", message))

    if not _FIELD_SET.issuperset(raw):  # one C-level pass for the common case
        for name in raw:
            if name not in _FIELD_SET:
                fail(field_name(name), f"unknown field; an event has only {', '.join(FIELDS)}")

    event_id = raw.get("event_id")
    if event_id is not None and (not isinstance(event_id, str) or not EVENT_ID.fullmatch(event_id)):
        fail("event_id", "an event_id is 1 to 128 characters among A-Z a-z 0-9 . _ : -")
        event_id = None
    comment = read_comment(raw.get("comment"), fail)

    reference = (references or References(ctx)).of(raw)
    for field, message in reference.problems:
        fail(field, message)
    indicator, period, group = reference.indicator, reference.period, reference.group
    unit = _unit(raw.get("unit"), reference.edition, raw.get("edition") is None, ctx.hierarchy, fail)

    if unit is not None and not ctx.principal.can_see(unit):
        message = outside_scope(ctx.principal, unit.edition, unit.code)
        return Rejection(index, event_id, RejectReason.SCOPE, (FieldError(f"{at}.unit", message),), group)

    pair = None
    if indicator is not None:
        try:
            pair = parse_values(raw, indicator)
        except InvalidValues as exc:
            for field, message in exc.problems:
                fail(field, message)

    if errors or unit is None or indicator is None or period is None or pair is None:
        return Rejection(index, event_id, RejectReason.VALIDATION, tuple(errors), group)
    num, den = pair.num, pair.den
    return ValidEvent(
        index=index, event_id=event_id, edition=unit.edition, unit=unit.code,
        province=unit.province_code or NATION, indicator=indicator.code, group=group,
        period=period.code, num=num, den=den, comment=comment,
        content_hash=content_hash(unit.edition, unit.code, indicator.code, period.code, num, den, comment),
    )


def outside_scope(principal: Principal, edition: str, unit: str) -> str:
    """What a key is told about a unit outside its scope (an event's, or a quality flag's)."""
    scope = principal.scope_code
    if principal.scope_edition:
        scope += f" ({principal.scope_edition})"
    return f"unit {unit} ({edition}) is outside the key's scope {scope}"


def read_comment(given: Any, fail: Fail) -> str | None:
    """A comment as stored (NFC); `fail("comment", message)` for each thing wrong with it."""
    if given is None:
        return None
    if not isinstance(given, str):
        fail("comment", "a comment is a string")
        return None
    comment: str = given
    if len(comment) > MAX_COMMENT:
        fail("comment", f"a comment has at most {MAX_COMMENT:,} characters; this one has {len(comment):,}")
        return comment
    # One spelling of each Vietnamese letter (composed), so a resend typed on another system is the
    # same content; and no invisible characters, which could make a comment read other than it is.
    comment = unicodedata.normalize("NFC", comment)
    bad = unsafe_character(comment)
    if bad is not None:
        fail("comment", f"a comment may not contain control or invisible characters "
                        f"(U+{ord(bad[1]):04X} at position {bad[0]})")
    return comment


def content_hash(
    edition: str, unit: str, indicator: str, period: str,
    num: Decimal | None, den: Decimal | None, comment: str | None,
) -> str:
    """Fingerprint of what an event says, so a resend can be told from a changed event.

    Numbers are hashed in their normalised text (`87700`, `1.5`), so `87700`, `87700.0` and `8.77e4`
    are the same content.
    """
    canonical = [edition, unit, indicator, period,
                 None if num is None else str(num), None if den is None else str(den), comment]
    return hashlib.sha256(orjson.dumps(canonical)).hexdigest()


def _indicator(code: Any, catalog: Catalog, fail: Fail) -> Indicator | None:
    if code is None:
        fail("indicator", "indicator is required (a catalogue code such as cccd_issued)")
        return None
    if not isinstance(code, str):
        fail("indicator", "indicator is a catalogue code such as cccd_issued")
        return None
    indicator = catalog.get(code)
    if indicator is None:
        fail("indicator", f"unknown indicator '{_short(code)}'; GET /v1/indicators on the query service "
                          "lists the catalogue")
        return None
    if indicator.retired:
        fail("indicator", f"{code} is retired and no longer accepts values")
        return None
    return indicator


@lru_cache(maxsize=4096)
def _parsed(code: str) -> Period:
    return parse_period(code)  # a batch repeats a handful of periods thousands of times


def _period(code: Any, indicator: Indicator | None, today: date, fail: Fail) -> Period | None:
    if code is None:
        fail("period", "period is required, e.g. 2024-07")
        return None
    if not isinstance(code, str) or not code.isascii():  # `\d` would take any script's digits: ２０２４
        fail("period", "a period is a string such as 2024, 2024-H1, 2024-Q3, 2024-07 or 2024-07-15")
        return None
    if len(code) > MAX_PERIOD_CODE:
        fail("period", f"'{_short(code, 24)}' is not a period code; use 2024, 2024-H1, 2024-Q3, 2024-07 or 2024-07-15")
        return None
    # The window first, with its own words (shared.periods' 2000–2100 is for any code); a later period of
    # the window is then refused below as "not started yet".
    if code[:4].isdigit() and not EARLIEST_YEAR <= int(code[:4]) <= today.year + 1:
        fail("period", f"{code} is outside the years d06 accepts figures for: {EARLIEST_YEAR} to {today.year}")
        return None
    try:
        period = _parsed(code)
    except PeriodError as exc:
        fail("period", safe_echo(str(exc), 200))
        return None
    if period.start > today:
        fail("period", f"{code} has not started yet (today is {today.isoformat()} in Vietnam)")
        return None
    if indicator is not None and period.type is not indicator.period_type:
        fail("period", f"{indicator.code} is reported {ADVERB[indicator.period_type]}; "
                       f"{code} is {NOUN[period.type]}")
        return None
    return period


def _edition(given: Any, period: Period | None, fail: Fail) -> str | None:
    if given is None:
        return edition_for(period.end).value if period else None
    if given not in (Edition.LEGACY.value, Edition.E2025.value):
        fail("edition", f"edition is \"{Edition.LEGACY.value}\" or \"{Edition.E2025.value}\" (a string)")
        return None
    if period is not None and edition_for(period.end).value != given:
        # Units are only meaningful in the edition in force: a legacy district has no August 2025.
        if given == Edition.LEGACY.value:
            fail("edition", f"the legacy edition covers periods ending before {REFORM_DATE.isoformat()}; "
                            f"{period.code} belongs to the 2025 edition")
        else:
            fail("edition", f"the 2025 edition covers periods ending on or after {REFORM_DATE.isoformat()}; "
                            f"{period.code} belongs to the legacy edition")
        return None
    return str(given)


def _unit(code: Any, edition: str | None, implicit: bool, hierarchy: Hierarchy, fail: Fail) -> Unit | None:
    if code is None:
        fail("unit", "unit is required (a GSO code such as \"01\", \"803\" or \"00004\", or \"VN\")")
        return None
    if not isinstance(code, str):
        fail("unit", "a unit is a string code with its leading zeros, such as \"01\" or \"803\"")
        return None
    if edition is None:
        return None  # the period or edition is wrong and already reported; nothing to look the unit up in
    unit = hierarchy.get(edition, code)
    if unit is None:
        message = f"unit '{_short(code)}' does not exist in the {edition} edition"
        other = Edition.E2025.value if edition == Edition.LEGACY.value else Edition.LEGACY.value
        if hierarchy.get(other, code) is not None:
            reason = "the edition in force at the end of the period" if implicit else "the edition given"
            message += f" ({reason}); it exists in the {other} edition"
        fail("unit", message)
    return unit


def _short(text: str, limit: int = 120) -> str:
    """A client's string quoted in a message: cut, and with invisible characters made visible."""
    return safe_echo(text, limit)
