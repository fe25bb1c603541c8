"""Which flags a batch moves, and what they become, pure (DESIGN §8).

Rules: every rule that reads a key the batch changed, at that key's unit and period (at every level: a
province's computed figure can break a rule its communes keep), and at the following period for a rule that
reads it through `previous()`. Outliers: every series (unit, indicator) with a reported value the batch
applied, at the changed period and each later one whose window holds it. Each target ends up either
violated — a Flag, with both sides — or not, which resolves whatever was open there.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal

from services.aggregate import outliers
from shared.catalog import Catalog, Measure
from shared.hierarchy import Hierarchy
from shared.periods import shift
from shared.rules import Amount, Rule

Key = tuple[str, str, str, str]  # edition, unit, indicator, period
FlagKey = tuple[str, str, str, str, str]  # edition, unit, kind ("rule" | "outlier"), code, period
Series = tuple[str, str, str]  # edition, unit, indicator
OUTLIER_IMPORTANCE = "medium"


@dataclass(frozen=True, slots=True)
class Flag:
    key: FlagKey
    importance: str
    indicators: tuple[str, ...]
    left: Decimal | None  # a rule's left side; an outlier's scored value
    right: Decimal | None  # a rule's right side; the median of an outlier's window
    score: Decimal | None = None
    constant_history: bool = False


@dataclass(slots=True)
class Verdicts:
    """The flags the batch's targets end up with: open ones, and the keys of those that hold."""

    open: list[Flag] = field(default_factory=list)
    clear: list[FlagKey] = field(default_factory=list)


class QualityPlan:
    """The catalogue's rules indexed by the indicators they read, built once per catalogue."""

    def __init__(self, catalog: Catalog) -> None:
        self.current: dict[str, list[Rule]] = defaultdict(list)
        self.following: dict[str, list[Rule]] = defaultdict(list)
        for rule in catalog.rules:
            for code in sorted({r.code for r in (*rule.left_refs, *rule.right_refs) if not r.previous}):
                self.current[code].append(rule)
            for code in sorted(rule.reads_previous):
                self.following[code].append(rule)
        self.scored = {i.code: i.measure is Measure.STOCK for i in catalog if i.outliers}

    def rule_targets(self, changed: Iterable[Key]) -> set[tuple[Rule, str, str, str]]:
        """(rule, edition, unit, period) for every rule the changed keys may move."""
        targets: set[tuple[Rule, str, str, str]] = set()
        for edition, unit, indicator, period in changed:
            for rule in self.current.get(indicator, ()):
                targets.add((rule, edition, unit, period))
            following = self.following.get(indicator, ())
            if following:
                after = shift(period, 1)
                for rule in following:
                    targets.add((rule, edition, unit, after))
        return targets

    def outlier_targets(self, reported: Iterable[Key]) -> dict[Series, tuple[set[str], set[str]]]:
        """Series scored for outliers -> (the periods the batch reported, those whose flag it may move)."""
        changed: dict[Series, set[str]] = defaultdict(set)
        for edition, unit, indicator, period in reported:
            if indicator in self.scored:
                changed[(edition, unit, indicator)].add(period)
        return {s: (periods, outliers.affected(periods, self.scored[s[2]])) for s, periods in changed.items()}

    def outlier_spans(self, reported: Iterable[Key]) -> dict[Series, tuple[str, str]]:
        """For each series, the first and last period whose reported value the targets read."""
        spans: dict[Series, tuple[str, str]] = {}
        for edition, unit, indicator, period in reported:
            if indicator not in self.scored:
                continue
            first, last = outliers.span(period, self.scored[indicator])
            held = spans.get((edition, unit, indicator))
            spans[(edition, unit, indicator)] = (first, last) if held is None else (
                min(first, held[0]), max(last, held[1]))
        return spans


def rule_reads(targets: Iterable[tuple[Rule, str, str, str]]) -> set[Key]:
    """Every key the targets' rules read."""
    keys: set[Key] = set()
    for rule, edition, unit, period in targets:
        for ref in rule.distinct_refs:
            keys.add((edition, unit, ref.code, shift(period, -1) if ref.previous else period))
    return keys


def check_rules(
    targets: Iterable[tuple[Rule, str, str, str]],
    effective: Callable[[Key], Amount | None],
    hierarchy: Hierarchy,
    verdicts: Verdicts,
) -> None:
    levels: dict[tuple[str, str], str | None] = {}
    for rule, edition, unit, period in targets:
        key: FlagKey = (edition, unit, "rule", rule.code, period)
        level = levels.get((edition, unit), "")
        if level == "":
            found = hierarchy.get(edition, unit)
            level = levels[(edition, unit)] = None if found is None else found.level
        if level is None or not rule.applies_at(level):
            verdicts.clear.append(key)
            continue
        before = shift(period, -1)

        def lookup(code: str, previous: bool, e: str = edition, u: str = unit, p: str = period,
                   b: str = before) -> Amount | None:
            return effective((e, u, code, b if previous else p))

        outcome = rule.check(lookup)
        if outcome.violated:
            verdicts.open.append(Flag(key, rule.spec.importance.value, tuple(sorted(rule.indicators)),
                                      outcome.left, outcome.right))
        else:
            verdicts.clear.append(key)


def check_outliers(
    targets: dict[Series, tuple[set[str], set[str]]],
    stocks: dict[str, bool],
    reported: Callable[[Key], Decimal | None],
    verdicts: Verdicts,
) -> None:
    """`targets`: per series, (the periods whose reported value the batch changed, the periods they move)."""
    for (edition, unit, indicator), (changed, periods) in targets.items():
        def value(p: str, e: str = edition, u: str = unit, i: str = indicator) -> Decimal | None:
            return reported((e, u, i, p))

        for period in periods:
            key: FlagKey = (edition, unit, "outlier", indicator, period)
            if period not in changed and reported((edition, unit, indicator, period)) is None:
                continue  # no value, so no flag: it was resolved when its value went
            found = outliers.flag_at(value, period, stocks[indicator])
            if found is None:
                verdicts.clear.append(key)
            else:
                verdicts.open.append(Flag(key, OUTLIER_IMPORTANCE, (indicator,), found.value, found.median,
                                          found.score, found.constant_history))
