"""Bad input against the real ingest app: each gets the status and problem type a user should get, and
nothing is stored. The table is the catalogue of mistakes and attacks considered (docs/security.md)."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from services.ingest.app import create_app
from shared.periods import today_in_vietnam
from tests.fixtures.apps import auth, no_relay, running, serve
from tests.fixtures.infra import Stack

GOOD: dict[str, Any] = {"unit": "803", "indicator": "cccd_issued", "period": "2024-07", "value": 87700}
RATIO: dict[str, Any] = {"unit": "803", "indicator": "cccd_coverage", "period": "2024-07",
                         "numerator": 87700, "denominator": 90412}


def event(**changes: Any) -> bytes:
    """A body of one event: GOOD with `changes` (a value of `...` removes the field)."""
    body = {k: v for k, v in {**GOOD, **changes}.items() if v is not ...}
    return json.dumps({"events": [body]}).encode()


def ratio(**changes: Any) -> bytes:
    body = {k: v for k, v in {**RATIO, **changes}.items() if v is not ...}
    return json.dumps({"events": [body]}).encode()


def raw_event(fragment: str, unit: str = "803") -> bytes:
    """An event whose JSON is written by hand: for what json.dumps cannot produce (NaN, lone surrogates)."""
    head = f'{{"events": [{{"unit": "{unit}", "indicator": "cccd_issued", "period": "2024-07", '
    return (head + fragment + "}]}").encode()


@dataclass(frozen=True)
class Case:
    name: str
    body: bytes | Callable[[], AsyncIterator[bytes]]
    status: int
    slug: str
    key: str = "admin"  # which key of KEYS sends it; "none" sends no Authorization header
    query: str = ""
    headers: dict[str, str] = field(default_factory=dict)


async def _ten_megabytes_streamed() -> AsyncIterator[bytes]:  # no Content-Length: counted as it arrives
    for _ in range(10):
        yield b" " * (1024 * 1024)


_today = today_in_vietnam()
NEXT_MONTH = f"{_today.year + _today.month // 12}-{_today.month % 12 + 1:02d}"
TEN_MB = b'{"events": [' + b" " * (10 * 1024 * 1024) + b"]}"
DIGITS = "9" * 5000

CASES: list[Case] = [
    # The body as a whole
    Case("malformed JSON", b'{"events": [', 400, "malformed-json"),
    Case("empty body", b"", 400, "malformed-json"),
    Case("not UTF-8", b'{"events": [{"unit": "\xff"}]}', 400, "malformed-json"),
    Case("UTF-16 instead of UTF-8", json.dumps({"events": [GOOD]}).encode("utf-16"), 400, "malformed-json"),
    Case("UTF-8 byte order mark", b"\xef\xbb\xbf" + event(), 400, "malformed-json"),
    Case("nested 100,000 deep", b"[" * 100_000, 400, "malformed-json"),
    Case("trailing garbage", b'{"events": []} {"events": []}', 400, "malformed-json"),
    Case("body is a list", b"[]", 422, "validation-error"),
    Case("body is a string", b'"events"', 422, "validation-error"),
    Case("body is null", b"null", 422, "validation-error"),
    Case("events is an object", b'{"events": {}}', 422, "validation-error"),
    Case("no events", b'{"events": []}', 422, "validation-error"),
    Case("5,001 events", json.dumps({"events": [GOOD] * 5001}).encode(), 422, "validation-error"),
    Case("unknown top-level field", b'{"events": [], "atomic": false}', 422, "validation-error"),
    Case("duplicate field (parser differential)", raw_event('"value": 1, "unit": "936"'), 422, "validation-error"),
    Case("10 MB body", TEN_MB, 413, "payload-too-large"),
    Case("10 MB streamed without Content-Length", _ten_megabytes_streamed, 413, "payload-too-large"),
    Case("atomic is not a boolean", event(), 422, "validation-error", query="?atomic=maybe"),
    # The shape of an event
    Case("event is a number", b'{"events": [42]}', 422, "validation-error"),
    Case("event is null", b'{"events": [null]}', 422, "validation-error"),
    Case("unknown field", event(region="south"), 422, "validation-error"),
    Case("__proto__ field", event(__proto__={"admin": True}), 422, "validation-error"),
    # Units
    Case("no unit", event(unit=...), 422, "validation-error"),
    Case("unit as a number", event(unit=803), 422, "validation-error"),
    Case("unknown unit", event(unit="999"), 422, "validation-error"),
    Case("zero-width space in the unit", event(unit="80\u200b3"), 422, "validation-error"),
    Case("right-to-left override in the unit", event(unit="\u202e308"), 422, "validation-error"),
    Case("fullwidth digits (homoglyph unit)", event(unit="８０３"), 422, "validation-error"),
    Case("Arabic-Indic digits (homoglyph unit)", event(unit="٨٠٣"), 422, "validation-error"),
    Case("Greek Nu in VN (homoglyph nation)", event(unit="V\u039d"), 422, "validation-error"),
    Case("NUL byte in the unit", event(unit="803\u0000"), 422, "validation-error"),
    Case("lone surrogate in the unit", raw_event('"value": 1', unit="\\ud800"), 422, "validation-error"),
    Case("lone surrogate in a field name", raw_event('"value": 1, "x\\ud800": 1'), 422, "validation-error"),
    Case("SQL injection in the unit", event(unit="803' OR '1'='1"), 422, "validation-error"),
    Case("SQL injection in the unit (stacked)", event(unit="803'); DROP TABLE outbox;--"), 422, "validation-error"),
    # Indicators and editions
    Case("unknown indicator", event(indicator="cccd_issued_v2"), 422, "validation-error"),
    Case("retired indicator cmnd_converted", event(indicator="cmnd_converted"), 422, "validation-error"),
    Case("indicator as a list", event(indicator=["cccd_issued"]), 422, "validation-error"),
    Case("SQL injection in the indicator", event(indicator="x' UNION SELECT secret_hash FROM api_keys--"),
         422, "validation-error"),
    Case("unknown edition", event(edition="2030"), 422, "validation-error"),
    Case("edition not in force for the period", event(edition="legacy", unit="80", period="2025-08"),
         422, "validation-error"),
    # Periods
    Case("wrong period type (half-year for a monthly indicator)", event(period="2024-H1"), 422, "validation-error"),
    Case("period in words", event(period="July 2024"), 422, "validation-error"),
    Case("year 3000", event(period="3000-01"), 422, "validation-error"),
    Case("a period that has not started", event(period=NEXT_MONTH), 422, "validation-error"),
    Case("a year far ahead", event(period="2099-01"), 422, "validation-error"),
    Case("before 2015", event(period="2010-01"), 422, "validation-error"),
    Case("month 13", event(period="2024-13"), 422, "validation-error"),
    Case("fullwidth digits in the period", event(period="２０２４-07"), 422, "validation-error"),
    Case("a period of a megabyte", event(period="2024-07" + "7" * 1_000_000), 422, "validation-error"),
    # Figures
    Case("ratio without denominator", ratio(denominator=...), 422, "validation-error"),
    Case("ratio as a bare percentage", ratio(numerator=..., denominator=..., value=97), 422, "validation-error"),
    Case("denominator zero", ratio(denominator=0), 422, "validation-error"),
    Case("boolean sent to a flow", event(indicator="dossiers_received", value=True), 422, "validation-error"),
    Case("number as a string", event(value="87700"), 422, "validation-error"),
    Case("negative count", event(value=-1), 422, "validation-error"),
    Case("negative numerator", ratio(numerator=-5), 422, "validation-error"),
    Case("NaN", raw_event('"value": NaN'), 422, "validation-error"),
    Case("Infinity", raw_event('"value": Infinity'), 422, "validation-error"),
    Case("-Infinity", raw_event('"value": -Infinity'), 422, "validation-error"),
    Case("huge number 1e16", raw_event('"value": 1e16'), 422, "validation-error"),
    Case("exponent 1e999999999", raw_event('"value": 1e999999999'), 422, "validation-error"),
    Case("integer of 5,000 digits", raw_event(f'"value": {DIGITS}'), 422, "validation-error"),
    Case("seven decimal places", raw_event('"value": 1.0000001'), 422, "validation-error"),
    Case("coverage above its denominator", event(indicator="working_group_formed", value=...,
                                                 numerator=25, denominator=24), 422, "validation-error"),
    Case("operator object as a value (NoSQL injection)", event(value={"$gt": 0}), 422, "validation-error"),
    # Identifiers and free text
    Case("SQL injection in the event_id", event(event_id="x'; DROP TABLE outbox;--"), 422, "validation-error"),
    Case("JSON injection in the event_id", event(event_id='a","unit":"VN'), 422, "validation-error"),
    Case("event_id of 129 characters", event(event_id="e" * 129), 422, "validation-error"),
    Case("NUL byte in the comment", event(comment="ok\u0000"), 422, "validation-error"),
    Case("right-to-left override in the comment", event(comment="total \u202e0001"), 422, "validation-error"),
    Case("zero-width joiner in the comment", event(comment="a\u200db"), 422, "validation-error"),
    Case("lone surrogate in the comment", raw_event('"value": 1, "comment": "\\udc80"'), 422, "validation-error"),
    Case("comment of 1,001 characters", event(comment="x" * 1001), 422, "validation-error"),
    Case("comment as a number", event(comment=12), 422, "validation-error"),
    Case("one bad event spoils an atomic batch", json.dumps({"events": [GOOD, {**GOOD, "value": -1}]}).encode(),
         422, "validation-error"),
    # Who sends it
    Case("no key", event(), 401, "unauthorized", key="none"),
    Case("Basic instead of Bearer", event(), 401, "unauthorized", key="none",
         headers={"Authorization": "Basic ZDA2OmQwNg=="}),
    Case("forged key", event(), 401, "unauthorized", key="forged"),
    Case("revoked key", event(), 401, "unauthorized", key="revoked"),
    Case("expired key", event(), 401, "unauthorized", key="expired"),
    Case("key without the submit role", event(), 403, "forbidden", key="reader"),
    Case("unit outside the key's province", event(unit="936"), 403, "forbidden", key="long_an"),
    Case("the nation with a province key", event(unit="VN", period="2024-07"), 403, "forbidden", key="long_an"),
]


async def _keys(stack: Stack) -> dict[str, str]:
    past = datetime.now(UTC) - timedelta(seconds=1)
    keys = {
        "admin": await stack.create_key(),
        "reader": await stack.create_key(roles=("read",)),
        "long_an": await stack.create_key(scope="80", edition="legacy", roles=("submit", "read")),
        "revoked": await stack.create_key(),
        "expired": await stack.create_key(expires_at=past),
    }
    keys["forged"] = keys["admin"][:-4] + ("AAAA" if not keys["admin"].endswith("AAAA") else "BBBB")
    await stack.execute("UPDATE api_keys SET revoked_at = now() WHERE id = $1", keys["revoked"].split("_")[1])
    return keys


async def _outbox(stack: Stack) -> int:
    return int((await stack.fetch("SELECT count(*) AS n FROM outbox"))[0]["n"])


def test_the_table_has_at_least_forty_bad_inputs() -> None:
    assert len(CASES) >= 40
    assert len({c.name for c in CASES}) == len(CASES)


async def test_every_bad_input_gets_its_status_and_type_and_stores_nothing(stack: Stack) -> None:
    keys = await _keys(stack)
    wrong: list[str] = []
    async with running(create_app(no_relay(stack))) as client:
        for case in CASES:
            before = await _outbox(stack)
            headers = {**({} if case.key == "none" else auth(keys[case.key])), **case.headers}
            body = case.body() if callable(case.body) else case.body
            response = await client.post(f"/v1/events{case.query}", content=body, headers=headers)
            problem = _problem(response)
            if (response.status_code, problem.get("type")) != (case.status, f"https://d06.gov.vn/problems/{case.slug}"):
                wrong.append(f"{case.name}: {response.status_code} {problem.get('type')} {response.text[:200]}")
            if await _outbox(stack) != before:
                wrong.append(f"{case.name}: something was stored")
            if response.headers.get("x-request-id") != problem.get("request_id"):
                wrong.append(f"{case.name}: the request id of the body is not the header's")
    assert not wrong, "\n".join(wrong)
    assert await _outbox(stack) == 0


def _problem(response: httpx.Response) -> dict[str, Any]:
    if response.headers.get("content-type") != "application/problem+json":
        return {}
    body: dict[str, Any] = response.json()
    return body


async def test_hostile_text_in_a_comment_is_stored_as_text_and_harms_nothing(stack: Stack) -> None:
    """Where free text is allowed, SQL and JSON are just characters: bound parameters, never spliced."""
    key = await stack.create_key()
    hostile = "'); DELETE FROM outbox; -- \"}]}, {\"unit\": \"VN\", \"value\": 1e15} <script>alert(1)</script>"
    async with running(create_app(no_relay(stack))) as client:
        response = await client.post("/v1/events", json={"events": [{**GOOD, "event_id": "h-1", "comment": hostile}]},
                                     headers=auth(key))
        assert response.status_code == 202, response.text
        status = await client.get("/v1/events/h-1", headers=auth(key))
        assert status.json()["comment"] == hostile
    rows = await stack.fetch("SELECT unit, comment FROM outbox")
    assert [(r["unit"], r["comment"]) for r in rows] == [("803", hostile)]


async def test_composed_and_decomposed_vietnamese_are_one_comment(stack: Stack) -> None:
    """NFC: "báo cáo" typed with combining accents is the same content, so a resend is not a conflict."""
    key = await stack.create_key()
    composed, decomposed = "báo cáo tháng 7", "ba\u0301o ca\u0301o tha\u0301ng 7"
    async with running(create_app(no_relay(stack))) as client:
        first = await client.post("/v1/events", json={"events": [{**GOOD, "event_id": "n-1", "comment": composed}]},
                                  headers=auth(key))
        again = await client.post("/v1/events", json={"events": [{**GOOD, "event_id": "n-1", "comment": decomposed}]},
                                  headers=auth(key))
        assert first.status_code == again.status_code == 202
        assert first.json() == again.json()


def _cursor(key: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps({"k": key}).encode()).rstrip(b"=").decode()


# The query service's parameters: the same rule, a clear 4xx and never a 500 (reads store nothing).
QUERY_CASES: list[tuple[str, str, dict[str, str], int, str]] = [
    ("NUL in a search", "/v1/units", {"q": "a\x00b"}, 422, "validation-error"),
    ("right-to-left override in a search", "/v1/units", {"q": "\u202eabc"}, 422, "validation-error"),
    ("search of 101 characters", "/v1/units", {"q": "x" * 101}, 422, "validation-error"),
    ("SQL wildcards in a search are literal", "/v1/units", {"q": "%' OR 1=1 --"}, 200, ""),
    ("cursor of a huge depth", "/v1/units", {"cursor": _cursor([10**30, "01"])}, 422, "validation-error"),
    ("cursor with a NUL code", "/v1/units", {"cursor": _cursor([1, "0\u00001"])}, 422, "validation-error"),
    ("cursor with a boolean depth", "/v1/units", {"cursor": _cursor([True, "01"])}, 422, "validation-error"),
    ("cursor that is not base64", "/v1/units", {"cursor": "%%%"}, 422, "validation-error"),
    ("unknown edition", "/v1/units", {"edition": "1999"}, 422, "validation-error"),
    ("unknown level", "/v1/units", {"level": "village"}, 422, "validation-error"),
    ("limit 0", "/v1/units", {"limit": "0"}, 422, "validation-error"),
    ("limit 10,000", "/v1/units", {"limit": "10000"}, 422, "validation-error"),
    ("parent of 23 characters", "/v1/units", {"parent": "'; DROP TABLE units; --"}, 422, "validation-error"),
    ("unknown parent (SQL)", "/v1/units", {"parent": "' OR 1--"}, 404, "not-found"),
    ("unit code of 17 characters", "/v1/units/12345678901234567", {}, 422, "validation-error"),
    ("NUL in a unit code", "/v1/units/80%00", {}, 404, "not-found"),
    ("period with a NUL", "/v1/units/80/values", {"period": "2024\x00"}, 422, "validation-error"),
    ("period in fullwidth digits", "/v1/units/80/values", {"period": "２０２４"}, 422, "validation-error"),
    ("period of year 3000", "/v1/units/80/values", {"period": "3000"}, 422, "validation-error"),
    ("unknown indicator", "/v1/units/80/values", {"period": "2024", "indicator": "x' OR '1"}, 422,
     "validation-error"),
    ("unknown sort", "/v1/units/80/children/values", {"period": "2024", "indicator": "cccd_issued",
                                                      "sort": "value; DROP"}, 422, "validation-error"),
    ("a series of 25 years of months", "/v1/units/80/series", {"indicator": "cccd_issued", "from": "2000-01",
                                                               "to": "2024-12"}, 422, "validation-error"),
    ("a series that ends before it starts", "/v1/units/80/series", {"indicator": "cccd_issued", "from": "2024-12",
                                                                    "to": "2024-01"}, 422, "validation-error"),
]


async def test_bad_query_parameters_get_a_clear_4xx(stack: Stack) -> None:
    key = await stack.create_key(roles=("read",))
    wrong: list[str] = []
    async with serve(stack) as client:
        client.headers["Authorization"] = f"Bearer {key}"
        for name, path, params, status, slug in QUERY_CASES:
            response = await client.get(path, params={"edition": "legacy", **params})
            problem = _problem(response)
            if response.status_code != status or (slug and not problem.get("type", "").endswith(f"/{slug}")):
                wrong.append(f"{name}: {response.status_code} {response.text[:200]}")
    assert not wrong, "\n".join(wrong)
