"""The rule language: what it reads, what it refuses (at catalogue load, naming the rule), what it computes."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest

from shared.catalog import load_catalog, parse_catalog
from shared.expressions import ExpressionError, Ref, evaluate, parse, refs
from shared.rules import RuleError, RuleSpec, compile_rule

CATALOG = load_catalog()


@pytest.mark.parametrize(("source", "reads", "value"), [
    ("1 + 2 * 3", [], Decimal(7)),
    ("(1 + 2) * 3", [], Decimal(9)),
    ("10 - 4 - 3", [], Decimal(3)),
    ("12 / 4 / 3", [], Decimal(1)),
    ("-2 * -3", [], Decimal(6)),
    ("2.5 * 4", [], Decimal(10)),
    ("cccd_issued", [Ref("cccd_issued")], Decimal(100)),
    ("cccd_coverage.numerator + cccd_coverage.denominator", [Ref("cccd_coverage", "numerator"),
                                                           Ref("cccd_coverage", "denominator")], Decimal(200)),
    ("previous(cccd_issued)", [Ref("cccd_issued", previous=True)], Decimal(100)),
    ("previous(cccd_coverage.denominator) * 2", [Ref("cccd_coverage", "denominator", True)], Decimal(200)),
    ("  cccd_issued-previous( cccd_issued )  ", [Ref("cccd_issued"), Ref("cccd_issued", previous=True)], Decimal(0)),
])
def test_good_expressions_parse_and_compute_exactly(source: str, reads: list[Ref], value: Decimal) -> None:
    node = parse(source)
    assert list(refs(node)) == reads
    assert evaluate(node, lambda _: Decimal(100)) == value


@pytest.mark.parametrize(("source", "says"), [
    ("__import__('os')", "__import__(…) is not allowed"),
    ("cccd_issued.__class__", ".__class__ is not allowed"),
    ("cccd_issued.numerator.real", "only one attribute"),
    ("abs(cccd_issued)", "abs(…) is not allowed"),
    ("eval(1)", "eval(…) is not allowed"),
    ("open", "expected"),  # a bare name that is not a code passes the parser; the catalogue refuses it
    ("2 ** 1000", "expected a number"),
    ("1e999", "unexpected"),
    ("9" * 40, "more than 15 digits"),
    ("(" * 50 + "1" + ")" * 50, "nested more than"),
    ("-" * 50 + "1", "nested more than"),
    ("1 + " * 100 + "1", "longer than"),
    ("cccd_issued[0]", "unexpected character"),
    ("lambda: 1", "unexpected character"),
    ("cccd_issued; 1", "unexpected character"),
    ("'text'", "unexpected character"),
    ("1 +", "found the end"),
    ("(1", "expected ')'"),
    ("", "empty"),
    ("previous(previous(cccd_issued))", "expected an indicator code"),
    ("previous(1)", "expected an indicator code"),
    ("Cccd_issued", "not an indicator code"),
    ("_private", "not an indicator code"),
])
def test_hostile_or_broken_expressions_are_refused_with_a_reason(source: str, says: str) -> None:
    if source == "open":
        assert list(refs(parse(source))) == [Ref("open")]
        return
    with pytest.raises(ExpressionError, match=re.escape(says)):
        parse(source)


def test_division_by_zero_has_no_value() -> None:
    assert evaluate(parse("cccd_issued / (cccd_issued - 100)"), lambda _: Decimal(100)) is None


def _spec(**overrides: object) -> RuleSpec:
    base: dict[str, object] = {"code": "r1", "name_vi": "r", "name_en": "r", "left": "vneid_l2_activated",
                               "operator": "<=", "right": "cccd_issued", "importance": "high", "reason": "why"}
    return RuleSpec.model_validate(base | overrides)


@pytest.mark.parametrize(("overrides", "says"), [
    ({"left": "no_such_indicator"}, "rule r1: unknown indicator 'no_such_indicator'"),
    ({"left": "open"}, "rule r1: unknown indicator 'open'"),
    ({"left": "essential_online_dossier_rate.numerator"}, "rule r1: mixes period types"),
    ({"left": "cccd_issued.numerator"}, "rule r1: cccd_issued is a stock, it has no numerator"),
    ({"left": "__import__('os')"}, "rule r1: __import__"),
    ({"left": "previous(cccd_issued)", "right": "previous(vneid_l2_activated)"}, "rule r1: reads only previous"),
    ({"left": "1", "right": "2"}, "rule r1: reads no indicator"),
])
def test_the_catalogue_refuses_a_bad_rule_by_its_code(overrides: dict[str, object], says: str) -> None:
    with pytest.raises(RuleError, match=re.escape(says)):
        compile_rule(_spec(**overrides), CATALOG.by_code)


def test_a_catalogue_with_a_bad_rule_does_not_load() -> None:
    text = """
