"""The query service alone, on real PostgreSQL: rollups rows are written with SQL (tests/fixtures/rollups.py),
then read through HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date
from typing import Any

import asyncpg
import httpx
import pytest

from services.query.app import create_app
from services.query.schemas import ChildrenValues, Series, UnitDetail, UnitPage, UnitValues
from shared.db import plain_url
from shared.devstack import free_port
from shared.hierarchy import Hierarchy
from shared.settings import QuerySettings
from tests.fixtures.apps import TODAY, serve
from tests.fixtures.infra import Stack
from tests.fixtures.rollups import LEGACY, insert


@pytest.fixture
async def api(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    await insert(stack, LEGACY)
    key = await stack.create_key(roles=("read",))
    async with serve(stack) as client:
        client.headers["Authorization"] = f"Bearer {key}"
        yield client


def by_indicator(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["indicator"]: v for v in body["values"]}


async def values(api: httpx.AsyncClient, code: str, **params: str) -> dict[str, Any]:
    response = await api.get(f"/v1/units/{code}/values", params=params)
    assert response.status_code == 200, response.text
    UnitValues.model_validate(response.json())
    return response.json()  # type: ignore[no-any-return]


async def test_values_at_every_level_with_reported_and_computed_side_by_side(api: httpx.AsyncClient) -> None:
    commune = by_indicator(await values(api, "27991", period="2024-01", edition="legacy"))
    assert commune["dossiers_received"]["value"] == 100
    assert commune["dossiers_received"]["expected"] == 0

    body = await values(api, "803", period="2024-01", indicator="dossiers_received")
    assert body["edition"] == "legacy"  # in force at the end of January 2024
    assert body["partial"] is False
    assert body["unit"] == {"edition": "legacy", "code": "803", "name": "Huyện Bến Lức", "kind": "Huyện",
                            "level": "district", "parent": "80", "children": 14}
    (v,) = body["values"]
    assert v["value"] == 140 and v["source"] == "reported"
    assert v["reported"] == {"value": 140, "numerator": None, "denominator": None}
    assert v["computed"] == {"value": 130, "numerator": None, "denominator": None}
    assert (v["reporting"], v["expected"]) == (2, 14)
    assert v["updated_at"].startswith("2025-01-15T08:00:00")

    province = by_indicator(await values(api, "80", period="2024-01"))
    assert province["dossiers_received"]["value"] == 140
    assert province["dossiers_received"]["source"] == "computed"
    assert province["directives_issued"]["value"] == 3
    assert province["directives_issued"]["expected"] is None  # own-level: never summed
    assert province["cccd_issued"]["value"] is None and province["cccd_issued"]["reporting"] == 0


async def test_the_nation_is_summed_from_its_provinces_at_read_time(api: httpx.AsyncClient) -> None:
    nation = by_indicator(await values(api, "VN", period="2024-01", edition="legacy"))
    d = nation["dossiers_received"]
    assert d["value"] == 700  # 80: 140 + 93: 60 (its own report wins over 20) + 01: 500
    assert d["source"] == "computed" and d["reported"] is None
    assert (d["reporting"], d["expected"]) == (3, 63)
    assert nation["directives_issued"]["value"] is None  # own-level figures stay where reported
    assert nation["directives_issued"]["reporting"] is None

    june = by_indicator(await values(api, "VN", period="2024-06", edition="legacy"))["cccd_issued"]
    assert june["value"] == 1_000_000 and june["source"] == "reported"  # someone reported at VN itself
    assert june["computed"]["value"] == 500_000 and june["reporting"] == 1


async def test_a_half_year_is_derived_from_its_months(api: httpx.AsyncClient) -> None:
    d = by_indicator(await values(api, "803", period="2024-H1"))["dossiers_received"]
    assert d["value"] == 190 and d["source"] == "mixed"  # Jan reported 140 + Feb computed 50
    assert d["reported"]["value"] == 140 and d["computed"]["value"] == 180
    assert d["reporting"] == 1  # that of February, the latest month with a value

    ratio = by_indicator(await values(api, "803", period="2024-H1"))["cccd_coverage"]
    assert (ratio["numerator"], ratio["denominator"], ratio["value"]) == (135, 150, 90.0)  # June, not mean

    nation = by_indicator(await values(api, "VN", period="2024-H1"))
    assert nation["dossiers_received"]["value"] == 750
    assert nation["cccd_issued"]["value"] == 1_000_000


async def test_a_period_not_ended_is_partial(stack: Stack) -> None:
    await insert(stack, LEGACY)
    async with serve(stack, today=date(2024, 6, 30), anonymous_read=True) as client:
        body = (await client.get("/v1/units/803/values", params={"period": "2024-H1"})).json()
        assert body["partial"] is True
        points = (await client.get("/v1/units/803/series", params={
            "indicator": "dossiers_received", "from": "2024-05", "to": "2024-06", "edition": "legacy",
        })).json()["points"]
        assert [p["partial"] for p in points] == [False, True]


async def test_drill_down_ranks_children_and_pages_with_a_cursor(api: httpx.AsyncClient) -> None:
    params = {"indicator": "dossiers_received", "period": "2024-01", "limit": "1"}
    first = await api.get("/v1/units/803/children/values", params=params)
    assert first.status_code == 200, first.text
    page = ChildrenValues.model_validate(first.json())
    assert (page.total, page.reporting) == (14, 2)
    assert [(i.unit.code, i.value, i.rank) for i in page.items] == [("27991", 100, 1)]
    second = (await api.get("/v1/units/803/children/values",
                            params={**params, "limit": "5", "cursor": page.next_cursor or ""})).json()
    assert [(i["unit"]["code"], i["value"], i["rank"]) for i in second["items"]] == [
        ("27994", 30, 2), ("27997", None, 3), ("28000", None, 4), ("28003", None, 5), ("28009", None, 6)]

    ascending = (await api.get("/v1/units/803/children/values", params={**params, "sort": "value",
                                                                        "limit": "3"})).json()
    assert [i["value"] for i in ascending["items"]] == [30, 100, None]  # no value: last in both orders

    half = (await api.get("/v1/units/803/children/values", params={**params, "period": "2024-H1"})).json()
    assert half["items"][0]["value"] == 150

    nation = (await api.get("/v1/units/VN/children/values",
                            params={"indicator": "dossiers_received", "period": "2024-01", "edition": "legacy"}))
    body = nation.json()
    assert body["total"] == 63
    assert [(i["unit"]["code"], i["value"]) for i in body["items"][:4]] == [
        ("01", 500), ("80", 140), ("93", 60), ("02", None)]

    bad = await api.get("/v1/units/803/children/values", params={**params, "cursor": "bm90LWEtY3Vyc29y"})
    assert bad.status_code == 422 and bad.json()["errors"][0]["loc"] == "cursor"


async def test_series_lists_native_periods(api: httpx.AsyncClient) -> None:
    response = await api.get("/v1/units/803/series", params={
        "indicator": "dossiers_received", "from": "2024-01", "to": "2024-Q1"})
    assert response.status_code == 200, response.text
    series = Series.model_validate(response.json())
    assert series.edition == "legacy" and series.from_ == "2024-01" and series.to == "2024-Q1"
    assert [(p.period, p.value, p.source, p.reporting, p.expected) for p in series.points] == [
        ("2024-01", 140, "reported", 2, 14), ("2024-02", 50, "computed", 1, 14), ("2024-03", None, None, 0, 14)]

    nation = (await api.get("/v1/units/VN/series", params={
        "indicator": "dossiers_received", "from": "2024-01", "to": "2024-02", "edition": "legacy"})).json()
    assert [p["value"] for p in nation["points"]] == [700, 50]

    too_long = await api.get("/v1/units/803/series", params={
        "indicator": "dossiers_received", "from": "2000", "to": "2024"})
    assert too_long.status_code == 422 and too_long.json()["errors"][0]["loc"] == "from"


async def test_units_search_ignores_diacritics(api: httpx.AsyncClient) -> None:
    legacy = UnitPage.model_validate((await api.get("/v1/units", params={"edition": "legacy", "q": "cua lo"})).json())
    assert legacy.items == []  # Cửa Lò was already part of Vinh in the legacy edition
    now = (await api.get("/v1/units", params={"q": "Cua  LO"})).json()
    assert [(u["code"], u["name"]) for u in now["items"]] == [("16732", "Phường Cửa Lò")]
    ben_luc = (await api.get("/v1/units", params={"edition": "legacy", "q": "ben luc"})).json()
    assert [(u["code"], u["name"], u["level"]) for u in ben_luc["items"]] == [
        ("803", "Huyện Bến Lức", "district"), ("27991", "Thị trấn Bến Lức", "commune")]


async def test_units_list_filters_and_pages(api: httpx.AsyncClient) -> None:
    provinces = (await api.get("/v1/units", params={"edition": "legacy", "level": "province", "limit": "60"})).json()
    assert len(provinces["items"]) == 60 and provinces["items"][0]["code"] == "01"
    rest = (await api.get("/v1/units", params={"edition": "legacy", "level": "province", "limit": "60",
                                               "cursor": provinces["next_cursor"]})).json()
    assert [u["code"] for u in rest["items"]] == ["94", "95", "96"] and rest["next_cursor"] is None
    children = (await api.get("/v1/units", params={"edition": "legacy", "parent": "803"})).json()
    assert len(children["items"]) == 14


async def test_one_unit_with_its_ancestors(api: httpx.AsyncClient) -> None:
    response = await api.get("/v1/units/27991", params={"edition": "legacy"})
    detail = UnitDetail.model_validate(response.json())
    assert [a.code for a in detail.ancestors] == ["VN", "80", "803"]
    assert detail.ancestors[1].name == "Tỉnh Long An" and detail.children == 0
    assert (await api.get("/v1/units/VN")).json()["children"] == 34  # default edition: 2025
    assert (await api.get("/v1/units/803")).status_code == 404  # no 3-digit units in 2025


async def test_a_scoped_key_sees_its_subtree_only(stack: Stack, hierarchy: Hierarchy) -> None:
    await insert(stack, LEGACY)
    key = await stack.create_key(scope="80", edition="legacy", roles=("read",))
    async with serve(stack) as client:
        client.headers["Authorization"] = f"Bearer {key}"
        assert (await client.get("/v1/units/803/values", params={"period": "2024-01"})).status_code == 200
        hidden = await client.get("/v1/units/936/values", params={"period": "2024-01"})
        missing = await client.get("/v1/units/999/values", params={"period": "2024-01"})
        assert hidden.status_code == missing.status_code == 404
        assert hidden.json()["detail"].replace("936", "X") == missing.json()["detail"].replace("999", "X")
        for path in ("/v1/units/VN", "/v1/units/VN/values", "/v1/units/VN/children/values",
                     "/v1/units/VN/series", "/v1/units/936/series", "/v1/units/93/children/values"):
            response = await client.get(path, params={"edition": "legacy", "period": "2024-01",
                                                      "indicator": "dossiers_received"})
            assert response.status_code == 404, path
        provinces = (await client.get("/v1/units", params={"edition": "legacy", "level": "province"})).json()
        assert [u["code"] for u in provinces["items"]] == ["80"]
        search = (await client.get("/v1/units", params={"edition": "legacy", "q": "long"})).json()
        found = [hierarchy.get("legacy", u["code"]) for u in search["items"]]
        assert found and all(u is not None and hierarchy.in_subtree(u, "80") for u in found)
        assert "936" not in {u["code"] for u in search["items"]}  # Huyện Long Mỹ is in Hậu Giang
        other_edition = (await client.get("/v1/units", params={"q": "long"})).json()
        assert other_edition["items"] == []
        assert (await client.get("/v1/units", params={"edition": "legacy", "parent": "93"})).status_code == 404


async def test_keys_are_required_unless_reads_are_public(stack: Stack) -> None:
    submit_only = await stack.create_key(roles=("submit",))
    async with serve(stack) as client:
        response = await client.get("/v1/indicators")
        assert response.status_code == 401
        assert response.headers["content-type"] == "application/problem+json"
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert response.json()["type"].endswith("/unauthorized")
        bad = await client.get("/v1/indicators", headers={"Authorization": "Bearer d06_000000000000_nope"})
        assert bad.status_code == 401
        no_role = await client.get("/v1/indicators", headers={"Authorization": f"Bearer {submit_only}"})
        assert no_role.status_code == 403
    async with serve(stack, anonymous_read=True) as client:
        catalogue = (await client.get("/v1/indicators")).json()["items"]
        codes = {i["code"] for i in catalogue}
        assert {"cccd_issued", "online_dossier_rate", "working_group_formed"} <= codes
        assert "cmnd_converted" not in codes  # retired
        rate = next(i for i in catalogue if i["code"] == "online_dossier_rate")
        assert (rate["measure"], rate["components"], rate["period_type"]) == ("ratio", "flow", "month")
        assert (await client.get("/v1/units/VN", params={"edition": "legacy"})).status_code == 200
        assert (await client.get("/v1/indicators", headers={"Authorization": "Bearer nope"})).status_code == 401


async def test_etag_and_not_modified(api: httpx.AsyncClient) -> None:
    first = await api.get("/v1/units/803/values", params={"period": "2024-01"})
    etag = first.headers["etag"]
    assert first.headers["cache-control"] == "private, max-age=5"
    again = await api.get("/v1/units/803/values", params={"period": "2024-01"},
                          headers={"If-None-Match": f'W/"other", {etag}'})
    assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == etag
    other = await api.get("/v1/units/803/values", params={"period": "2024-02"}, headers={"If-None-Match": etag})
    assert other.status_code == 200 and other.headers["etag"] != etag
    metrics = (await api.get("/metrics")).text
    assert 'd06_query_not_modified_total{endpoint="values"} 1.0' in metrics
    assert 'd06_query_rows_read_total{endpoint="values"}' in metrics


async def test_errors_are_problem_json_with_the_bad_field(api: httpx.AsyncClient) -> None:
    for params in ({"period": "2024-13"}, {"period": "H1-2024"},
                   {"period": "2024-07-15", "indicator": "dossiers_received"}):
        response = await api.get("/v1/units/803/values", params=params)
        assert response.status_code == 422, params
        assert response.headers["content-type"] == "application/problem+json"
        body = response.json()
        assert body["type"].endswith("/validation-error")
        assert [e["loc"] for e in body["errors"]] == ["period"]
    missing = await api.get("/v1/units/803/values")
    assert missing.status_code == 422 and missing.json()["errors"][0]["loc"] == "period"
    unknown = await api.get("/v1/units/803/values", params={"period": "2024-01", "indicator": "nope"})
    assert unknown.status_code == 422 and unknown.json()["errors"][0]["loc"] == "indicator"
    edition = await api.get("/v1/units/803", params={"edition": "1999"})
    assert edition.status_code == 422 and edition.json()["errors"][0]["loc"] == "edition"
    day = await values(api, "803", period="2024-07-15")
    assert day["values"] == []  # no indicator is daily: none can be given for one day


async def test_openapi_documents_the_routes_and_their_problems(api: httpx.AsyncClient) -> None:
    schema = (await api.get("/openapi.json")).json()
    assert "ProblemDetails" in schema["components"]["schemas"]
    route = schema["paths"]["/v1/units/{code}/values"]["get"]
    assert {"401", "404", "422"} <= set(route["responses"])
    assert route["summary"]
    shared = ("value", "numerator", "denominator", "source", "reported", "computed", "reporting", "expected",
              "updated_at")
    for model in ("Value", "ChildValue"):  # a unit's values and a child's: the same fields, the same words
        properties = schema["components"]["schemas"][model]["properties"]
        assert all(properties[name].get("description") for name in shared), model
    value, child = (schema["components"]["schemas"][m]["properties"] for m in ("Value", "ChildValue"))
    assert {n: value[n]["description"] for n in shared} == {n: child[n]["description"] for n in shared}


async def test_starts_before_postgres_and_says_it_is_not_ready() -> None:
    closed = f"postgresql://postgres@127.0.0.1:{free_port()}/nowhere"
    app = create_app(QuerySettings(database_url=closed, anonymous_read=True), clock=lambda: TODAY)
    async with app.router.lifespan_context(app):
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")
        async with client:
            assert (await client.get("/healthz")).status_code == 200
            ready = await client.get("/readyz")
            assert ready.status_code == 503
            assert set(ready.json()["failing"]) == {"database", "hierarchy"}
            unavailable = await client.get("/v1/units/VN")
            assert unavailable.status_code == 503
            assert unavailable.json()["type"].endswith("/unavailable")


async def test_leaf_drill_down_and_bounds(api: httpx.AsyncClient) -> None:
    leaf = (await api.get("/v1/units/27991/children/values", params={
        "indicator": "cccd_issued", "period": "2024-06", "edition": "legacy"})).json()
    assert (leaf["total"], leaf["items"], leaf["next_cursor"]) == (0, [], None)
    zero = await api.get("/v1/units/803/children/values", params={
        "indicator": "cccd_issued", "period": "2024-06", "limit": "0"})
    assert zero.status_code == 422 and zero.json()["errors"][0]["loc"] == "limit"
    by_name = (await api.get("/v1/units/803/children/values", params={
        "indicator": "cccd_coverage", "period": "2024", "sort": "name", "limit": "2"})).json()
    assert [i["unit"]["name"] for i in by_name["items"]] == ["Thị trấn Bến Lức", "Xã An Thạnh"]
    assert by_name["items"][0]["value"] == 90.0 and by_name["items"][0]["numerator"] == 90


async def test_the_hierarchy_refresh_picks_up_new_units(stack: Stack) -> None:
    async with serve(stack, anonymous_read=True) as client:
        keeper = client._transport.app.state.query.keeper  # type: ignore[attr-defined]
        loaded = await keeper.load()
        assert await keeper.load() is loaded  # unchanged: not rebuilt
        assert (await client.get("/v1/units/99999", params={"edition": "legacy"})).status_code == 404
        conn = await asyncpg.connect(plain_url(stack.database_url))
        try:
            await conn.execute("""INSERT INTO units (edition, code, parent_code, level, depth, kind, name,
                                                     name_ascii, province_code, ancestors)
                                  VALUES ('legacy', '99999', '803', 'commune', 3, 'Xã', 'Xã Thử', 'xa thu', '80',
                                          '{VN,80,803}')""")
        finally:
            await conn.close()
        assert await keeper.load() is not loaded
        assert (await client.get("/v1/units/99999", params={"edition": "legacy"})).json()["name"] == "Xã Thử"
        metrics = (await client.get("/metrics")).text
        # Loaded at start-up and after the insert; the two loads between found the units unchanged.
        assert 'd06_query_hierarchy_refreshes_total{outcome="loaded"} 2.0' in metrics
        assert 'd06_query_hierarchy_refreshes_total{outcome="unchanged"} 2.0' in metrics
        assert f"d06_query_hierarchy_units {float(len(keeper.current))}" in metrics
