"""POST /v1/imports on the real PostgreSQL (DESIGN §9): bad files refused naming row and column with
nothing stored, scope, atomicity, dry runs, re-uploads, Vietnamese headers and names, DHIS2, and a large
file imported in the background."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from services.ingest import import_service, imports
from services.ingest.app import create_app
from shared.hierarchy import Hierarchy
from tests.fixtures.apps import auth, no_relay, running
from tests.fixtures.files import BAD, xlsx
from tests.fixtures.infra import Stack
from tests.fixtures.waiting import eventually

CSV = "text/csv"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
UPLOAD = {"csv": ("", CSV), "xlsx": ("", XLSX), "dhis2-json": ("?format=dhis2", "application/json"),
          "dhis2-csv": ("?format=dhis2", CSV)}


def csv(*lines: str) -> bytes:
    return ("\n".join(lines) + "\n").encode()


async def upload(client: httpx.AsyncClient, key: str, data: bytes, kind: str = "csv", query: str = "",
                 ) -> httpx.Response:
    prefix, content_type = UPLOAD[kind]
    separator = "&" if prefix else "?"
    url = "/v1/imports" + prefix + (separator + query if query else "")
    return await client.post(url, content=data, headers={**auth(key), "Content-Type": content_type})


async def stored(stack: Stack) -> list[dict[str, Any]]:
    return await stack.fetch("SELECT unit, indicator, period, num, den, comment FROM outbox ORDER BY seq")


def counts(body: dict[str, Any]) -> tuple[int, ...]:
    return tuple(body[k] for k in ("rows", "accepted", "created", "updated", "unchanged", "retracted", "rejected"))


async def test_every_bad_file_is_refused_naming_row_and_column_and_nothing_is_stored(stack: Stack) -> None:
    """The unit tests' table of bad files (tests/fixtures/files.py), sent to the API."""
    key = await stack.create_key()
    wrong = []
    async with running(create_app(no_relay(stack))) as client:
        for name, kind, data, row, column, fragment in BAD:
            response = await upload(client, key, data, kind)
            problem = response.json()
            found = any(e["row"] == row and e["column"] == column and fragment in e["message"]
                        for e in problem.get("errors") or [])
            if response.status_code != 422 or response.headers["content-type"] != "application/problem+json" \
                    or not found:
                wrong.append((name, response.status_code, problem))
    assert not wrong, wrong
    assert await stored(stack) == []
    assert await stack.fetch("SELECT id FROM imports WHERE status <> 'failed'") == []


async def test_a_good_file_is_stored_as_events_and_a_bad_row_refuses_an_atomic_file(stack: Stack) -> None:
    key = await stack.create_key()
    good = csv("unit,indicator,period,value,numerator,denominator,comment",
               "803,cccd_issued,2024-07,87700,,,tháng 7",
               "803,cccd_coverage,Q3/2024,,87700,90412,",
               "803,cccd_coverage,T7/2024,,87700,90412,")
    bad = good + b"803,cccd_issued,2024-07,-5,,,\n"
    async with running(create_app(no_relay(stack))) as client:
        refused = await upload(client, key, bad)
        assert refused.status_code == 422, refused.text
        errors = refused.json()["errors"]
        assert [(e["row"], e["column"], e["value"]) for e in errors] == [(3, "C", "Q3/2024"), (5, "D", "-5")]
        assert "cccd_coverage is reported monthly" in errors[0]["message"]
        assert await stored(stack) == []

        partial = await upload(client, key, bad, query="atomic=false")
        assert partial.status_code == 201, partial.text
        body = partial.json()
        assert counts(body) == (4, 2, 2, 0, 0, 0, 2) and body["status"] == "done"
        assert partial.headers["location"] == f"/v1/imports/{body['id']}"
        assert [(e["row"], e["column"]) for e in body["errors"]] == [(3, "C"), (5, "D")]
        assert (await client.get(partial.headers["location"], headers=auth(key))).json() == body
    rows = await stored(stack)
    assert [(r["indicator"], r["num"], r["den"], r["comment"]) for r in rows] == [
        ("cccd_issued", Decimal(87700), None, "tháng 7"), ("cccd_coverage", Decimal(87700), Decimal(90412), None)]


