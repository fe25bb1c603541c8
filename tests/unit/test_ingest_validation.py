"""Validation of submitted events, as a pure function: a small catalogue and hierarchy, no I/O."""

from __future__ import annotations

import uuid
from datetime import date
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.ingest.body import parse_body
from services.ingest.service import random_event_ids
from services.ingest.validation import (
    Context,
    Rejection,
    RejectReason,
    ValidEvent,
    content_hash,
    validate_batch,
    validate_event,
)
from shared.auth import Principal
from shared.catalog import Catalog, Indicator
from shared.errors import MalformedJson, ValidationFailed
from shared.hierarchy import Hierarchy, Unit

TODAY = date(2026, 11, 22)


def _indicator(code: str, measure: str, period_type: str = "month", **extra: Any) -> Indicator:
    return Indicator.model_validate({
        "code": code, "name_vi": code, "name_en": code, "group": "digital_citizen", "unit": "people",
        "measure": measure, "period_type": period_type, **extra,
    })


CATALOG = Catalog([
    _indicator("cccd_issued", "stock"),
    _indicator("dossiers_received", "flow"),
    _indicator("cccd_coverage", "ratio", components="stock"),
    _indicator("working_group_formed", "boolean"),
    _indicator("essential_online_dossier_rate", "ratio", "half", components="flow"),
    _indicator("cmnd_converted", "stock", retired=True),
])


def _unit(edition: str, code: str, parent: Unit | None, level: str) -> Unit:
    ancestors = (*parent.ancestors, parent.code) if parent else ()
    province = code if level == "province" else (parent.province_code if parent else None)
    return Unit(edition, code, parent.code if parent else None, level, "x", code, province, ancestors)


def _hierarchy() -> Hierarchy:
    vn = _unit("legacy", "VN", None, "nation")
    long_an = _unit("legacy", "80", vn, "province")
    ben_luc = _unit("legacy", "803", long_an, "district")
    hau_giang = _unit("legacy", "93", vn, "province")
    long_my = _unit("legacy", "936", hau_giang, "district")
    truc_bach = _unit("legacy", "00004", _unit("legacy", "001", _unit("legacy", "01", vn, "province"),
                                                 "district"), "commune")
    vn25 = _unit("2025", "VN", None, "nation")
    ha_noi = _unit("2025", "01", vn25, "province")
    ba_dinh = _unit("2025", "00004", ha_noi, "commune")
    return Hierarchy([vn, long_an, ben_luc, hau_giang, long_my, truc_bach, vn25, ha_noi, ba_dinh])


HIERARCHY = _hierarchy()
NATIONAL = Principal("k1", frozenset({"submit"}), None, "VN")
CTX = Context(CATALOG, HIERARCHY, NATIONAL, TODAY)


def check(event: dict[str, Any], ctx: Context = CTX) -> ValidEvent | Rejection:
    return validate_event(event, 3, ctx)


def ok(event: dict[str, Any], ctx: Context = CTX) -> ValidEvent:
    outcome = check(event, ctx)
    assert isinstance(outcome, ValidEvent), outcome
    return outcome


def errors(event: dict[str, Any], ctx: Context = CTX) -> dict[str, str]:
    outcome = check(event, ctx)
    assert isinstance(outcome, Rejection), outcome
    return {e.loc: e.message for e in outcome.errors}


def stock(**overrides: Any) -> dict[str, Any]:
    return {"unit": "803", "indicator": "cccd_issued", "period": "2024-07", "value": 87700, **overrides}


def ratio(**overrides: Any) -> dict[str, Any]:
    return {"unit": "803", "indicator": "cccd_coverage", "period": "2024-07",
            "numerator": 87700, "denominator": 90412, **overrides}


# ---- good events


def test_a_stock_value_becomes_a_pair_without_denominator() -> None:
    event = ok(stock(event_id="longan-1", comment="báo cáo tháng 7"))
    assert (event.edition, event.unit, event.province, event.period) == ("legacy", "803", "80", "2024-07")
    assert (event.num, event.den) == (Decimal(87700), None)
    assert event.event_id == "longan-1" and event.comment == "báo cáo tháng 7"
    assert event.group == "digital_citizen"


def test_a_ratio_keeps_numerator_and_denominator_exactly() -> None:
    event = ok(ratio(numerator=Decimal("699634.5"), denominator=637607))
    assert (event.num, event.den) == (Decimal("699634.5"), Decimal(637607))  # above 100% is allowed


