"""A key sees and changes only its subtree, through every endpoint of both services.

The fixtures of the border: a key for Long An (province 80) of the legacy edition. Inside: Bến Lức
district 803 and its commune 27991; at the border: 80 itself; outside: Long Mỹ district 936 (Hậu Giang)
and its commune 31483, the nation VN, and every unit of the 2025 edition (also "80", now Tây Ninh).
A key of Tây Ninh (2025) reads, besides, the legacy units it was formed from (DESIGN §7).
"""

from __future__ import annotations

from typing import Any

import httpx

from services.ingest.app import create_app
from tests.fixtures.apps import auth, no_relay, running, serve
from tests.fixtures.infra import Stack
from tests.fixtures.scope import statuses as _statuses
from tests.fixtures.scope import unit_routes

INSIDE, COMMUNE_INSIDE, BORDER = "803", "27991", "80"
OUTSIDE, COMMUNE_OUTSIDE, NATION = "936", "31483", "VN"
SEEN = {INSIDE: 200, COMMUNE_INSIDE: 200, BORDER: 200, OUTSIDE: 404, COMMUNE_OUTSIDE: 404, NATION: 404}


def stock(unit: str, period: str = "2024-07", **extra: Any) -> dict[str, Any]:
    return {"unit": unit, "indicator": "cccd_issued", "period": period, "value": 1000, **extra}


async def test_query_every_unit_route_inside_outside_and_at_the_border(stack: Stack) -> None:
    key = await stack.create_key(scope=BORDER, edition="legacy", roles=("read",))
    async with serve(stack) as client:
        client.headers["Authorization"] = f"Bearer {key}"
        for code, status in SEEN.items():
            assert await _statuses(client, code) == dict.fromkeys(unit_routes(code), status), code
        # The same code in the other edition is another unit: Tây Ninh, not Long An.
        assert set((await _statuses(client, BORDER, "2025")).values()) == {404}
        # An outside unit answers exactly like a unit that does not exist: nothing to learn from it.
        hidden = (await client.get(f"/v1/units/{OUTSIDE}", params={"edition": "legacy"})).json()
        missing = (await client.get("/v1/units/999", params={"edition": "legacy"})).json()
        assert hidden["detail"].replace(OUTSIDE, "X") == missing["detail"].replace("999", "X")
        assert hidden["type"] == missing["type"]


async def test_query_lists_and_searches_show_only_the_subtree(stack: Stack) -> None:
    key = await stack.create_key(scope=BORDER, edition="legacy", roles=("read",))
    async with serve(stack) as client:
        client.headers["Authorization"] = f"Bearer {key}"

        async def codes(**params: str) -> list[str]:
            response = await client.get("/v1/units", params={"edition": "legacy", "limit": "500", **params})
            assert response.status_code == 200, response.text
            return [u["code"] for u in response.json()["items"]]

        assert await codes(level="province") == [BORDER]
        assert await codes(level="district") == sorted(await codes(parent=BORDER))
        assert INSIDE in await codes(level="district")
        assert await codes(q="long my") == []  # Huyện Long Mỹ is in Hậu Giang
        assert await codes(q=OUTSIDE) == [] and await codes(q=INSIDE) == [INSIDE]
        assert await codes(q="ben luc") == [INSIDE, COMMUNE_INSIDE]
        every = await codes()
        assert every[:2] == [BORDER, *sorted(await codes(parent=BORDER))[:1]] and NATION not in every
        assert (await client.get("/v1/units", params={"edition": "2025"})).json()["items"] == []
        ranking = (await client.get(f"/v1/units/{BORDER}/children/values",
                                    params={"indicator": "cccd_issued", "period": "2024-07"})).json()
        assert {i["unit"]["code"] for i in ranking["items"]} == set(await codes(parent=BORDER))
        assert (await client.get("/v1/indicators")).status_code == 200  # the catalogue is not scoped


async def test_a_2025_province_key_reads_the_legacy_units_it_was_formed_from(stack: Stack) -> None:
    """Tây Ninh (2025) is Long An (80) + Tây Ninh (72) of the legacy edition: its key reads both, read-only
    (DESIGN §7), and nothing of Bình Phước (70), which went into Đồng Nai; tests/integration/test_reexpress_scope.py
    has the rest of the border."""
    key = await stack.create_key(scope=BORDER, edition="2025", roles=("read",))
    async with serve(stack) as client:
        client.headers["Authorization"] = f"Bearer {key}"
        assert set((await _statuses(client, BORDER, "2025")).values()) == {200}
        assert set((await _statuses(client, "25459", "2025")).values()) == {200}  # a commune of Tây Ninh
        for code in (BORDER, INSIDE, COMMUNE_INSIDE, "72"):
            assert set((await _statuses(client, code, "legacy")).values()) == {200}, code
        for code in ("70", OUTSIDE, COMMUNE_OUTSIDE):
            assert set((await _statuses(client, code, "legacy")).values()) == {404}, code
        provinces = (await client.get("/v1/units", params={"edition": "legacy", "level": "province"})).json()
        assert [u["code"] for u in provinces["items"]] == ["72", "80"]
        assert set((await _statuses(client, NATION, "2025")).values()) == {404}
        assert set((await _statuses(client, NATION, "legacy")).values()) == {404}


