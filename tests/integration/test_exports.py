"""Files out (DESIGN §9), on real PostgreSQL: rollups written with SQL (tests/fixtures/rollups.py), exported
through HTTP, read back with shared/files' own readers and compared with what the JSON API answers."""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from openpyxl import load_workbook

from shared.files.cells import parse_number
from shared.files.csvfile import read_csv
from shared.files.dhis2 import read_dhis2_json
from shared.files.model import FileError, Row
from shared.files.xlsx import read_xlsx
from tests.fixtures.apps import auth, serve
from tests.fixtures.infra import Stack
from tests.fixtures.rollups import LEGACY, insert
from tests.fixtures.waiting import eventually

FORMULA = '=HYPERLINK("http://evil.example","bấm vào đây")'
HALF = {"unit": "80", "from": "2024-01", "to": "2024-06", "edition": "legacy",
        "indicators": "dossiers_received,cccd_coverage,directives_issued"}
# (unit, indicator, period) of every value of Long An's subtree in LEGACY for those indicators and months.
LONG_AN = {("80", "dossiers_received", "2024-01"), ("80", "dossiers_received", "2024-02"),
           ("80", "directives_issued", "2024-01"), ("803", "dossiers_received", "2024-01"),
           ("803", "dossiers_received", "2024-02"), ("803", "cccd_coverage", "2024-03"),
           ("803", "cccd_coverage", "2024-06"), ("27991", "dossiers_received", "2024-01"),
           ("27991", "dossiers_received", "2024-02"), ("27991", "cccd_coverage", "2024-06"),
           ("27994", "dossiers_received", "2024-01"), ("27994", "cccd_coverage", "2024-06")}
REPORTED = {("80", "directives_issued", "2024-01"), ("803", "dossiers_received", "2024-01"),
            ("27991", "dossiers_received", "2024-01"), ("27991", "dossiers_received", "2024-02"),
            ("27991", "cccd_coverage", "2024-06"), ("27994", "dossiers_received", "2024-01"),
            ("27994", "cccd_coverage", "2024-06")}


