"""Quality flags read through the query API (DESIGN §8 "Reading and acting on them"): on every value object and in
the subtree listing, planted through the real aggregator (AGGREGATE_QUALITY on) and read back over HTTP.

Planted in January 2024 (legacy Long An 80, Bến Lức 803), the expected flags computed here from the events:
  27991 cccd_issued climbs by 100 a month through 2023, then says 1100: it falls (rule, at the commune: the
  "never falls" rules bound communes) and its increase departs from a constant history (outlier); its 5000
  level-2 accounts exceed its cards (rule, there and above).
  27994 and 27997 dossiers_received alternate 100/110 through 2023, then say 400 and 200 (outliers with a score).
  28000 reports cards and accounts that keep every rule: clean.
  31483 (Long Mỹ, province 93) reports more accounts than cards: another province's flag, out of a key's scope.
"""

from __future__ import annotations

import statistics
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import httpx
import pytest

from services.query.schemas import ChildrenValues, QualityPage, Series, UnitValues
from shared.periods import shift
from tests.fixtures.aggregator import aggregating, caught_up, event, produce
from tests.fixtures.apps import serve
from tests.fixtures.infra import Stack
from tests.fixtures.waiting import eventually

JAN = "2024-01"
MONTHS = [shift("2023-01", k) for k in range(12)]
STEADY = [100, 110] * 6  # dossiers_received of 27994 and 27997 through 2023

CARDS = {"27991": 1100, "28000": 500}
ACCOUNTS = {"27991": 5000, "28000": 400}


def planted() -> list[Any]:
    seq = iter(range(1, 10_000))
    out = [event(next(seq), "27991", 1000 + 100 * k, period=p) for k, p in enumerate(MONTHS)]
    for unit, jan in (("27994", 400), ("27997", 200)):
        out += [event(next(seq), unit, v, period=p, indicator="dossiers_received")
                for v, p in zip(STEADY, MONTHS, strict=True)]
        out.append(event(next(seq), unit, jan, period=JAN, indicator="dossiers_received"))
    for unit in CARDS:
        out.append(event(next(seq), unit, CARDS[unit], period=JAN))
        out.append(event(next(seq), unit, ACCOUNTS[unit], period=JAN, indicator="vneid_l2_activated"))
    out.append(event(next(seq), "31483", 800, period=JAN, province="93"))
    out.append(event(next(seq), "31483", 900, period=JAN, province="93", indicator="vneid_l2_activated"))
    return out


def z_score(history: list[int], x: int) -> float:
    """Iglewicz and Hoaglin's modified z-score, to the 4 places the flags keep."""
    median = Decimal(statistics.median(history))
    mad = Decimal(statistics.median([abs(v - median) for v in history]))
    return float((Decimal("0.6745") * (x - median) / mad).quantize(Decimal("0.0001")))


def expected_open() -> dict[tuple[str, str, str], tuple[str, Any, Any, Any]]:
    """(unit, kind, code) -> (importance, left, right, score) of every flag open in Long An in January."""
    december = 1000 + 100 * 11
    cards, accounts = sum(CARDS.values()), sum(ACCOUNTS.values())  # 803 and 80 sum their communes
    out: dict[tuple[str, str, str], tuple[str, Any, Any, Any]] = {
        ("27991", "rule", "cccd_issued_never_falls"): ("high", CARDS["27991"], december, None),
        ("27991", "rule", "vneid_l2_activated_within_cccd"): ("high", ACCOUNTS["27991"], CARDS["27991"], None),
        # A stock is scored on its increase; through 2023 it rose by 100 every month: a constant history.
        ("27991", "outlier", "cccd_issued"): ("medium", CARDS["27991"] - december, 100, None),
        ("27994", "outlier", "dossiers_received"): ("medium", 400, 105, z_score(STEADY, 400)),
        ("27997", "outlier", "dossiers_received"): ("medium", 200, 105, z_score(STEADY, 200)),
    }
    for unit in ("803", "80"):  # "never falls" bounds communes only: a total also falls when one is missing
        out[(unit, "rule", "vneid_l2_activated_within_cccd")] = ("high", accounts, cards, None)
    return out


@pytest.fixture
def group() -> str:
    return f"g-{uuid.uuid4().hex[:8]}"


async def aggregate(stack: Stack, group: str, events: list[Any]) -> None:
    """The aggregator with rules and outliers on, until it has applied `events`."""
    async with aggregating(stack, group, quality=True):
        await caught_up(stack, group, await produce(stack, events))


@pytest.fixture
async def api(stack: Stack, group: str) -> AsyncIterator[httpx.AsyncClient]:
    await aggregate(stack, group, planted())
    key = await stack.create_key(roles=("read",))
    async with serve(stack) as client:
        client.headers["Authorization"] = f"Bearer {key}"
        yield client


async def get(api: httpx.AsyncClient, path: str, **params: str) -> Any:
    response = await api.get(path, params=params)
    assert response.status_code == 200, response.text
    return response.json()


