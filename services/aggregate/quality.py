"""Which flags a batch moves, and what they become, pure (DESIGN §8).

Rules: every rule that reads a key the batch changed, at that key's unit and period (at every level: a
province's computed figure can break a rule its communes keep), and at the following period for a rule that
reads it through `previous()`. Outliers: every series (unit, indicator) with a reported value the batch
applied, at the changed periods and each later one whose window holds them. Each target ends up either
violated — a Flag, with both sides — or not, which resolves whatever was open there.

A batch of a month's reports touches tens of thousands of (unit, period) places with the same few
indicators, so the work is shaped for that: rules are grouped by place and the rule list of each set of
changed indicators is worked out once (and once per province, for the indicators it holds); series that
changed the same periods share one target and are read by one scan; histories are counted in period
ordinals; a check that holds where no flag is open writes down nothing.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Collection, Container, Iterable, Mapping
from dataclasses import dataclass, field

from services.aggregate import outliers
from services.aggregate.outliers import Stretch
from services.aggregate.rollup import Key, Row
from shared.catalog import Catalog, Measure
from shared.hierarchy import Hierarchy
from shared.periods import ordinal, shift
from shared.quality_flags import OUTLIER_IMPORTANCE, Flag, FlagKey
from shared.rules import Amount, Missing, Rule

Place = tuple[str, str, str]  # edition, unit, period: where rules are checked
Series = tuple[str, str, str]  # edition, unit, indicator: what outliers are scored on
History = Stretch  # a series' reported values by period ordinal (shared.periods.ordinal)


@dataclass(slots=True)
class Verdicts:
    """The flags the batch's targets end up with: open ones, and the keys of open flags whose target holds."""

    open: list[Flag] = field(default_factory=list)
    clear: list[FlagKey] = field(default_factory=list)


class OpenFlags:
    """The flags open where the batch's verdicts may land, by place and series too: a target that holds
    (nearly all) changes nothing unless a flag is open there, so without one not even its key is built."""

    def __init__(self, keys: Collection[FlagKey]) -> None:
        self.keys = keys
        self.places = {(e, u, p) for e, u, kind, _, p in keys if kind == "rule"}
        self.series = {(e, u, code) for e, u, kind, code, _ in keys if kind == "outlier"}


@dataclass(frozen=True, slots=True)
class OutlierTarget:
    """A series the batch reported into: the periods it changed, the stretch of history to read, and the last
    period whose flag may move.

    Every series reads as far as the longest reach, a stock's (a flow reads a period more on each side than
    its flags need): series whose changes span the same periods then read the same stretch, which one index
    scan reads for all of them (quality_repository.load_histories)."""

    changed: frozenset[str]
    first_read: str
    last_read: str
    last_scored: str
    # In period ordinals, worked out once: a month of reports shares one target between all its series.
    changed_at: Mapping[int, str] = field(init=False, repr=False, compare=False)
    last_scored_at: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "changed_at", {ordinal(period): period for period in self.changed})
        object.__setattr__(self, "last_scored_at", ordinal(self.last_scored))