def test_decimals_are_normalised_so_equal_figures_hash_alike() -> None:
    a, b, c = ok(stock(value=87700)), ok(stock(value=Decimal("87700.000"))), ok(stock(value=Decimal("8.77E+4")))
    assert str(a.num) == str(b.num) == str(c.num) == "87700"
    assert a.content_hash == b.content_hash == c.content_hash
    assert ok(stock(value=Decimal("0.1"))).num == Decimal("0.1")
    assert str(ok(stock(value=Decimal("-0"))).num) == "0"


def test_the_content_hash_covers_what_the_event_says() -> None:
    base = ok(stock()).content_hash
    assert ok(stock(value=87701)).content_hash != base
    assert ok(stock(comment="x")).content_hash != base
    assert ok(stock(event_id="other")).content_hash == base  # the id is not content
    assert base == content_hash("legacy", "803", "cccd_issued", "2024-07", Decimal(87700), None, None)


def test_boolean_true_false_and_coverage() -> None:
    yes = ok({"unit": "803", "indicator": "working_group_formed", "period": "2024-07", "value": True})
    no = ok({"unit": "803", "indicator": "working_group_formed", "period": "2024-07", "value": False})
    coverage = ok({"unit": "80", "indicator": "working_group_formed", "period": "2024-07",
                   "numerator": 24, "denominator": 24})
    assert (yes.num, yes.den) == (Decimal(1), Decimal(1))
    assert (no.num, no.den) == (Decimal(0), Decimal(1))
    assert (coverage.num, coverage.den) == (Decimal(24), Decimal(24))


@pytest.mark.parametrize("event", [
    stock(value=None),
    ratio(numerator=None, denominator=None),
    {"unit": "803", "indicator": "cccd_coverage", "period": "2024-07", "value": None},
    {"unit": "803", "indicator": "working_group_formed", "period": "2024-07", "value": None},
])
def test_retractions(event: dict[str, Any]) -> None:
    retraction = ok(event)
    assert (retraction.num, retraction.den) == (None, None)


@pytest.mark.parametrize(("period", "edition"), [
    ("2025-06", "legacy"), ("2025-H1", "legacy"), ("2025-07", "2025"), ("2025", "2025"), ("2024", "legacy"),
])
def test_the_edition_follows_the_end_of_the_period(period: str, edition: str) -> None:
    ptype = {"2025-06": "month", "2025-07": "month", "2025-H1": "half", "2025": "year", "2024": "year"}[period]
    catalog = Catalog([_indicator("cccd_issued", "stock", ptype)])
    event = ok({"unit": "00004", "indicator": "cccd_issued", "period": period, "value": 1},
               Context(catalog, HIERARCHY, NATIONAL, TODAY))
    assert event.edition == edition


def test_a_code_reused_across_the_reform_is_resolved_per_edition() -> None:
    assert ok(stock(unit="00004", period="2025-06")).province == "01"
    assert ok(stock(unit="00004", period="2025-07")).province == "01"
    assert ok(stock(unit="VN", period="2025-07")).province == "VN"


# ---- bad events, each with its location and a readable message


def test_wrong_period_type_names_the_native_one() -> None:
    assert errors(stock(period="2024-H1")) == {
        "events[3].period": "cccd_issued is reported monthly (2024-07); 2024-H1 is a half-year"
    }
    assert "six-monthly" in errors(ratio(indicator="essential_online_dossier_rate"))["events[3].period"]


def test_unparseable_and_future_periods() -> None:
    assert "not a period code" in errors(stock(period="July 2024"))["events[3].period"]
    assert "not a real calendar period" in errors(stock(period="2024-13"))["events[3].period"]
    assert "has not started yet" in errors(stock(period="2027-01"))["events[3].period"]


def test_a_ratio_without_its_denominator() -> None:
    assert errors(ratio(denominator=None)) == {"events[3].denominator": "a percentage needs its denominator too"}
    missing = errors({"unit": "803", "indicator": "cccd_coverage", "period": "2024-07", "numerator": 5})
    assert missing == {"events[3].denominator": "a percentage needs its denominator too"}
    assert errors(ratio(denominator=0)) == {
        "events[3].denominator": "the denominator must be greater than zero"}


def test_a_bare_percentage_is_refused() -> None:
    message = errors({"unit": "803", "indicator": "cccd_coverage", "period": "2024-07", "value": 97})
    assert message["events[3].value"].startswith("a percentage needs its numerator and denominator")


def test_a_boolean_given_to_a_flow_and_a_number_given_to_a_boolean() -> None:
    flow = errors({"unit": "803", "indicator": "dossiers_received", "period": "2024-07", "value": True})
    assert flow == {"events[3].value": "dossiers_received counts people: send a number, not true/false"}
    boolean = errors({"unit": "803", "indicator": "working_group_formed", "period": "2024-07", "value": 1})
    assert "send true or false" in boolean["events[3].value"]


