"""Dead letters, pure: telling poison from events, why each was set aside, and what the table keeps of it.

Ingest validated every event against the catalogue and the hierarchy when it accepted it, so what fails
here is a message nobody should have produced, or one the world moved under (a unit removed, an
indicator retired since). Either way the message is set aside with its reason and the partition moves
on: retrying would fail the same way forever.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from functools import lru_cache
from typing import Any, NamedTuple

import orjson

from shared.catalog import Catalog
from shared.events import AcceptedEvent
from shared.hierarchy import NATION, Hierarchy
from shared.periods import Period, PeriodError, parse_period

# Magnitudes far beyond any Project 06 figure, and well inside what Postgres `numeric` stores. A value
# with absurdly many digits passes here but cannot be summed exactly: rollup.py then raises and the
# aggregator dead-letters it alone.
MAX_EXPONENT = 30
MIN_EXPONENT = -20


class Reason(StrEnum):
    """Why a message was dead-lettered: the `code` column of `dead_letters` and the metric's `reason` label."""

    MALFORMED = "malformed"
    UNKNOWN_EDITION = "unknown_edition"
    UNKNOWN_UNIT = "unknown_unit"
    UNKNOWN_INDICATOR = "unknown_indicator"
    RETIRED_INDICATOR = "retired_indicator"
    BAD_PERIOD = "bad_period"
    BAD_VALUE = "bad_value"
    APPLY_FAILED = "apply_failed"  # its content made the batch transaction fail, alone, in isolation


class Message(NamedTuple):
    """The part of a Kafka record the aggregator uses (aiokafka's record type is untyped).

    A NamedTuple: one is built per message, thousands per batch, and a frozen dataclass costs several
    times more to build (docs/performance.md, "Figures moved out of comments").
    """

    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


@dataclass(frozen=True, slots=True)
class DeadLetter:
    message: Message
    reason: Reason
    detail: str
    seq: int | None  # None when the message is too broken to carry one: the row is all there is of it
    event_id: str | None  # None when the message carried no readable one

    @property
    def reason_text(self) -> str:
        """What `GET /v1/events/{id}` shows: the stable reason code, then what exactly was wrong."""
        return f"{self.reason.value}: {self.detail}"

    def payload_json(self) -> str:
        """The message as jsonb will take it (no NUL: Postgres text and jsonb refuse it)."""
        parsed = _json_object(self.message.value)
        if parsed is not None:
            return orjson.dumps(_scrub(parsed)).decode()
        raw = (self.message.value or b"").decode("utf-8", "replace").replace("\x00", "\ufffd")
        return orjson.dumps({"raw": raw}).decode()


def _json_object(raw: bytes | None) -> dict[str, Any] | None:
    if raw is None:
        return None
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, dict):
        return {_scrub(k): _scrub(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v) for v in value]
    return value


def _clean(text: str) -> str:
    return text.replace("\x00", "\ufffd")[:200]


def dead_letter(message: Message, reason: Reason, detail: str) -> DeadLetter:
    """A dead letter carrying whatever seq and event_id can still be read from the message."""
    seq: int | None = None
    event_id: str | None = None
    fields = _json_object(message.value)
    if fields is not None:
        raw_seq = fields.get("seq")
        if isinstance(raw_seq, int) and not isinstance(raw_seq, bool) and 0 < raw_seq < 2**63:
            seq = raw_seq
        if isinstance(fields.get("event_id"), str):
            event_id = _clean(fields["event_id"])
    return DeadLetter(message, reason, _clean(detail), seq, event_id)


def parse(message: Message) -> AcceptedEvent | DeadLetter:
    if message.value is None:
        return dead_letter(message, Reason.MALFORMED, "empty message (a tombstone?)")
    try:
        event = AcceptedEvent.from_bytes(message.value)
    except (ValueError, KeyError, TypeError, ArithmeticError) as exc:
        return dead_letter(message, Reason.MALFORMED, f"cannot parse the event: {type(exc).__name__}: {exc}")
    problem = _shape_problem(event)
    if problem is not None:
        return dead_letter(message, Reason.MALFORMED, problem)
    return event