class QualityPlan:
    """The catalogue's rules indexed by the indicators they read and the levels they bound, built once per
    catalogue and hierarchy."""

    def __init__(self, catalog: Catalog, hierarchy: Hierarchy) -> None:
        self.current: dict[str, list[Rule]] = defaultdict(list)
        self.following: dict[str, list[Rule]] = defaultdict(list)
        self._order = {rule.code: n for n, rule in enumerate(catalog.rules)}
        self._hierarchy = hierarchy
        for rule in catalog.rules:
            for code in sorted({r.code for r in (*rule.left_refs, *rule.right_refs) if not r.previous}):
                self.current[code].append(rule)
            for code in sorted(rule.reads_previous):
                self.following[code].append(rule)
        self.scored = {i.code: i.measure is Measure.STOCK for i in catalog if i.outliers}
        self._rules_of: dict[tuple[str, frozenset[str], frozenset[str]], tuple[Rule, ...]] = {}
        self._reads_of: dict[tuple[Rule, ...], tuple[tuple[str, bool], ...]] = {}

    def rule_targets(self, changed: Iterable[Key]) -> dict[Place, tuple[Rule, ...]]:
        """The rules the changed keys may move, by place: those that bound the place's level.

        A rule that does not bound a level never holds a flag there, so nothing is checked or read for it
        (`d06 quality rebuild` clears what an earlier catalogue left at a level a rule no longer bounds)."""
        now: dict[Place, set[str]] = defaultdict(set)
        before: dict[Place, set[str]] = defaultdict(set)
        for edition, unit, indicator, period in changed:
            if indicator in self.current:
                now[(edition, unit, period)].add(indicator)
            if indicator in self.following:
                before[(edition, unit, shift(period, 1))].add(indicator)
        targets: dict[Place, tuple[Rule, ...]] = {}
        for place in now.keys() | before.keys():
            found = self._hierarchy.get(place[0], place[1])
            if found is not None and (rules := self._rules(found.level, frozenset(now.get(place, ())),
                                                           frozenset(before.get(place, ())))):
                targets[place] = rules
        return targets

    def _rules(self, level: str, now: frozenset[str], before: frozenset[str]) -> tuple[Rule, ...]:
        found = self._rules_of.get((level, now, before))
        if found is None:
            rules = {r for i in now for r in self.current[i]} | {r for i in before for r in self.following[i]}
            found = self._rules_of[(level, now, before)] = tuple(
                sorted((r for r in rules if r.applies_at(level)), key=lambda r: self._order[r.code]))
        return found

    def rule_reads(self, targets: Mapping[Place, tuple[Rule, ...]]) -> set[Key]:
        """Every key the targets' rules read."""
        keys: set[Key] = set()
        for (edition, unit, period), rules in targets.items():
            prior = shift(period, -1)
            for code, previous in self._reads(rules):
                keys.add((edition, unit, code, prior if previous else period))
        return keys

    def _reads(self, rules: tuple[Rule, ...]) -> tuple[tuple[str, bool], ...]:
        found = self._reads_of.get(rules)
        if found is None:
            found = self._reads_of[rules] = tuple(dict.fromkeys(
                (ref.code, ref.previous) for rule in rules for ref in rule.distinct_refs))
        return found

    def held_by_histories(self, keys: Iterable[Key], targets: Mapping[Series, OutlierTarget]) -> set[Key]:
        """The keys among `keys` whose value the target series' histories hold: a unit with no children has no
        computed value, so there its effective value is what was reported, which is what a history holds
        (scored indicators are flows and stocks: no denominator). Rules read such values all the time — the
        month before of a stock that never falls, the month after of a month just sent — and the outlier
        check reads them anyway."""
        held: set[Key] = set()
        for key in keys:
            target = targets.get(key[:3])
            if (target is not None and target.first_read <= key[3] <= target.last_read  # as the statement reads
                    and not self._hierarchy.n_children(key[0], key[1])):
                held.add(key)
        return held

    def checkable(self, targets: Mapping[Place, tuple[Rule, ...]], present: Iterable[tuple[str, str, str]]
                  ) -> dict[Place, tuple[Rule, ...]]:
        """The targets without the rules that skip wherever a value is missing (`skip_if_any`, most) and name
        an indicator the place's province holds no row of (`present`, by edition, province and indicator):
        such a rule has nothing to check there, and no flag of it was ever open there."""
        held: dict[tuple[str, str], set[str]] = defaultdict(set)
        for e, p, indicator in present:
            held[(e, p)].add(indicator)
        kept: dict[Place, tuple[Rule, ...]] = {}
        found: dict[tuple[tuple[Rule, ...], str, str], tuple[Rule, ...]] = {}
        for place, rules in targets.items():
            edition, unit, _ = place
            province = self.province_of(edition, unit)
            if province is None:
                kept[place] = rules
                continue
            left = found.get((rules, edition, province))
            if left is None:
                has = held[(edition, province)]
                left = found[(rules, edition, province)] = tuple(
                    r for r in rules if r.spec.missing is not Missing.SKIP_IF_ANY or has.issuperset(r.indicator_codes))
            if left:
                kept[place] = left
        return kept

    def province_of(self, edition: str, unit: str) -> str | None:
        found = self._hierarchy.get(edition, unit)
        return None if found is None else found.province_code

    def may_exist(self, keys: Iterable[Key], present: Container[tuple[str, str, str]]) -> list[Key]:
        """The keys whose indicator their unit's province tree holds any row of (shared.indicator_presence);
        a key outside every province is kept."""
        kept: list[Key] = []
        for key in keys:
            province = self.province_of(key[0], key[1])
            if province is None or (key[0], province, key[2]) in present:
                kept.append(key)
        return kept

    def outlier_targets(self, reported: Iterable[Key]) -> dict[Series, OutlierTarget]:
        changed: dict[Series, set[str]] = defaultdict(set)
        for edition, unit, indicator, period in reported:
            if indicator in self.scored:
                changed[(edition, unit, indicator)].add(period)
        # A month of reports changes the same period of every series: one target serves them all.
        made: dict[tuple[frozenset[str], bool], OutlierTarget] = {}
        targets: dict[Series, OutlierTarget] = {}
        for series, periods in changed.items():
            shape = (frozenset(periods), self.scored[series[2]])
            target = made.get(shape)
            if target is None:
                target = made[shape] = self._outlier_target(*shape)
            targets[series] = target
        return targets

    @staticmethod
    def _outlier_target(periods: frozenset[str], stock: bool) -> OutlierTarget:
        ordered = sorted(periods, key=ordinal) if len(periods) > 1 else list(periods)
        longest = outliers.reach(stock=True)
        return OutlierTarget(periods, shift(ordered[0], -longest), shift(ordered[-1], longest),
                             shift(ordered[-1], outliers.reach(stock)))