async def listing(api: httpx.AsyncClient, code: str = "80", **params: str) -> list[dict[str, Any]]:
    body = await get(api, f"/v1/units/{code}/quality", edition="legacy", **params)
    QualityPage.model_validate(body)
    assert body["next_cursor"] is None
    return body["items"]  # type: ignore[no-any-return]


def as_expected(items: list[dict[str, Any]]) -> dict[tuple[str, str, str], tuple[str, Any, Any, Any]]:
    return {(i["unit"]["code"], i["kind"], i["code"]): (i["importance"], i["left"], i["right"], i["score"])
            for i in items}


async def test_values_carry_their_flags_and_clean_values_carry_none(api: httpx.AsyncClient) -> None:
    body = await get(api, "/v1/units/27991/values", period=JAN, edition="legacy")
    UnitValues.model_validate(body)
    flags = {v["indicator"]: v["flags"] for v in body["values"]}
    assert flags["cccd_issued"] == [
        {"kind": "rule", "code": "cccd_issued_never_falls", "importance": "high", "left": 1100, "right": 2100,
         "acknowledged": False},
        {"kind": "rule", "code": "vneid_l2_activated_within_cccd", "importance": "high", "left": 5000,
         "right": 1100, "acknowledged": False},
        {"kind": "outlier", "code": "cccd_issued", "importance": "medium", "score": None, "constant_history": True,
         "acknowledged": False},
    ]
    assert flags["vneid_l2_activated"] == [flags["cccd_issued"][1]]
    assert {k for k, v in flags.items() if v} == {"cccd_issued", "vneid_l2_activated"}

    clean = await get(api, "/v1/units/28000/values", period=JAN, edition="legacy")
    assert all(v["flags"] == [] for v in clean["values"])
    district = {v["indicator"]: v["flags"] for v in (await get(api, "/v1/units/803/values", period=JAN))["values"]}
    assert [(f["code"], f["left"], f["right"]) for f in district["cccd_issued"]] == [
        ("vneid_l2_activated_within_cccd", 5400, 1600)]
    # A derived period and the nation (summed at read time, never flagged) carry none: see docs/quality.md.
    quarter = await get(api, "/v1/units/27991/values", period="2024-Q1", edition="legacy")
    assert all(v["flags"] == [] for v in quarter["values"])
    nation = await get(api, "/v1/units/VN/values", period=JAN, edition="legacy")
    assert all(v["flags"] == [] for v in nation["values"])

    children = await get(api, "/v1/units/803/children/values", indicator="dossiers_received", period=JAN)
    ChildrenValues.model_validate(children)
    scores = {c["unit"]["code"]: [f["score"] for f in c["flags"]] for c in children["items"]}
    assert scores["27994"] == [z_score(STEADY, 400)] and scores["27997"] == [z_score(STEADY, 200)]
    assert not any(v for code, v in scores.items() if code not in ("27994", "27997"))

    series = await get(api, "/v1/units/27991/series", indicator="cccd_issued", **{"from": "2023-10", "to": JAN},
                       edition="legacy")
    Series.model_validate(series)
    assert [len(p["flags"]) for p in series["points"]] == [0, 0, 0, 3]


async def test_the_listing_gives_both_sides_most_important_first(api: httpx.AsyncClient) -> None:
    items = await listing(api)
    assert as_expected(items) == expected_open()
    scored = [abs(i["score"]) for i in items if i["score"] is not None]
    # high before medium; among the medium, the constant history's departure first, then the larger score
    assert [(i["importance"], i["kind"], i["unit"]["code"]) for i in items][4:] == [
        ("medium", "outlier", "27991"), ("medium", "outlier", "27994"), ("medium", "outlier", "27997")]
    assert {i["importance"] for i in items[:4]} == {"high"} and scored == sorted(scored, reverse=True)
    rule = next(i for i in items if i["unit"]["code"] == "27991" and i["code"] == "vneid_l2_activated_within_cccd")
    assert rule | {"id": 0, "opened_at": "", "updated_at": ""} == {
        "id": 0, "kind": "rule", "code": "vneid_l2_activated_within_cccd",
        "name_vi": "Tài khoản định danh mức 2 kích hoạt không vượt số CCCD đã cấp",
        "name_en": "Level-2 accounts activated do not exceed chip ID cards issued", "importance": "high",
        "status": "open", "unit": {"code": "27991", "name": "Thị trấn Bến Lức", "level": "commune"},
        "indicators": ["cccd_issued", "vneid_l2_activated"], "period": JAN, "left": 5000, "right": 1100,
        "operator": "<=", "left_expression": "vneid_l2_activated", "right_expression": "cccd_issued", "score": None,
        "constant_history": False, "opened_at": "", "resolved_at": None, "updated_at": "", "acknowledged": None,
    }
    outlier = next(i for i in items if i["unit"]["code"] == "27994")
    assert (outlier["name_en"], outlier["operator"], outlier["constant_history"]) == (
        "Administrative dossiers received", None, False)

    # The subtree, and only it: the district's excludes the province's own flags; Long Mỹ's is elsewhere.
    assert {i["unit"]["code"] for i in await listing(api, "803")} == {"803", "27991", "27994", "27997"}
    assert await listing(api, "28000") == []
    nationwide = as_expected(await listing(api, "VN"))
    assert nationwide[("31483", "rule", "vneid_l2_activated_within_cccd")] == ("high", 900, 800, None)


