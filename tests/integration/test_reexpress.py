"""Legacy figures read on the 2025 units (DESIGN §7), through the real path: events produced to the topic, the
real aggregator in-process writing rollups, the query service in-process reading them over HTTP.

Tây Ninh (2025, code 80) is Long An (legacy 80) + Tây Ninh (legacy 72). The expectations are computed here from
the package's own converter_2025.json and dataset.db, read in a few lines of this file (not shared/crosswalk.py,
not d06's tables): A, a Long An commune that went whole into the 2025 commune X; D, a Long An commune divided
in two (X and Y, half each); T, a commune of legacy Tây Ninh that went whole into Z. After the reform, X and Z
report natively.
"""

from __future__ import annotations

import json
import sqlite3
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from fractions import Fraction
from importlib import resources
from typing import Any

import httpx
import pytest

from shared.events import AcceptedEvent
from tests.fixtures.aggregator import aggregating, caught_up, event, produce
from tests.fixtures.apps import serve
from tests.fixtures.infra import Stack
from tests.fixtures.scope import statuses, unit_routes
from tests.fixtures.waiting import eventually

GROUP = "reexpress"


@dataclass(frozen=True)
class Crosswalk:
    weights: dict[str, dict[str, Fraction]]  # 2025 commune of Tây Ninh -> {legacy commune: weight}
    names: dict[str, str]  # legacy commune -> name
    province: dict[str, str]  # legacy commune -> its legacy province


def read_crosswalk() -> Crosswalk:
    data = resources.files("vietnamadminunits") / "data"
    converter = json.loads((data / "converter_2025.json").read_text(encoding="utf-8"))
    with resources.as_file(data / "dataset.db") as path, sqlite3.connect(path) as db:
        legacy = {f"{p}_{d}_{w}": (code, name, province) for p, d, w, code, name, province in db.execute(
            "SELECT provinceKey, districtKey, wardKey, wardCode, ward, provinceCode FROM admin_units_legacy "
            "WHERE provinceCode IN ('72', '80')")}
        new = dict(db.execute("SELECT wardKey, wardCode FROM admin_units WHERE provinceCode = '80'").fetchall())
    weights: dict[str, dict[str, Fraction]] = defaultdict(dict)
    for ward, sources in converter["DICT_PROVINCE_WARD_NO_DIVIDED"]["tinhtayninh"].items():
        for source in sources:
            weights[new[ward]][legacy[source][0]] = Fraction(1)
    for source, pieces in converter["DICT_PROVINCE_WARD_DIVIDED"]["tinhtayninh"].items():
        for piece in pieces:
            weights[new[piece["newWardKey"]]][legacy[source][0]] = Fraction(1, len(pieces))
    return Crosswalk(dict(weights), {code: name for code, name, _ in legacy.values()},
                     {code: province for code, _, province in legacy.values()})


CW = read_crosswalk()
SOURCES: dict[str, list[tuple[str, str, Fraction]]] = defaultdict(list)  # legacy commune -> [(2025, weight)]
for _target, _sources in CW.weights.items():
    for _legacy, _w in _sources.items():
        SOURCES[_legacy].append((_target, _target, _w))
# D: the first Long An commune divided in exactly two; X, Y its pieces; A a whole source of X; T one of Tây Ninh.
D = next(c for c, ts in sorted(SOURCES.items()) if len(ts) == 2 and c >= "27")  # Long An: 27xxx-28xxx
X, Y = sorted(t for t, _, _ in SOURCES[D])
A = next(c for c, w in sorted(CW.weights[X].items()) if w == 1)
T = next(c for c, ts in sorted(SOURCES.items())
         if len(ts) == 1 and CW.province[c] == "72" and ts[0][0] not in (X, Y))
Z = SOURCES[T][0][0]
LEGACY_PROVINCE = {c: CW.province[c] for c in (A, D, T)}

# (unit, indicator, period) -> (num, den): what the legacy communes report.
LEGACY: dict[tuple[str, str, str], tuple[int, int | None]] = {
    (A, "cccd_issued", "2024-01"): (1000, None), (D, "cccd_issued", "2024-01"): (600, None),
    (T, "cccd_issued", "2024-01"): (2000, None), (T, "cccd_issued", "2025-05"): (2500, None),
    (A, "cccd_issued", "2025-06"): (1500, None), (D, "cccd_issued", "2025-06"): (801, None),
    (A, "dossiers_received", "2025-03"): (30, None), (D, "dossiers_received", "2025-03"): (11, None),
    (T, "dossiers_received", "2025-04"): (7, None),
    (A, "online_dossier_rate", "2024-07"): (9, 10), (D, "online_dossier_rate", "2024-07"): (3, 5),
    (A, "working_group_formed", "2024-07"): (1, 1), (D, "working_group_formed", "2024-07"): (0, 1),
    (T, "working_group_formed", "2024-07"): (1, 1),
}
NATIVE_2025 = {(X, "cccd_issued", "2025-08"): 5000, (X, "dossiers_received", "2025-08"): 40,
               (Z, "dossiers_received", "2025-09"): 3}