indicators:
  - {code: a, name_vi: a, name_en: a, group: governance, unit: x, measure: stock, period_type: month}
rules:
  - {code: broken, name_vi: b, name_en: b, left: "a.__dict__", operator: "<=", right: "1", importance: low,
     reason: r}
"""
    with pytest.raises(RuleError, match=re.escape("rule broken: .__dict__ is not allowed")):
        parse_catalog(text)


def _check(rule_code: str, now: dict[str, tuple[int, int | None]], before: dict[str, tuple[int, int | None]]
           ) -> tuple[bool, Decimal | None, Decimal | None]:
    rule = next(r for r in CATALOG.rules if r.code == rule_code)

    def lookup(code: str, previous: bool) -> tuple[Decimal, Decimal | None] | None:
        found = (before if previous else now).get(code)
        return None if found is None else (Decimal(found[0]), None if found[1] is None else Decimal(found[1]))

    outcome = rule.check(lookup)
    return outcome.violated, outcome.left, outcome.right


def test_the_designs_rules_hold_and_break_where_they_should() -> None:
    assert _check("vneid_l2_activated_within_cccd", {"vneid_l2_activated": (51_400, None),
                                                     "cccd_issued": (141_000, None)}, {}) == (False, None, None)
    assert _check("vneid_l2_activated_within_cccd", {"vneid_l2_activated": (151_400, None),
                                                     "cccd_issued": (141_000, None)}, {}) == (
        True, Decimal(151_400), Decimal(141_000))
    assert _check("cccd_issued_never_falls", {"cccd_issued": (14_100, None)}, {"cccd_issued": (141_000, None)})[0]
    assert not _check("cccd_issued_never_falls", {"cccd_issued": (141_000, None)}, {"cccd_issued": (141_000, None)})[0]
    assert _check("online_dossier_rate_part_of_whole", {"online_dossier_rate": (120, 100)}, {})[0]
    assert not _check("online_dossier_rate_part_of_whole", {"online_dossier_rate": (100, 100)}, {})[0]
    assert _check("essential_services_within_list", {"essential_services_online": (14, 26)}, {}) == (
        True, Decimal(26), Decimal(25))
    assert not _check("essential_services_within_list", {"essential_services_online": (14, 25)}, {})[0]


def test_missing_values_skip_as_the_rule_says() -> None:
    # skip_if_any (the default): a missing previous month skips the monotonic rule rather than compare with 0
    assert _check("cccd_issued_never_falls", {"cccd_issued": (5, None)}, {}) == (False, None, None)
    # nothing to check at all
    assert _check("vneid_l2_activated_within_cccd", {}, {}) == (False, None, None)
    never = compile_rule(_spec(missing="never_skip"), CATALOG.by_code)
    some = compile_rule(_spec(missing="skip_if_all"), CATALOG.by_code)
    only_left = {"vneid_l2_activated": (10, None)}

    def lookup(code: str, previous: bool) -> tuple[Decimal, Decimal | None] | None:
        found = only_left.get(code)
        return None if found is None else (Decimal(found[0]), None)

    assert never.check(lookup).violated  # cccd_issued counts as 0: 10 <= 0 breaks
    assert not some.check(lookup).violated  # the right side is all missing: skipped


def test_a_rate_of_nothing_skips_the_rule_instead_of_dividing_by_zero() -> None:
    rule = compile_rule(_spec(left="online_dossier_rate", operator="<=", right="100"), CATALOG.by_code)
    assert not rule.check(lambda code, previous: (Decimal(5), Decimal(0))).violated
    assert rule.check(lambda code, previous: (Decimal(150), Decimal(100))).violated
    divide = compile_rule(_spec(left="cccd_issued / (vneid_l2_activated - vneid_l2_activated)", right="1"),
                          CATALOG.by_code)
    assert not divide.check(lambda code, previous: (Decimal(5), None)).violated


def test_every_rule_in_the_catalogue_says_why() -> None:
    assert len(CATALOG.rules) >= 30
    for rule in CATALOG.rules:
        assert rule.spec.reason.strip(), rule.code
    stocks_to_date = {i.code for i in CATALOG if i.measure.value == "stock" and "to date" in (i.description_en or "")
                      and not i.retired}
    monotonic = {r.left_refs[0].code for r in CATALOG.rules if r.reads_previous}
    assert stocks_to_date <= monotonic
    flagged = {i.code for i in CATALOG if i.outliers}
    assert {i.code for i in CATALOG if i.measure.value == "flow"} <= flagged
    assert stocks_to_date <= flagged