def test_a_coverage_counts_whole_units_and_cannot_exceed_its_base() -> None:
    event = {"unit": "80", "indicator": "working_group_formed", "period": "2024-07"}
    assert "cannot exceed" in errors({**event, "numerator": 25, "denominator": 24})["events[3].numerator"]
    assert "whole numbers" in errors({**event, "numerator": Decimal("2.5"), "denominator": 24})[
        "events[3].numerator"]


@pytest.mark.parametrize(("value", "fragment"), [
    (Decimal("NaN"), "NaN and Infinity"),
    (Decimal("Infinity"), "NaN and Infinity"),
    (-1, "must not be negative"),
    ("87700", "got the string"),
    ([1], "expected a number"),
    (Decimal("1e16"), "largest accepted figure"),
    (Decimal("0.1234567"), "at most 6 decimal places"),
])
def test_bad_numbers(value: Any, fragment: str) -> None:
    assert fragment in errors(stock(value=value))["events[3].value"]


def test_flows_and_stocks_take_a_value_not_components() -> None:
    found = errors({"unit": "803", "indicator": "cccd_issued", "period": "2024-07", "numerator": 1,
                    "denominator": 2})
    assert set(found) == {"events[3].numerator", "events[3].denominator", "events[3].value"}
    assert "send `value`" in found["events[3].numerator"]


def test_unknown_and_retired_indicators() -> None:
    assert "unknown indicator 'cccd_issuedx'" in errors(stock(indicator="cccd_issuedx"))["events[3].indicator"]
    assert errors(stock(indicator="cmnd_converted")) == {
        "events[3].indicator": "cmnd_converted is retired and no longer accepts values"}


def test_unknown_units_say_which_edition_was_searched() -> None:
    assert errors(stock(unit="999")) == {"events[3].unit": "unit '999' does not exist in the legacy edition"}
    message = errors(stock(unit="803", period="2025-08"))["events[3].unit"]
    assert message.startswith("unit '803' does not exist in the 2025 edition")
    assert "the edition in force at the end of the period" in message
    assert "a string code" in errors(stock(unit=803))["events[3].unit"]


def test_an_edition_that_does_not_match_the_period() -> None:
    assert "belongs to the 2025 edition" in errors(stock(edition="legacy", period="2025-08"))["events[3].edition"]
    assert "belongs to the legacy edition" in errors(stock(unit="00004", edition="2025"))["events[3].edition"]
    assert "(a string)" in errors(stock(edition=2025))["events[3].edition"]


def test_unknown_fields_event_ids_and_comments() -> None:
    assert "unknown field" in errors(stock(units="803"))["events[3].units"]
    assert "event_id" in errors(stock(event_id="has space"))["events[3].event_id"]
    assert "event_id" in errors(stock(event_id="x" * 129))["events[3].event_id"]
    assert "at most 1,000 characters" in errors(stock(comment="x" * 1001))["events[3].comment"]
    assert errors("not an object") == {"events[3]": "an event is a JSON object"}  # type: ignore[arg-type]


def test_all_errors_of_an_event_are_reported_together() -> None:
    found = errors({"unit": "803", "indicator": "cccd_coverage", "period": "2024-H1", "value": 97, "x": 1})
    assert set(found) == {"events[3].x", "events[3].period", "events[3].value"}


# ---- scope


def test_a_province_key_may_submit_inside_its_subtree_only() -> None:
    long_an = Context(CATALOG, HIERARCHY, Principal("k2", frozenset({"submit"}), "legacy", "80"), TODAY)
    assert ok(stock(unit="803"), long_an).unit == "803"
    outside = check(stock(unit="936"), long_an)
    assert isinstance(outside, Rejection)
    assert outside.reason is RejectReason.SCOPE and outside.status == 403
    assert outside.errors[0].as_dict() == {
        "loc": "events[3].unit", "message": "unit 936 (legacy) is outside the key's scope 80 (legacy)"}
    # the same code in the other edition is another unit: outside a legacy-scoped key
    assert isinstance(check(stock(unit="80", period="2025-07"), long_an), Rejection)


def test_a_batch_splits_into_valid_and_rejected_in_order() -> None:
    result = validate_batch([stock(), stock(period="2024-Q3"), ratio()], CTX)
    assert [e.index for e in result.valid] == [0, 2]
    assert [r.index for r in result.rejected] == [1]
    assert result.rejected[0].as_dict()["type"].endswith("/validation-error")
    assert result.rejected[0].as_dict()["status"] == 422