async def test_a_row_outside_the_keys_scope_is_403_naming_the_row(stack: Stack) -> None:
    key = await stack.create_key(scope="80", edition="legacy")  # Long An
    data = csv("unit,indicator,period,value", "803,cccd_issued,2024-07,1", "00001,cccd_issued,2024-07,2")
    async with running(create_app(no_relay(stack))) as client:
        response = await upload(client, key, data)
    assert response.status_code == 403, response.text
    assert response.json()["detail"].startswith("row 3: unit 00001 (legacy) is outside the key's scope 80")
    assert await stored(stack) == []


async def test_created_updated_unchanged_retracted_and_a_reupload(stack: Stack) -> None:
    key = await stack.create_key()
    first = csv("unit,indicator,period,value", "803,cccd_issued,2024-07,100", "804,cccd_issued,2024-07,200",
                "805,cccd_issued,2024-07,300")
    second = csv("unit,indicator,period,value", "803,cccd_issued,2024-07,100", "804,cccd_issued,2024-07,201",
                 "805,cccd_issued,2024-07,", "806,cccd_issued,2024-07,", "806,cccd_issued,2024-07,7",
                 "806,cccd_issued,2024-07,7")
    async with running(create_app(no_relay(stack))) as client:
        one = await upload(client, key, first)
        assert one.status_code == 201 and counts(one.json()) == (3, 3, 3, 0, 0, 0, 0)
        again = await upload(client, key, first)
        assert again.status_code == 200 and again.json() == one.json()

        dry = await upload(client, key, second, query="dryRun=true")
        assert dry.status_code == 200, dry.text
        assert counts(dry.json()) == (6, 6, 1, 1, 3, 1, 0) and dry.json()["id"] is None
        assert dry.json()["results"] == [{"row": 2, "result": "unchanged"}, {"row": 3, "result": "updated"},
                                         {"row": 4, "result": "retracted"}, {"row": 5, "result": "unchanged"},
                                         {"row": 6, "result": "created"}, {"row": 7, "result": "unchanged"}]
        assert len(await stored(stack)) == 3

        two = await upload(client, key, second)
        assert two.status_code == 201 and counts(two.json()) == counts(dry.json())
    rows = await stored(stack)
    assert [(r["unit"], r["num"]) for r in rows[3:]] == [("804", Decimal(201)), ("805", None), ("806", Decimal(7))]
    assert len(await stack.fetch("SELECT id FROM imports")) == 2  # the dry run is not remembered