def _shape_problem(event: AcceptedEvent) -> str | None:
    if not 0 < event.seq < 2**63:
        return f"seq {event.seq} is not a positive bigint"
    if event.accepted_at.tzinfo is None:
        return "accepted_at has no time zone"
    if event.num is None and event.den is not None:
        return "a denominator without a numerator (a retraction has both null)"
    for name, number in (("num", event.num), ("den", event.den)):
        if number is not None and not _sane(number):
            return f"{name} {number} is not a finite number between 1e{MIN_EXPONENT} and 1e{MAX_EXPONENT + 1}"
    return None


def _sane(number: Decimal) -> bool:
    return number.is_finite() and (number.is_zero() or MIN_EXPONENT <= number.adjusted() <= MAX_EXPONENT)


@lru_cache(maxsize=4096)
def _period(code: str) -> Period | str:
    """A batch names a handful of periods thousands of times: parse each once (or say why it is bad)."""
    try:
        return parse_period(code)
    except PeriodError as exc:
        return str(exc)


def check(event: AcceptedEvent, message: Message, hierarchy: Hierarchy, catalog: Catalog) -> DeadLetter | None:
    """None when the event may be applied; else why not."""
    indicator = catalog.get(event.indicator)
    if indicator is None:
        return dead_letter(message, Reason.UNKNOWN_INDICATOR, f"indicator {event.indicator!r} is not in the catalogue")
    if indicator.retired:
        return dead_letter(message, Reason.RETIRED_INDICATOR, f"indicator {event.indicator!r} is retired")
    if hierarchy.get(event.edition, NATION) is None:
        return dead_letter(message, Reason.UNKNOWN_EDITION, f"edition {event.edition!r} is not loaded")
    if hierarchy.get(event.edition, event.unit) is None:
        return dead_letter(
            message, Reason.UNKNOWN_UNIT, f"unit {event.unit!r} does not exist in edition {event.edition!r}"
        )
    period = _period(event.period)
    if isinstance(period, str):
        return dead_letter(message, Reason.BAD_PERIOD, period)
    if period.type != indicator.period_type or period.code != event.period:
        return dead_letter(
            message, Reason.BAD_PERIOD,
            f"{event.indicator} is reported per {indicator.period_type}, not as {event.period!r}",
        )
    if event.num is not None and (event.den is not None) != indicator.has_denominator:
        wanted = "a numerator and a denominator" if indicator.has_denominator else "a single value"
        return dead_letter(message, Reason.BAD_VALUE, f"{event.indicator} ({indicator.measure}) takes {wanted}")
    return None


def classify(
    messages: list[Message], hierarchy: Hierarchy, catalog: Catalog
) -> list[AcceptedEvent | DeadLetter]:
    """One verdict per message, in the same order."""
    out: list[AcceptedEvent | DeadLetter] = []
    for message in messages:
        parsed = parse(message)
        if isinstance(parsed, AcceptedEvent):
            out.append(check(parsed, message, hierarchy, catalog) or parsed)
        else:
            out.append(parsed)
    return out


def recheck(
    messages: list[Message], verdicts: list[AcceptedEvent | DeadLetter], hierarchy: Hierarchy, catalog: Catalog
) -> list[AcceptedEvent | DeadLetter]:
    """Give events rejected for a unit (or edition) unknown to an older hierarchy another look."""
    hierarchy_reasons = (Reason.UNKNOWN_UNIT, Reason.UNKNOWN_EDITION)
    out: list[AcceptedEvent | DeadLetter] = []
    for message, verdict in zip(messages, verdicts, strict=True):
        if isinstance(verdict, DeadLetter) and verdict.reason in hierarchy_reasons:
            out.extend(classify([message], hierarchy, catalog))
        else:
            out.append(verdict)
    return out


def needs_fresher_hierarchy(verdicts: list[AcceptedEvent | DeadLetter]) -> bool:
    return any(
        isinstance(v, DeadLetter) and v.reason in (Reason.UNKNOWN_UNIT, Reason.UNKNOWN_EDITION)
        for v in verdicts
    )