async def test_ingest_submissions_inside_outside_and_at_the_border(stack: Stack) -> None:
    long_an = await stack.create_key(scope=BORDER, edition="legacy", roles=("submit",))
    tay_ninh = await stack.create_key(scope=BORDER, edition="2025", roles=("submit",))
    async with running(create_app(no_relay(stack))) as client:
        async def post(key: str, *events: dict[str, Any]) -> httpx.Response:
            return await client.post("/v1/events", json={"events": list(events)}, headers=auth(key))

        for code in (INSIDE, COMMUNE_INSIDE, BORDER):
            assert (await post(long_an, stock(code))).status_code == 202, code
        for code in (OUTSIDE, COMMUNE_OUTSIDE, NATION):
            refused = await post(long_an, stock(INSIDE, value=1), stock(code))
            assert refused.status_code == 403, code
            assert refused.json()["type"].endswith("/forbidden")
            assert refused.json()["detail"].startswith(f"events[1]: unit {code} (legacy) is outside")
            assert refused.json()["errors"][0]["loc"] == "events[1].unit"
        # The 2025 "80" is another unit: a legacy key may not write it, and vice versa.
        assert (await post(long_an, stock(BORDER, period="2025-08"))).status_code == 403
        assert (await post(tay_ninh, stock(INSIDE))).status_code == 403
        assert (await post(tay_ninh, stock("25459", period="2025-08"))).status_code == 202


async def test_ingest_event_status_inside_outside_and_at_the_border(stack: Stack) -> None:
    nation = await stack.create_key()
    long_an = await stack.create_key(scope=BORDER, edition="legacy", roles=("read",))
    codes = (INSIDE, BORDER, OUTSIDE, NATION)
    async with running(create_app(no_relay(stack))) as client:
        batch = [stock(code, event_id=f"s-{code}") for code in codes]
        assert (await client.post("/v1/events", json={"events": batch}, headers=auth(nation))).status_code == 202
        for code in codes:
            response = await client.get(f"/v1/events/s-{code}", headers=auth(long_an))
            assert response.status_code == SEEN[code], code
            assert "submitted_by" not in response.json()  # neither the sender nor an admin
            assert (await client.get(f"/v1/events/s-{code}", headers=auth(nation))).status_code == 200


async def test_admin_keys_inside_outside_and_at_the_border(stack: Stack) -> None:
    admin = await stack.create_key(scope=BORDER, edition="legacy", roles=("admin", "submit", "read"))
    other = await stack.create_key(scope="93", edition="legacy", roles=("read",))
    other_id = other.split("_")[1]
    async with running(create_app(no_relay(stack))) as client:
        async def create(scope: str, **extra: Any) -> httpx.Response:
            body = {"name": f"key for {scope}", "scope": scope, "roles": ["read"], **extra}
            return await client.post("/v1/admin/keys", json=body, headers=auth(admin))

        made = {code: await create(code) for code in (INSIDE, COMMUNE_INSIDE, BORDER)}
        assert {code: r.status_code for code, r in made.items()} == dict.fromkeys(made, 201)
        assert made[INSIDE].json()["edition"] == "legacy"  # the creator's edition by default
        for code in (OUTSIDE, COMMUNE_OUTSIDE, NATION):
            refused = await create(code)
            assert refused.status_code == 403 and refused.json()["type"].endswith("/forbidden"), code
        assert (await create(BORDER, edition="2025")).status_code == 403

        listed = (await client.get("/v1/admin/keys", headers=auth(admin))).json()["items"]
        assert other_id not in {k["id"] for k in listed}
        assert {k["scope"] for k in listed} == {INSIDE, COMMUNE_INSIDE, BORDER}
        for path in (f"/v1/admin/keys/{other_id}",):
            assert (await client.get(path, headers=auth(admin))).status_code == 404
            assert (await client.delete(path, headers=auth(admin))).status_code == 404
    async with serve(stack) as query:  # the refused revocation changed nothing
        assert (await query.get("/v1/indicators", headers=auth(other))).status_code == 200