async def test_a_row_is_compared_with_the_rows_of_earlier_chunks(stack: Stack,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    # Chunks of two rows: each chunk is read while the one before is stored, and must still see it.
    monkeypatch.setattr(import_service, "CHUNK_ROWS", 2)
    key = await stack.create_key()
    data = csv("unit,indicator,period,value", "803,cccd_issued,2024-07,100", "804,cccd_issued,2024-07,200",
               "803,cccd_issued,2024-07,100", "804,cccd_issued,2024-07,201", "805,cccd_issued,2024-07,",
               "803,cccd_issued,2024-07,")
    async with running(create_app(no_relay(stack))) as client:
        dry = await upload(client, key, data, query="dryRun=true")
        assert dry.status_code == 200 and counts(dry.json()) == (6, 6, 2, 1, 2, 1, 0), dry.text
        assert [r["result"] for r in dry.json()["results"]] == ["created", "created", "unchanged", "updated",
                                                                 "unchanged", "retracted"]
        assert await stored(stack) == []
        done = await upload(client, key, data, query="atomic=false")
        assert done.status_code == 201 and counts(done.json()) == counts(dry.json()), done.text
    assert [(r["unit"], r["num"]) for r in await stored(stack)] == [
        ("803", Decimal(100)), ("804", Decimal(200)), ("804", Decimal(201)), ("803", None)]


async def test_vietnamese_headers_people_periods_and_unit_names(stack: Stack, hierarchy: Hierarchy) -> None:
    key = await stack.create_key(scope="01", edition="legacy")  # Hà Nội
    names: dict[str, list[str]] = {}
    for unit in hierarchy:
        if unit.edition == "legacy" and unit.province_code == "01":
            names.setdefault(unit.name, []).append(unit.code)
    twice = next(name for name, codes in sorted(names.items()) if len(codes) > 1)
    data = csv("Đơn vị,Chỉ tiêu,Kỳ,Giá trị,Ghi chú",
               "Phường Phúc Xá,cccd_issued,T7/2024,1200,tên",
               "00004,cccd_issued,tháng 7 năm 2024,1300,mã",
               f"{twice},cccd_issued,07/2024,1,trùng tên")
    async with running(create_app(no_relay(stack))) as client:
        refused = await upload(client, key, data)
        assert refused.status_code == 422, refused.text
        [error] = refused.json()["errors"]
        assert (error["row"], error["column"], error["value"]) == (4, "A", twice)
        assert all(code in error["message"] for code in names[twice])
        accepted = await upload(client, key, data.rsplit(b"\n", 2)[0] + b"\n")
        assert accepted.status_code == 201, accepted.text
    rows = await stored(stack)
    assert [(r["unit"], r["period"], r["num"]) for r in rows] == [("00001", "2024-07", Decimal(1200)),
                                                                  ("00004", "2024-07", Decimal(1300))]


async def test_an_excel_file_and_a_dhis2_data_value_set(stack: Stack) -> None:
    key = await stack.create_key()
    workbook = xlsx([["Mã đơn vị", "Mã chỉ tiêu", "Kỳ", "Giá trị"], ["803", "cccd_issued", "2024-07", 87700]])
    # As DHIS2 documents a data value set (docs.dhis2.org, "Data values"), a ratio as two data elements.
    dataset = {"dataSet": "pBOMPrpg1QX", "completeDate": "2024-08-05", "period": "202407", "orgUnit": "803",
               "dataValues": [
                   {"dataElement": "cccd_coverage.numerator", "value": "87700", "comment": "DHIS2"},
                   {"dataElement": "cccd_coverage.denominator", "value": "90412"},
                   {"dataElement": "cccd_issued", "orgUnit": "804", "value": "5000"},
                   {"dataElement": "cccd_issued", "period": "2024W3", "value": "1"},
               ]}
    async with running(create_app(no_relay(stack))) as client:
        excel = await upload(client, key, workbook, "xlsx")
        assert excel.status_code == 201 and counts(excel.json()) == (1, 1, 1, 0, 0, 0, 0), excel.text
        dhis2 = await upload(client, key, orjson.dumps(dataset), "dhis2-json", "atomic=false")
        assert dhis2.status_code == 201, dhis2.text
        body = dhis2.json()
        assert counts(body) == (3, 2, 2, 0, 0, 0, 1)
        assert [(e["row"], e["column"]) for e in body["errors"]] == [(4, "period")]
        assert body["dhis2"]["status"] == "WARNING"
        assert body["dhis2"]["importCount"] == {"imported": 2, "updated": 0, "ignored": 1, "deleted": 0}
    rows = await stored(stack)
    assert [(r["unit"], r["indicator"], r["num"], r["den"], r["comment"]) for r in rows] == [
        ("803", "cccd_issued", Decimal(87700), None, None),
        ("803", "cccd_coverage", Decimal(87700), Decimal(90412), "DHIS2"),
        ("804", "cccd_issued", Decimal(5000), None, None)]


async def test_limits_of_size_and_rows_are_413_naming_them(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    key = await stack.create_key()
    monkeypatch.setattr(imports, "MAX_ROWS", 2)
    data = csv("unit,indicator,period,value", *["803,cccd_issued,2024-07,1"] * 3)
    async with running(create_app(no_relay(stack, max_import_bytes=60, max_body_bytes=100_000))) as client:
        too_big = await upload(client, key, data)
        assert too_big.status_code == 413 and "limit is 60" in too_big.json()["detail"]
    async with running(create_app(no_relay(stack))) as client:
        too_long = await upload(client, key, data)
        assert too_long.status_code == 413 and "more than 2 rows" in too_long.json()["detail"]
        batch = {"events": [{"unit": "803", "indicator": "cccd_issued", "period": "2024-07", "value": 1}]}
        events = await client.post("/v1/events", json=batch, headers=auth(key))
        assert events.status_code == 202  # the events route keeps its own limit
    assert len(await stored(stack)) == 1


async def test_an_atomic_import_is_bounded_as_it_holds_back_publication(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Events accepted during an atomic import are published only once it commits (services/ingest/outbox.py),
    so atomic imports have a row limit of their own; a dry run stores nothing and holds nothing back."""
    key = await stack.create_key()
    monkeypatch.setattr(imports, "MAX_ATOMIC_ROWS", 2)
    data = csv("unit,indicator,period,value", *[f"{unit},cccd_issued,2024-07,1" for unit in ("803", "804", "805")])
    async with running(create_app(no_relay(stack))) as client:
        refused = await upload(client, key, data, query="atomic=true")
        assert refused.status_code == 413 and "limit of an atomic import" in refused.json()["detail"]
        assert "atomic=false" in refused.json()["detail"]
        assert (await upload(client, key, data, query="atomic=true&dryRun=true")).status_code == 200
        assert len(await stored(stack)) == 0
        assert (await upload(client, key, data, query="atomic=false")).status_code == 201
    assert len(await stored(stack)) == 3


async def test_a_large_file_is_imported_in_the_background(stack: Stack, hierarchy: Hierarchy) -> None:
    key = await stack.create_key()
    communes = sorted(u.code for u in hierarchy if u.edition == "legacy" and u.level == "commune")[:6001]
    data = csv("unit,indicator,period,value", *[f"{code},cccd_issued,2024-07,{n}" for n, code in enumerate(communes)],
               "00001,cccd_issued,2024-07,-1")
    async with running(create_app(no_relay(stack))) as client:
        response = await upload(client, key, data)
        assert response.status_code == 202, response.text
        where = response.headers["location"]
        assert response.json()["status"] == "running" and response.json()["rows"] == 6002

        async def finished() -> bool:
            return (await client.get(where, headers=auth(key))).json()["status"] != "running"

        await eventually(finished, what="the import to finish", within=120)
        body = (await client.get(where, headers=auth(key))).json()
        other = await stack.create_key(roles=("submit",))
        assert (await client.get(where, headers=auth(other))).status_code == 404
    # more than 5,000 rows: not atomic unless asked, so the bad last row is listed and the rest stored
    assert counts(body) == (6002, 6001, 6001, 0, 0, 0, 1) and body["status"] == "done"
    assert [(e["row"], e["column"]) for e in body["errors"]] == [(6003, "D")]
    assert len(await stored(stack)) == 6001


async def test_an_import_whose_process_died_no_longer_answers_for_its_file(stack: Stack) -> None:
    key = await stack.create_key()
    data = csv("unit,indicator,period,value", "803,cccd_issued,2024-07,100")
    async with running(create_app(no_relay(stack))) as client:
        first = (await upload(client, key, data)).json()
        # as a SIGKILLed ingest leaves it: running, its progress silent for an hour
        await stack.execute("UPDATE imports SET status = 'running', updated_at = now() - interval '1 hour'")
        again = await upload(client, key, data)
        assert again.status_code == 201 and again.json()["id"] != first["id"]
        assert counts(again.json()) == (1, 1, 0, 0, 1, 0, 0)  # what the dead import stored stands
        dead = (await client.get(f"/v1/imports/{first['id']}", headers=auth(key))).json()
    assert dead["status"] == "failed" and "upload the file again" in dead["errors"][-1]["message"]


def readme_sample(language: str) -> bytes:
    """The README's sample file of that language, in its "Files in" section, as a newcomer would copy it."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme[readme.index("### Files in"):]
    start = section.index(f"```{language}\n") + len(language) + 4
    return section[start:section.index("```", start)].encode()


async def test_the_readmes_spreadsheet_and_dhis2_samples_import_as_it_says(stack: Stack) -> None:
    key = await stack.create_key()
    async with running(create_app(no_relay(stack))) as client:
        sheet = await upload(client, key, readme_sample("csv"))
        assert sheet.status_code == 201 and counts(sheet.json()) == (2, 2, 2, 0, 0, 0, 0), sheet.text
        dhis2 = await upload(client, key, readme_sample("json"), "dhis2-json")
        # Its 00004 July figure is the spreadsheet's, so it is unchanged; the ratio and 00007 are new.
        assert dhis2.status_code == 201 and counts(dhis2.json()) == (3, 3, 2, 0, 1, 0, 0), dhis2.text