@pytest.fixture
async def api(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    await insert(stack, LEGACY)
    # A unit name is the one text of an export that a person typed (into the GSO's list): make it a formula.
    await stack.execute("UPDATE units SET name = $1 WHERE edition = 'legacy' AND code = '27994'", FORMULA)
    key = await stack.create_key(roles=("read",))
    async with serve(stack) as client:
        client.headers.update(auth(key))
        yield client


async def export(api: httpx.AsyncClient, path: str = "/v1/exports", **params: str) -> httpx.Response:
    response = await api.get(path, params=params)
    assert response.status_code == 200, response.text
    return response


def rows_of(table_rows: Any) -> dict[tuple[str, str, str], dict[str, Any]]:
    out: dict[tuple[str, str, str], dict[str, Any]] = {}
    for row in table_rows:
        assert not isinstance(row, FileError), row
        assert isinstance(row, Row)
        out[(str(row.cells["unit"]), str(row.cells["indicator"]), str(row.cells["period"]))] = row.cells
    return out


async def json_value(api: httpx.AsyncClient, unit: str, indicator: str, period: str, edition: str = "legacy",
                     ) -> dict[str, Any]:
    response = await api.get(f"/v1/units/{unit}/values",
                             params={"period": period, "indicator": indicator, "edition": edition})
    assert response.status_code == 200, response.text
    (value,) = response.json()["values"]
    return value  # type: ignore[no-any-return]


def number(cell: Any) -> Decimal | None:
    return parse_number(cell)


def same(cell: Any, expected: Any) -> bool:
    return number(cell) == (None if expected is None else Decimal(str(expected)))


async def assert_as_json(api: httpx.AsyncClient, found: dict[tuple[str, str, str], dict[str, Any]],
                         edition: str = "legacy") -> None:
    for (unit, indicator, period), cells in found.items():
        want = await json_value(api, unit, indicator, period, edition)
        if "denominator" in cells and cells["denominator"] not in (None, ""):
            assert same(cells["numerator"], want["numerator"]) and same(cells["denominator"], want["denominator"])
        else:
            assert same(cells["value"], want["value"]), (unit, indicator, period, cells, want)


async def test_a_csv_export_reads_back_as_the_values_the_api_answers(api: httpx.AsyncClient) -> None:
    response = await export(api, **HALF)
    assert response.headers["content-type"].startswith("text/csv")
    assert response.content.startswith(b"\xef\xbb\xbf")  # Excel on Windows reads Vietnamese only with a BOM
    disposition = response.headers["content-disposition"]
    assert 'filename="d06-80-tinh-long-an-2024-01-2024-06.csv"' in disposition
    assert "filename*=UTF-8''d06-80-T%E1%BB%89nh%20Long%20An-2024-01-2024-06.csv" in disposition
    found = rows_of(read_csv(io.BytesIO(response.content)).rows)
    assert set(found) == LONG_AN  # units without a value are left out
    await assert_as_json(api, found)
    text = list(csv.DictReader(io.StringIO(response.content.decode("utf-8-sig"))))
    by_key = {(r["unit"], r["indicator"], r["period"]): r for r in text}
    province = by_key[("80", "dossiers_received", "2024-01")]
    assert (province["name"], province["level"], province["source"], province["basis"]) == (
        "Tỉnh Long An", "province", "computed", "native")
    assert (province["reporting"], province["expected"], province["edition"]) == ("1", "15", "legacy")
    assert by_key[("803", "dossiers_received", "2024-01")]["source"] == "reported"
    assert by_key[("803", "cccd_coverage", "2024-06")]["target"] != ""


async def test_formula_text_in_a_unit_name_is_escaped_in_csv_and_stays_text_in_excel(api: httpx.AsyncClient) -> None:
    text = (await export(api, **HALF)).content.decode("utf-8-sig")
    names = {r["name"] for r in csv.DictReader(io.StringIO(text)) if r["unit"] == "27994"}
    assert names == {"'" + FORMULA}  # Excel shows it as text instead of running it
    workbook = load_workbook(io.BytesIO((await export(api, **HALF, format="xlsx")).content))
    sheet = workbook.worksheets[0]
    cells = [row[1] for row in sheet.iter_rows(min_row=2) if row[0].value == "27994"]
    assert cells and all(c.value == FORMULA and c.data_type == "s" for c in cells)


async def test_an_excel_export_has_vietnamese_headers_numbers_as_numbers_and_periods_as_text(
    api: httpx.AsyncClient,
) -> None:
    response = await export(api, **HALF, format="xlsx")
    assert 'filename="d06-80-tinh-long-an-2024-01-2024-06.xlsx"' in response.headers["content-disposition"]
    sheet = load_workbook(io.BytesIO(response.content)).worksheets[0]
    rows = list(sheet.iter_rows())
    heads = [c.value for c in rows[0]]
    assert heads[:6] == ["Mã đơn vị", "Tên đơn vị", "Cấp", "Mã chỉ tiêu", "Kỳ", "Giá trị"]
    column = {h: i for i, h in enumerate(heads)}
    for row in rows[1:]:
        assert row[column["Kỳ"]].data_type == "s" and isinstance(row[column["Kỳ"]].value, str)
        assert row[column["Mã đơn vị"]].data_type == "s"
        assert row[column["Giá trị"]].data_type == "n" and isinstance(row[column["Giá trị"]].value, int | float)
    found = rows_of(read_xlsx(io.BytesIO(response.content)).rows)
    assert set(found) == LONG_AN
    await assert_as_json(api, found)


async def test_a_dhis2_export_holds_the_reported_figures_as_data_values(api: httpx.AsyncClient) -> None:
    response = await export(api, **HALF, format="dhis2")
    document = response.json()
    elements = {(dv["orgUnit"], dv["dataElement"], dv["period"]) for dv in document["dataValues"]}
    assert ("27991", "cccd_coverage.numerator", "202406") in elements
    assert ("27991", "cccd_coverage.denominator", "202406") in elements
    found = rows_of(read_dhis2_json(response.content).rows)
    assert set(found) == REPORTED  # computed sums would become reported figures if imported again
    await assert_as_json(api, found)
    everything = rows_of(read_dhis2_json((await export(api, **HALF, format="dhis2", source="all")).content).rows)
    assert set(everything) == LONG_AN


async def test_a_level_keeps_only_its_units(api: httpx.AsyncClient) -> None:
    communes = rows_of(read_csv(io.BytesIO((await export(api, **HALF, level="commune")).content)).rows)
    assert {u for u, _, _ in communes} == {"27991", "27994"}
    provinces = rows_of(read_csv(io.BytesIO((await export(
        api, unit="VN", edition="legacy", **{"from": "2024-01", "to": "2024-01"}, indicators="dossiers_received",
        level="province")).content)).rows)
    assert set(provinces) == {("80", "dossiers_received", "2024-01"), ("93", "dossiers_received", "2024-01"),
                              ("01", "dossiers_received", "2024-01")}
    nation = rows_of(read_csv(io.BytesIO((await export(
        api, unit="VN", edition="legacy", **{"from": "2024-01", "to": "2024-01"}, indicators="dossiers_received",
        level="nation")).content)).rows)
    assert number(nation[("VN", "dossiers_received", "2024-01")]["value"]) == 700  # summed at read time


@pytest.mark.parametrize(("params", "field"), [
    ({"indicators": "dossiers_received,no_such_thing"}, "indicators"),
    ({"from": "2024-07", "to": "2024-01"}, "from"),
    ({"from": "2000-01", "to": "2024-12"}, "from"),  # 300 months: more than ten years
    ({"from": "2024-13"}, "from"),
    ({"format": "pdf"}, "format"),
    ({"format": "dhis2", "reexpress": "true"}, "reexpress"),
    ({"level": "hamlet"}, "level"),
])
async def test_bad_parameters_are_problems_naming_the_field(
    api: httpx.AsyncClient, params: dict[str, str], field: str,
) -> None:
    response = await api.get("/v1/exports", params={**HALF, **params})
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert field in response.text


async def test_a_province_key_exports_its_subtree_and_nothing_else(stack: Stack) -> None:
    await insert(stack, LEGACY)
    key = await stack.create_key(scope="93", edition="legacy", roles=("read",))
    async with serve(stack) as api:
        api.headers.update(auth(key))
        for unit in ("80", "VN", "27991"):
            response = await api.get("/v1/exports", params={**HALF, "unit": unit})
            assert response.status_code == 404, (unit, response.text)
            assert response.headers["content-type"].startswith("application/problem+json")
        own = rows_of(read_csv(io.BytesIO((await export(api, **{**HALF, "unit": "93"})).content)).rows)
        assert set(own) == {("93", "dossiers_received", "2024-01"), ("936", "dossiers_received", "2024-01")}


async def test_reexpressed_values_are_exported_only_when_asked_and_never_to_dhis2(api: httpx.AsyncClient) -> None:
    params = {"unit": "80", "edition": "2025", "from": "2024-01", "to": "2024-02", "indicators": "dossiers_received"}
    native = rows_of(read_csv(io.BytesIO((await export(api, **params)).content)).rows)
    assert native == {}  # Tây Ninh (2025) has no figure of its own before the reform
    response = await export(api, **params, reexpress="true")
    found = rows_of(read_csv(io.BytesIO(response.content)).rows)
    assert ("80", "dossiers_received", "2024-01") in found
    await assert_as_json(api, found, edition="2025")
    text = list(csv.DictReader(io.StringIO(response.content.decode("utf-8-sig"))))
    assert {r["basis"] for r in text} == {"reexpressed"}
    assert {r["edition"] for r in text} == {"2025"}


async def test_a_drill_down_and_a_series_as_files_hold_what_their_json_holds(api: httpx.AsyncClient) -> None:
    params = {"indicator": "dossiers_received", "period": "2024-01", "edition": "legacy", "limit": "500"}
    answer = (await export(api, "/v1/units/803/children/values", **params)).json()
    response = await export(api, "/v1/units/803/children/values", **params, format="csv")
    assert 'filename="d06-803-huyen-ben-luc-dossiers_received-2024-01.csv"'.replace("_", "-") in \
        response.headers["content-disposition"]
    text = list(csv.DictReader(io.StringIO(response.content.decode("utf-8-sig"))))
    assert [r["unit"] for r in text] == [item["unit"]["code"] for item in answer["items"]]  # the same order
    for row, item in zip(text, answer["items"], strict=True):
        assert same(row["value"] or None, item["value"]) and row["source"] == (item["source"] or "")
        assert row["reporting"] == str(item["reporting"]) and row["expected"] == str(item["expected"])
    series_params = {"indicator": "cccd_coverage", "from": "2024-01", "to": "2024-06", "edition": "legacy"}
    series = (await export(api, "/v1/units/803/series", **series_params)).json()
    book = await export(api, "/v1/units/803/series", **series_params, format="xlsx")
    sheet = load_workbook(io.BytesIO(book.content)).worksheets[0]
    rows = [[c.value for c in row] for row in sheet.iter_rows(min_row=2)]
    assert [r[4] for r in rows] == [p["period"] for p in series["points"]]
    assert [r[5] for r in rows] == [p["value"] for p in series["points"]]
    assert [r[6] for r in rows] == [p["numerator"] for p in series["points"]]


async def test_the_export_is_described_in_openapi_with_examples(api: httpx.AsyncClient) -> None:
    spec = (await api.get("/openapi.json")).json()
    operation = spec["paths"]["/v1/exports"]["get"]
    assert {"text/csv; charset=utf-8", "application/json"} <= set(operation["responses"]["200"]["content"])
    assert {"422", "404"} <= set(operation["responses"])
    names = {p["name"] for p in operation["parameters"]}
    assert {"unit", "from", "to", "indicators", "level", "format", "source", "reexpress", "edition"} <= names
    for path in ("/v1/units/{code}/children/values", "/v1/units/{code}/series"):
        answers = spec["paths"][path]["get"]["responses"]["200"]["content"]
        assert {"application/json", "text/csv; charset=utf-8"} <= set(answers), path


async def asgi_body(api: httpx.AsyncClient, path: str, params: dict[str, str], *, leave_after: int | None = None,
                    ) -> list[bytes]:
    """The body of a GET as the app sends it, piece by piece (httpx's ASGI transport joins the pieces);
    `leave_after`: the client goes away once it has that many pieces."""
    transport = api._transport  # the app behind the test client
    assert isinstance(transport, httpx.ASGITransport)
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
             "path": path, "raw_path": path.encode(), "root_path": "", "query_string": urlencode(params).encode(),
             "headers": [(k.lower().encode(), v.encode()) for k, v in api.headers.items()],
             "server": ("test", 80), "client": ("10.1.2.3", 4567)}
    requested, gone = False, asyncio.Event()
    pieces: list[bytes] = []

    async def receive() -> dict[str, Any]:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            assert message["status"] == 200
        elif message.get("body"):
            pieces.append(message["body"])
            if leave_after is not None and len(pieces) >= leave_after:
                gone.set()

    await transport.app(scope, receive, send)
    return pieces