def check_rules(
    targets: Mapping[Place, tuple[Rule, ...]],
    effective: Callable[[Key], Amount | None],
    standing: OpenFlags,
    verdicts: Verdicts,
) -> None:
    for place, rules in targets.items():
        edition, unit, period = place
        prior = shift(period, -1)
        held = place in standing.places

        def lookup(code: str, previous: bool, e: str = edition, u: str = unit, p: str = period,
                   b: str = prior) -> Amount | None:
            return effective((e, u, code, b if previous else p))

        for rule in rules:
            outcome = rule.check(lookup)
            if outcome.violated:
                verdicts.open.append(Flag((edition, unit, "rule", rule.code, period), rule.spec.importance.value,
                                          rule.indicator_codes, outcome.left, outcome.right))
            elif held and (key := (edition, unit, "rule", rule.code, period)) in standing.keys:
                verdicts.clear.append(key)


_NOTHING = Stretch(0, [])


def check_outliers(
    targets: Mapping[Series, OutlierTarget],
    stocks: Mapping[str, bool],
    histories: Mapping[Series, History],
    standing: OpenFlags,
    verdicts: Verdicts,
) -> None:
    """`histories`: each target series' reported values from its `first_read` to its `last_read` period."""
    for series, target in targets.items():
        edition, unit, indicator = series
        held = series in standing.series
        reported = histories.get(series) or _NOTHING
        scored = outliers.scored_values(reported, stocks[indicator])
        changed = target.changed_at
        if held:
            for n, period in changed.items():
                if reported.get(n) is None and (key := (edition, unit, "outlier", indicator, period)) in standing.keys:
                    verdicts.clear.append(key)  # retracted: what was open there resolves
        # Each reported period from the first changed to the last a change may move.
        start, values, first = reported.first, reported.values, min(changed)
        for k in range(max(first - start, 0), min(target.last_scored_at - start + 1, len(values))):
            if values[k] is None:
                continue
            n = start + k
            found = outliers.flag_at(scored, n)
            if found is None and not held:
                continue
            key = (edition, unit, "outlier", indicator, changed.get(n) or shift(changed[first], n - first))
            if found is not None:
                verdicts.open.append(Flag(key, OUTLIER_IMPORTANCE, (indicator,), found.value, found.median,
                                          found.score, found.constant_history))
            elif key in standing.keys:
                verdicts.clear.append(key)


def after_batch(
    histories: dict[Series, Stretch], targets: Mapping[Series, OutlierTarget], rows: Mapping[Key, Row],
    changed: Container[Key],
) -> dict[Series, Stretch]:
    """The target series' histories as read before the batch, with the reported values the batch changed laid
    over them in place (they were read for this batch alone: copying 40,000 of them a month cost more). Only
    an event changes a reported value, and each target lists its events' periods: those are all there is to
    look at, rather than every row the batch changed up the tree."""
    for series, target in targets.items():
        for period in target.changed:
            key = (*series, period)
            if key not in changed:  # an event that lost to a newer one
                continue
            reported = rows[key].reported
            history = histories.get(series)
            if history is None:
                history = histories[series] = Stretch(0, [])
            history.set(ordinal(period), None if reported is None else outliers.whole(reported.num))
    return histories


def evaluate(
    plan: QualityPlan,
    rule_targets: Mapping[Place, tuple[Rule, ...]],
    effective: Callable[[Key], Amount | None],
    outlier_targets: Mapping[Series, OutlierTarget],
    histories: Mapping[Series, History],
    standing: OpenFlags,
) -> Verdicts:
    verdicts = Verdicts()
    check_rules(rule_targets, effective, standing, verdicts)
    check_outliers(outlier_targets, plan.scored, histories, standing, verdicts)
    return verdicts