def test_a_mixed_batch_names_exactly_the_events_of_its_bad_combination() -> None:
    """Each (indicator, period, edition) is resolved once per batch: the bad one must still be charged to
    every event that sends it, and to no other."""
    combos = [("cccd_issued", "2024-07", None), ("cccd_issued", "2024-H1", None),
              ("dossiers_received", "2024-08", "legacy"), ("dossiers_received", "2025-08", "legacy")]
    events = [stock(indicator=indicator, period=period, **({"edition": edition} if edition else {}))
              for _ in range(5) for indicator, period, edition in combos]
    result = validate_batch(events, CTX)
    assert [r.index for r in result.rejected] == [i for i in range(20) if i % 4 in (1, 3)]
    assert {e.loc for r in result.rejected for e in r.errors} == (
        {f"events[{i}].period" for i in range(1, 20, 4)} | {f"events[{i}].edition" for i in range(3, 20, 4)})
    assert len(result.valid) == 10


_ANY = st.sampled_from
_EVENTS = st.fixed_dictionaries(
    {"unit": _ANY(["803", "00004", "80", "999", None, 803]),
     "indicator": _ANY(["cccd_issued", "cccd_coverage", "working_group_formed", "nope", "cmnd_converted",
                        None, 1, True, ["cccd_issued"]]),
     "period": _ANY(["2024-07", "2025-08", "2024-H1", "2024-13", "2027-01", "1999", None, 202407, Decimal(1)])},
    optional={"edition": _ANY(["legacy", "2025", "1", None, 1, True]),
              "value": _ANY([87700, Decimal("87700.0"), True, None, -1]),
              "numerator": _ANY([1, Decimal("2.5")]), "denominator": _ANY([2, 0])},
)


@settings(max_examples=200, deadline=None)
@given(st.lists(_EVENTS, min_size=1, max_size=30))
def test_a_batch_judges_every_event_as_if_it_came_alone(events: list[dict[str, Any]]) -> None:
    result = validate_batch(events, CTX)
    alone = [validate_event(event, index, CTX) for index, event in enumerate(events)]
    assert result.valid == [o for o in alone if isinstance(o, ValidEvent)]
    assert result.rejected == [o for o in alone if isinstance(o, Rejection)]


@pytest.mark.parametrize(("literal", "stored"), [
    (b"0", "0"), (b"-0", "0"), (b"87700", "87700"), (b"1000000000000000", "1000000000000000"),
    (b"87700.0", "87700"), (b"8.77e4", "87700"), (b"1.5", "1.5"),
])
def test_json_numbers_are_stored_plain(literal: bytes, stored: str) -> None:
    event = ok(parse_body(b'{"events": [{"unit": "803", "indicator": "cccd_issued", "period": "2024-07", '
                          b'"value": ' + literal + b"}]}")[0])
    assert str(event.num) == stored


@pytest.mark.parametrize("literal", [b"1000000000000001", b"-5", b"9" * 5000])
def test_json_integers_out_of_range_are_refused(literal: bytes) -> None:
    raw = parse_body(b'{"events": [{"unit": "803", "indicator": "cccd_issued", "period": "2024-07", '
                     b'"value": ' + literal + b"}]}")[0]
    assert "events[3].value" in errors(raw)

# ---- the body


def test_the_body_is_parsed_with_exact_decimals() -> None:
    events = parse_body(b'{"events": [{"value": 12345678901234.123456, "n": NaN}]}')
    assert events[0]["value"] == Decimal("12345678901234.123456")
    assert events[0]["n"].is_nan()


@pytest.mark.parametrize("body", [b"{", b"", b"\xff\xfe{", b"[" * 100_000])
def test_malformed_json(body: bytes) -> None:
    with pytest.raises(MalformedJson):
        parse_body(body)


@pytest.mark.parametrize(("body", "loc"), [
    (b"[]", "body"),
    (b'{"events": []}', "events"),
    (b'{"events": {}}', "events"),
    (b'{"events": [{}], "atomic": false}', "atomic"),
    (b'{"events": [' + b"{}," * 5000 + b"{}]}", "events"),
])
def test_the_shape_of_the_body(body: bytes, loc: str) -> None:
    with pytest.raises(ValidationFailed) as raised:
        parse_body(body)
    assert loc in [e["loc"] for e in raised.value.errors or []]


def test_generated_event_ids_are_distinct_uuid4s_as_uuid_writes_them() -> None:
    ids = list(random_event_ids(10_000))
    assert len(set(ids)) == 10_000
    for text in ids:
        parsed = uuid.UUID(text)
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122 and str(parsed) == text