async def test_a_large_export_streams_every_row(stack: Stack) -> None:
    communes = [r["code"] for r in await stack.fetch(
        "SELECT code FROM units WHERE edition = 'legacy' AND level = 'commune' ORDER BY code LIMIT 10000")]
    months = [f"2023-{m:02d}" for m in range(1, 6)]
    # 50,000 rollup rows: 10,000 communes × 5 months, the value a function of both.
    await stack.execute(
        """INSERT INTO rollups (edition, unit, indicator, period, rep_num, rep_seq, reporting, updated_at)
           SELECT 'legacy', c, 'dossiers_received', m, (right(c, 3)::int * 10 + right(m, 1)::int), 1, 0, now()
           FROM unnest($1::text[]) c CROSS JOIN unnest($2::text[]) m""", communes, months)
    key = await stack.create_key(roles=("read",))
    async with serve(stack) as api:
        api.headers.update(auth(key))
        params = {"unit": "VN", "edition": "legacy", "from": "2023-01", "to": "2023-05",
                  "indicators": "dossiers_received", "level": "commune"}
        pieces = await asgi_body(api, "/v1/exports", params)
        assert len(pieces) > 10  # sent as it was read, not built whole first
        found = rows_of(read_csv(io.BytesIO(b"".join(pieces))).rows)
        assert len(found) == 50_000
        for (unit, _, period), cells in found.items():
            assert number(cells["value"]) == int(unit[-3:]) * 10 + int(period[-1])
        dhis2 = await export(api, **params, format="dhis2")
        assert len(dhis2.json()["dataValues"]) == 50_000

        # A client that goes away mid-file: the export stops and its connection (and snapshot) is given back.
        left = await asgi_body(api, "/v1/exports", params, leave_after=3)
        assert 3 <= len(left) < len(pieces)

        async def given_back() -> bool:
            held = await stack.fetch("SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                                     "AND state LIKE 'idle in transaction%'")
            return not held

        await eventually(given_back, what="the export's connection to be given back")
        assert (await export(api, **params, format="dhis2")).status_code == 200


async def test_a_reported_yes_or_no_is_written_as_submitted_and_a_coverage_as_its_components(stack: Stack) -> None:
    await insert(stack, [("27991", "working_group_formed", "2024-01", 1, 1, None, None, 0),
                         ("27994", "working_group_formed", "2024-01", 0, 1, None, None, 0),
                         ("803", "working_group_formed", "2024-01", None, None, 1, 2, 2)])
    key = await stack.create_key(roles=("read",))
    async with serve(stack) as api:
        api.headers.update(auth(key))
        params = {"unit": "803", "edition": "legacy", "from": "2024-01", "to": "2024-01",
                  "indicators": "working_group_formed"}
        text = (await export(api, **params)).content.decode("utf-8-sig")
        rows = {r["unit"]: r for r in csv.DictReader(io.StringIO(text))}
        assert (rows["27991"]["value"], rows["27991"]["numerator"]) == ("true", "")
        assert rows["27994"]["value"] == "false"
        district = rows["803"]
        assert (district["value"], district["numerator"], district["denominator"]) == ("50", "1", "2")
        assert district["source"] == "computed"
        want = await json_value(api, "803", "working_group_formed", "2024-01")
        assert (want["value"], want["numerator"], want["denominator"]) == (50, 1, 2)
        sheet = load_workbook(io.BytesIO((await export(api, **params, format="xlsx")).content)).worksheets[0]
        values = {row[0].value: row[5] for row in sheet.iter_rows(min_row=2)}
        assert values["27991"].value is True and values["27991"].data_type == "b"
        document = (await export(api, **params, format="dhis2")).json()
        assert sorted((dv["orgUnit"], dv["dataElement"], dv["value"]) for dv in document["dataValues"]) == [
            ("27991", "working_group_formed", "true"), ("27994", "working_group_formed", "false")]
