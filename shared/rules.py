"""Validation rules (DESIGN §8): declared in the catalogue, compiled once at load, checked on one unit and period.

A rule is checked where at least one value it reads exists; elsewhere there is nothing to check. `missing`
then says what an absent value does, side by side as DHIS2 does it:
- `skip_if_any` (the default): any absent value skips the rule;
- `skip_if_all`: a side whose values are all absent skips it (a side of constants is never absent);
- `never_skip`: an absent value counts as 0.
A side whose arithmetic has no value (a division by zero) skips the rule too: never a crash, never a flag.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from shared.expressions import ExpressionError, Node, Num, Part, Ref, evaluate, parse, refs

if TYPE_CHECKING:
    from shared.catalog import Indicator

Amount = tuple[Decimal, Decimal | None]  # an effective pair: numerator, denominator (none for flow/stock)
Lookup = Callable[[str, bool], Amount | None]  # (indicator, previous period?) -> its effective pair

_OPERATORS: dict[str, Callable[[Decimal, Decimal], bool]] = {
    "==": lambda a, b: a == b, "!=": lambda a, b: a != b,
    "<": lambda a, b: a < b, "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b, ">=": lambda a, b: a >= b,
}
_HUNDRED = Decimal(100)
_ZERO = Decimal(0)


class Importance(StrEnum):
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"


class Missing(StrEnum):
    SKIP_IF_ANY = "skip_if_any"
    SKIP_IF_ALL = "skip_if_all"
    NEVER_SKIP = "never_skip"


class RuleSpec(BaseModel):
    """A rule as the YAML states it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    code: str = Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=64)
    name_vi: str
    name_en: str
    left: str
    operator: Literal["==", "!=", "<", "<=", ">", ">="]
    right: str
    importance: Importance
    missing: Missing = Missing.SKIP_IF_ANY
    levels: tuple[str, ...] | None = None
    reason: str

    @field_validator("left", "right", mode="before")
    @classmethod
    def _a_number_is_an_expression(cls, side: object) -> object:
        # YAML reads `right: 25` as an int; the parser, not YAML, decides what a number may be.
        return str(side) if isinstance(side, int) and not isinstance(side, bool) else side


class RuleError(ValueError):
    """A rule the catalogue refuses, named by its code."""


@dataclass(frozen=True, slots=True)
class Outcome:
    violated: bool
    left: Decimal | None = None
    right: Decimal | None = None


SKIPPED = Outcome(False)


@dataclass(frozen=True, slots=True)
class Read:
    """How `Rule.check` takes one of a rule's distinct values from the pair its lookup returns."""

    code: str
    previous: bool
    part: Part
    rate: bool  # the value of an indicator with a denominator: 100·num/den


@dataclass(frozen=True, slots=True, eq=False)  # one object per catalogue rule: hashed by identity
class Rule:
    spec: RuleSpec
    left: Node
    right: Node
    left_refs: tuple[Ref, ...]
    right_refs: tuple[Ref, ...]
    distinct_refs: tuple[Ref, ...]  # each value read once, however often the sides name it
    indicator_codes: tuple[str, ...]  # the indicators it reads, sorted: what its flags are about
    # What `check` needs, worked out once: rules run tens of thousands of times a batch.
    reads: tuple[Read, ...]  # `distinct_refs`, in order
    positions: Mapping[Ref, int]  # a ref's place among `distinct_refs`
    sides_at: tuple[tuple[int, ...], tuple[int, ...]]  # the positions each side reads
    holds: Callable[[Decimal, Decimal], bool]  # the operator

    @property
    def code(self) -> str:
        return self.spec.code

    @property
    def reads_previous(self) -> frozenset[str]:
        """Indicators read in the previous period: a change to them moves the rule of the next period."""
        return frozenset(r.code for r in (*self.left_refs, *self.right_refs) if r.previous)

    def applies_at(self, level: str) -> bool:
        return self.spec.levels is None or level in self.spec.levels

    def check(self, lookup: Lookup) -> Outcome:
        """Violated (with both sides), or not: held, skipped, or nothing to check."""
        missing = self.spec.missing
        values: list[Decimal | None] = []
        present = False
        for read in self.reads:
            amount = lookup(read.code, read.previous)
            if amount is None:
                value = None
            elif read.rate:
                value = _HUNDRED * amount[0] / amount[1] if amount[1] else None  # a rate of nothing has no value
            else:
                value = amount[1] if read.part == "denominator" else amount[0]
            if value is not None:
                present = True
            elif missing is Missing.SKIP_IF_ANY:
                return SKIPPED  # most checks end here: a value the rule needs was never reported
            values.append(value)
        if not present:
            return SKIPPED
        if missing is Missing.SKIP_IF_ALL and any(
            side and all(values[i] is None for i in side) for side in self.sides_at
        ):
            return SKIPPED
        left = self._side(self.left, self.sides_at[0], values)
        right = self._side(self.right, self.sides_at[1], values)
        if left is None or right is None or self.holds(left, right):
            return SKIPPED
        return Outcome(True, left, right)

    def _side(self, node: Node, at: tuple[int, ...], values: list[Decimal | None]) -> Decimal | None:
        """One side's value; a lone value or number (most rules) needs no arithmetic context."""
        if isinstance(node, Ref):
            return values[at[0]] or _ZERO
        if isinstance(node, Num):
            return node.value
        return evaluate(node, lambda r: values[self.positions[r]] or _ZERO)


def compile_rule(spec: RuleSpec, indicators: Mapping[str, Indicator]) -> Rule:
    """The rule with both sides parsed and checked against the catalogue, or RuleError naming it."""
    try:
        left, right = parse(spec.left), parse(spec.right)
    except ExpressionError as exc:
        raise RuleError(f"rule {spec.code}: {exc}") from None
    left_refs, right_refs = tuple(refs(left)), tuple(refs(right))
    if not left_refs and not right_refs:
        raise RuleError(f"rule {spec.code}: reads no indicator")
    period_types: set[str] = set()
    for ref in (*left_refs, *right_refs):
        found = indicators.get(ref.code)
        if found is None:
            raise RuleError(f"rule {spec.code}: unknown indicator {ref.code!r}")
        if ref.part != "value" and not found.has_denominator:
            raise RuleError(f"rule {spec.code}: {ref.code} is a {found.measure.value}, it has no {ref.part}")
        period_types.add(found.period_type.value)
    if len(period_types) > 1:
        raise RuleError(f"rule {spec.code}: mixes period types ({', '.join(sorted(period_types))})")
    if all(r.previous for r in (*left_refs, *right_refs)):
        raise RuleError(f"rule {spec.code}: reads only previous periods")
    every = (*left_refs, *right_refs)
    distinct = tuple(dict.fromkeys(every))
    reads = tuple(Read(r.code, r.previous, r.part, r.part == "value" and indicators[r.code].has_denominator)
                  for r in distinct)
    positions = {ref: n for n, ref in enumerate(distinct)}
    return Rule(spec, left, right, left_refs, right_refs, distinct, tuple(sorted({r.code for r in every})), reads,
                positions, (tuple(positions[r] for r in left_refs), tuple(positions[r] for r in right_refs)),
                _OPERATORS[spec.operator])