def expected(target: str, indicator: str, period: str) -> tuple[Fraction | None, Fraction | None, bool, int]:
    """(Σ w·num, Σ w·den, exact, sources with a value) of a 2025 commune; booleans unweighted."""
    num = den = None
    exact, reporting = True, 0
    for legacy, w in CW.weights[target].items():
        if (legacy, indicator, period) in LEGACY:
            n, d = LEGACY[(legacy, indicator, period)]
            weight = Fraction(1) if indicator == "working_group_formed" else w
            num = (num or 0) + weight * n
            den = None if d is None else (den or 0) + weight * d
            exact, reporting = exact and w == 1, reporting + 1
    return num, den, exact, reporting


def province_sum(indicator: str, period: str) -> tuple[int, int | None]:
    """Tây Ninh (2025) from its legacy provinces: every legacy report, each whole (a divided commune counts once)."""
    found = [v for (u, i, p), v in LEGACY.items() if i == indicator and p == period]
    return sum(n for n, _ in found), (None if found[0][1] is None else sum(d or 0 for _, d in found))


def number(f: Fraction) -> int | float:
    return int(f) if f.denominator == 1 else float(f)


@pytest.fixture
async def api(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    events: list[AcceptedEvent] = []
    for (unit, indicator, period), (num, den) in LEGACY.items():
        events.append(event(len(events) + 1, unit, num, den, indicator=indicator, period=period,
                            province=LEGACY_PROVINCE[unit]))
    events.append(event(len(events) + 1, "80", 3, indicator="directives_issued", period="2024-07"))  # own-level
    for (unit, indicator, period), num in NATIVE_2025.items():
        events.append(event(len(events) + 1, unit, num, indicator=indicator, period=period, edition="2025"))
    async with aggregating(stack, GROUP):
        await caught_up(stack, GROUP, await produce(stack, list(events)))
        key = await stack.create_key(scope="80", edition="2025", roles=("read",))
        async with serve(stack) as client:
            client.headers["Authorization"] = f"Bearer {key}"
            yield client


async def get(api: httpx.AsyncClient, path: str, **params: str) -> dict[str, Any]:
    response = await api.get(path, params=params)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


async def one(api: httpx.AsyncClient, code: str, indicator: str, period: str, **params: str) -> dict[str, Any]:
    body = await get(api, f"/v1/units/{code}/values", period=period, indicator=indicator, **params)
    assert body["edition"] == params.get("edition", body["edition"])
    (value,) = body["values"]
    return value  # type: ignore[no-any-return]


async def test_the_2025_province_is_reexpressed_from_its_legacy_provinces(
    api: httpx.AsyncClient, stack: Stack
) -> None:
    v = await one(api, "80", "cccd_issued", "2024-01", edition="2025")
    assert v["value"] == province_sum("cccd_issued", "2024-01")[0]  # D counted whole, not ½ + ½ of communes
    assert (v["basis"], v["source"], v["estimated"]) == ("reexpressed", "reexpressed", False)
    assert (v["reporting"], v["expected"]) == (2, 2)  # legacy 72 and 80
    assert v["reexpressed"]["value"] == v["value"] and v["reported"] is None and v["computed"] is None

    rate = await one(api, "80", "online_dossier_rate", "2024-07", edition="2025")
    num, den = province_sum("online_dossier_rate", "2024-07")
    assert (rate["numerator"], rate["denominator"], rate["value"]) == (num, den, round(100 * num / (den or 1), 4))
    group = await one(api, "80", "working_group_formed", "2024-07", edition="2025")
    assert (group["numerator"], group["denominator"]) == province_sum("working_group_formed", "2024-07")
    own_level = await one(api, "80", "directives_issued", "2024-07", edition="2025")
    assert own_level["value"] is None and own_level["reexpressed"] is None and own_level["basis"] == "native"

    native_only = await one(api, "80", "cccd_issued", "2024-01", edition="2025", reexpress="false")
    assert native_only["value"] is None and native_only["basis"] == "native"
    api.headers["Authorization"] = f"Bearer {await stack.create_key(scope='VN', edition='2025', roles=('read',))}"
    nation = await one(api, "VN", "cccd_issued", "2024-01", edition="2025")
    assert nation["value"] == province_sum("cccd_issued", "2024-01")[0] and nation["basis"] == "reexpressed"


async def test_the_2025_communes_carry_their_weighted_values(api: httpx.AsyncClient) -> None:
    for commune in (X, Y, Z):
        for indicator, period in (("cccd_issued", "2024-01"), ("online_dossier_rate", "2024-07"),
                                  ("working_group_formed", "2024-07")):
            num, den, exact, reporting = expected(commune, indicator, period)
            v = await one(api, commune, indicator, period, edition="2025")
            if num is None:
                assert v["value"] is None, (commune, indicator)
                continue
            shown = (v["value"], None) if den is None else (v["numerator"], v["denominator"])
            assert shown == (number(num), None if den is None else number(den)), (commune, indicator)
            assert v["estimated"] is (not exact) and v["basis"] == "reexpressed"
            assert (v["reporting"], v["expected"]) == (reporting, len(CW.weights[commune]))
    assert (await one(api, X, "cccd_issued", "2024-01", edition="2025"))["estimated"] is True  # ½ of D
    assert (await one(api, Z, "cccd_issued", "2024-01", edition="2025"))["estimated"] is False


async def test_one_unbroken_series_across_the_reform(api: httpx.AsyncClient) -> None:
    body = await get(api, "/v1/units/80/series", indicator="cccd_issued", **{"from": "2024-01", "to": "2025-12"})
    assert body["edition"] == "2025" and len(body["points"]) == 24
    points = {p["period"]: p for p in body["points"]}
    for period, p in points.items():
        legacy = [v for (_, i, q), v in LEGACY.items() if i == "cccd_issued" and q == period]
        native = [v for (_, i, q), v in NATIVE_2025.items() if i == "cccd_issued" and q == period]
        want = sum(v for v, _ in legacy) if legacy else (sum(native) if native else None)
        assert p["value"] == want, period
        assert p["basis"] == ("reexpressed" if period < "2025-07" else "native"), period
        assert p["estimated"] is False  # a province's legacy provinces all went whole
    x = await get(api, f"/v1/units/{X}/series", indicator="cccd_issued", **{"from": "2025-06", "to": "2025-08"})
    num, _, exact, _ = expected(X, "cccd_issued", "2025-06")
    assert [(p["value"], p["basis"], p["estimated"]) for p in x["points"]] == [
        (number(num or Fraction(0)), "reexpressed", not exact), (None, "native", False), (5000, "native", False)]
    native = await get(api, "/v1/units/80/series", indicator="cccd_issued", reexpress="false",
                       **{"from": "2024-01", "to": "2025-12"})
    assert [p["period"] for p in native["points"] if p["value"] is not None] == ["2025-08"]


async def test_the_year_2025_mixes_both_editions(api: httpx.AsyncClient) -> None:
    flow = await one(api, "80", "dossiers_received", "2025")
    first_half = sum(n for (_, i, _), (n, _) in LEGACY.items() if i == "dossiers_received")
    second_half = sum(v for (_, i, _), v in NATIVE_2025.items() if i == "dossiers_received")
    assert flow["value"] == first_half + second_half and flow["basis"] == "mixed" and flow["source"] == "mixed"
    assert flow["reexpressed"]["value"] == first_half and flow["computed"]["value"] == second_half
    stock = await one(api, "80", "cccd_issued", "2025")
    assert (stock["value"], stock["basis"]) == (5000, "native")  # August, the latest month with a value
    half = await one(api, "80", "cccd_issued", "2025-H1", edition="2025")
    assert (half["value"], half["basis"]) == (province_sum("cccd_issued", "2025-06")[0], "reexpressed")
    x_flow = await one(api, X, "dossiers_received", "2025")
    x_first = sum(expected(X, "dossiers_received", f"2025-{m:02}")[0] or 0 for m in range(1, 7))
    assert x_flow["value"] == number(x_first + 40) and x_flow["estimated"] is True  # ½ of D's 11


async def test_the_drill_down_ranks_the_2025_communes_on_reexpressed_values(api: httpx.AsyncClient) -> None:
    body = await get(api, "/v1/units/80/children/values", indicator="cccd_issued", period="2024-01",
                     edition="2025", limit="500")
    valued = {c: number(expected(c, "cccd_issued", "2024-01")[0] or Fraction(0)) for c in CW.weights
              if expected(c, "cccd_issued", "2024-01")[0] is not None}
    ranking = sorted(valued.items(), key=lambda kv: (-kv[1], kv[0]))
    assert [(i["unit"]["code"], i["value"]) for i in body["items"][: len(ranking)]] == ranking
    assert body["reporting"] == len(ranking) and body["total"] == len(CW.weights)
    assert all(i["value"] is None and i["basis"] == "reexpressed" for i in body["items"][len(ranking):])
    native = await get(api, "/v1/units/80/children/values", indicator="cccd_issued", period="2024-01",
                       edition="2025", reexpress="false")
    assert native["reporting"] == 0


async def test_lineage_both_ways(api: httpx.AsyncClient) -> None:
    province = await get(api, "/v1/units/80/lineage", edition="2025")
    assert province["direction"] == "formed_from"
    assert [(i["code"], i["level"], i["weight"], i["basis"]) for i in province["items"]] == [
        ("72", "province", 1, "whole"), ("80", "province", 1, "whole")]
    commune = await get(api, f"/v1/units/{X}/lineage", edition="2025")
    assert {i["code"]: Fraction(i["weight"]) for i in commune["items"]} == CW.weights[X]
    assert {i["code"]: i["name"] for i in commune["items"]} == {c: CW.names[c] for c in CW.weights[X]}
    divided = await get(api, f"/v1/units/{D}/lineage", edition="legacy")
    assert divided["direction"] == "went_into"
    assert [(i["code"], i["weight"], i["basis"]) for i in divided["items"]] == [(X, 0.5, "equal"), (Y, 0.5, "equal")]


async def test_a_legacy_correction_and_new_weights_reach_the_2025_answers(stack: Stack) -> None:
    first = [event(1, T, 2000, period="2024-01", province="72"), event(2, D, 600, period="2024-01")]
    async with aggregating(stack, GROUP):
        await caught_up(stack, GROUP, await produce(stack, first))
        key = await stack.create_key(scope="80", edition="2025", roles=("read",))
        async with serve(stack) as client:
            client.headers["Authorization"] = f"Bearer {key}"
            for _ in range(2):  # the second answer is the one kept in memory
                assert (await one(client, "80", "cccd_issued", "2024-01", edition="2025"))["value"] == 2600
            await produce(stack, [event(3, T, 2100, period="2024-01", province="72")])

            async def corrected() -> bool:
                return (await one(client, "80", "cccd_issued", "2024-01", edition="2025"))["value"] == 2700

            await eventually(corrected, what="the legacy correction through the 2025 province")
            assert (await one(client, Y, "cccd_issued", "2024-01", edition="2025"))["value"] == 300
            await stack.execute(
                f"UPDATE crosswalk SET weight = CASE code_2025 WHEN '{X}' THEN 0.25 ELSE 0.75 END, basis = 'area' "
                f"WHERE legacy_code = '{D}'")

            async def reweighted() -> bool:
                return (await one(client, Y, "cccd_issued", "2024-01", edition="2025"))["value"] == 450

            await eventually(reweighted, what="new crosswalk weights in the 2025 commune's answer")  # ¾ of 600


async def test_scope_at_the_border_of_both_editions(stack: Stack) -> None:
    """A key of the 2025 commune X reads the legacy communes mapping into it, not their districts nor a commune
    that went elsewhere; a legacy key reads nothing of the 2025 edition; each on every route."""
    elsewhere = next(c for c, ts in sorted(SOURCES.items()) if all(t != X for t, _, _ in ts))
    commune_key = await stack.create_key(scope=X, edition="2025", roles=("read",))
    legacy_key = await stack.create_key(scope="80", edition="legacy", roles=("read",))
    async with serve(stack) as client:
        client.headers["Authorization"] = f"Bearer {commune_key}"
        assert set((await statuses(client, X, "2025")).values()) == {200}
        for code in CW.weights[X]:
            assert set((await statuses(client, code, "legacy")).values()) == {200}, code
        for code in (elsewhere, "80", "72", "803", Y):
            edition = "2025" if code == Y else "legacy"
            assert set((await statuses(client, code, edition)).values()) == {404}, code
        listed = (await client.get("/v1/units", params={"edition": "legacy", "limit": "500"})).json()["items"]
        assert sorted(u["code"] for u in listed) == sorted(CW.weights[X])
        divided = (await client.get(f"/v1/units/{D}/lineage", params={"edition": "legacy"})).json()
        assert [i["code"] for i in divided["items"]] == [X]  # Y, where D's other half went, is not its to read

        client.headers["Authorization"] = f"Bearer {legacy_key}"
        for code in ("80", X, "VN"):
            assert await statuses(client, code, "2025") == dict.fromkeys(unit_routes(code, "2025"), 404), code
        assert (await client.get("/v1/units", params={"edition": "2025"})).json()["items"] == []
        went_into = (await client.get("/v1/units/80/lineage", params={"edition": "legacy"})).json()
        assert went_into["items"] == []  # Tây Ninh (2025) is not a legacy key's to read