async def test_filters_and_pages(api: httpx.AsyncClient) -> None:
    everything = await listing(api)
    assert len(await listing(api, kind="outlier")) == 3
    assert {i["importance"] for i in await listing(api, importance="high")} == {"high"}
    assert await listing(api, period="2023") == [] and await listing(api, period="2024-02") == []
    assert await listing(api, period="2024-Q1") == everything == await listing(api, **{"from": JAN, "to": "2024-06"})
    assert await listing(api, **{"from": "2024-02"}) == []

    pages, cursor = [], None
    while True:
        params = {"edition": "legacy", "limit": "2", **({"cursor": cursor} if cursor else {})}
        body = await get(api, "/v1/units/80/quality", **params)
        pages.append(body["items"])
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert [len(p) for p in pages] == [2, 2, 2, 1]
    assert [i for p in pages for i in p] == everything

    for params in ({"cursor": "bm90IGEgY3Vyc29y"}, {"period": JAN, "from": JAN}, {"period": "2024-13"},
                   {"status": "closed"}, {"importance": "urgent"}, {"from": "2024-06", "to": "2024-01"}):
        response = await api.get("/v1/units/80/quality", params={"edition": "legacy", **params})
        assert response.status_code == 422, (params, response.text)
        assert response.headers["content-type"] == "application/problem+json"


async def test_a_correction_resolves_and_an_acknowledgement_moves_a_flag(
    stack: Stack, group: str, api: httpx.AsyncClient
) -> None:
    before = await listing(api)
    await aggregate(stack, group, [event(100, "27991", 2200, period=JAN)])

    async def resolved() -> bool:
        return len(await listing(api, status="resolved")) == 2

    await eventually(resolved, what="the correction's flags to be listed as resolved")
    gone = {(i["unit"]["code"], i["code"]) for i in await listing(api, status="resolved")}
    assert gone == {("27991", "cccd_issued_never_falls"), ("27991", "cccd_issued")}
    assert all(i["status"] == "resolved" and i["resolved_at"] for i in await listing(api, status="resolved"))
    still = as_expected(await listing(api))
    assert still[("27991", "rule", "vneid_l2_activated_within_cccd")] == ("high", 5000, 2200, None)
    assert still[("803", "rule", "vneid_l2_activated_within_cccd")] == ("high", 5400, 2700, None)
    assert len(still) == len(before) - 2

    # The reviewer's check, as ingest's `POST /v1/quality/{id}/acknowledge` writes it, announced like a batch.
    flag = next(i for i in await listing(api) if i["unit"]["code"] == "27994")
    await stack.execute("""
        WITH ack AS (UPDATE quality_flags SET acknowledged_by = 'reviewer-80', acknowledged_at = now(),
                                              acknowledged_comment = 'the commune re-counted: 400 is right'
                     WHERE id = $1 RETURNING edition || '/80' AS province)
        SELECT pg_notify('d06_rollups_changed', province) FROM ack""", flag["id"])

    async def acknowledged() -> bool:
        return [i["id"] for i in await listing(api, status="acknowledged")] == [flag["id"]]

    await eventually(acknowledged, what="the acknowledged flag to move")
    (checked,) = await listing(api, status="acknowledged")
    assert checked["status"] == "acknowledged"
    assert checked["acknowledged"]["by"] == "reviewer-80"
    assert checked["acknowledged"]["comment"] == "the commune re-counted: 400 is right"
    assert flag["id"] not in {i["id"] for i in await listing(api)}
    child = await get(api, "/v1/units/803/children/values", indicator="dossiers_received", period=JAN)
    marks = {c["unit"]["code"]: [f["acknowledged"] for f in c["flags"]] for c in child["items"]}
    assert marks["27994"] == [True] and marks["27997"] == [False]


async def test_a_province_key_sees_its_subtree_only(stack: Stack, api: httpx.AsyncClient) -> None:
    key = await stack.create_key(scope="80", edition="legacy", roles=("read",))
    headers = {"Authorization": f"Bearer {key}"}
    inside = await api.get("/v1/units/80/quality", params={"edition": "legacy"}, headers=headers)
    assert as_expected(inside.json()["items"]) == expected_open()
    for code in ("93", "936", "31483", "VN"):
        outside = await api.get(f"/v1/units/{code}/quality", params={"edition": "legacy"}, headers=headers)
        values = await api.get(f"/v1/units/{code}/values", params={"edition": "legacy", "period": JAN},
                               headers=headers)
        assert outside.status_code == values.status_code == 404, code
        assert outside.json()["detail"] == values.json()["detail"]
