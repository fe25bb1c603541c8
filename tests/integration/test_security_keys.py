"""API keys: stored only as a hash, shown once, expiry and revocation at once everywhere (within a moment on
the query service, which keeps the keys it looked up), and an admin API that can delegate what a key holds
but never more."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import sys
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from services.ingest.app import create_app
from tests.fixtures.apps import auth, no_relay, running, serve
from tests.fixtures.infra import Stack

EVENT = {"unit": "803", "indicator": "cccd_issued", "period": "2024-07", "value": 1}


def key_id(key: str) -> str:
    return key.split("_")[1]


async def test_a_key_is_192_random_bits_and_the_database_keeps_only_its_hash(stack: Stack) -> None:
    admin = await stack.create_key()
    async with running(create_app(no_relay(stack))) as client:
        created = await client.post("/v1/admin/keys", headers=auth(admin),
                                     json={"name": "Long An", "scope": "80", "edition": "legacy", "roles": ["submit"]})
        assert created.status_code == 201, created.text
        assert created.headers["cache-control"] == "no-store"
        key = created.json()["key"]
        prefix, kid, secret = key.split("_", 2)
        assert (prefix, kid) == ("d06", created.json()["id"])
        assert len(base64.urlsafe_b64decode(secret + "=" * (-len(secret) % 4))) == 24  # 192 bits
        assert created.headers["location"] == f"/v1/admin/keys/{kid}"
        # Shown once: reading it back never shows the key again.
        for response in (await client.get(f"/v1/admin/keys/{kid}", headers=auth(admin)),
                         await client.get("/v1/admin/keys", headers=auth(admin))):
            assert response.status_code == 200
            assert secret not in response.text and '"key"' not in response.text
        assert (await client.post("/v1/events", json={"events": [EVENT]}, headers=auth(key))).status_code == 202

    for k in (admin, key):
        (row,) = await stack.fetch("SELECT k.*, row_to_json(k)::text AS everything FROM api_keys k WHERE id = $1",
                                key_id(k))
        assert row["secret_hash"] == hashlib.sha256(k.encode()).hexdigest()
        assert k not in row["everything"] and k.split("_", 2)[2] not in row["everything"]


async def test_expired_and_revoked_keys_fail_at_once_on_both_services(stack: Stack) -> None:
    expiring = await stack.create_key(roles=("submit", "read"))
    revoked = await stack.create_key(roles=("submit", "read"))
    admin = await stack.create_key()
    async with AsyncExitStack() as apps:
        replica_a = await apps.enter_async_context(running(create_app(no_relay(stack))))
        replica_b = await apps.enter_async_context(running(create_app(no_relay(stack))))
        query = await apps.enter_async_context(serve(stack))

        async def works(key: str) -> tuple[int, int, int]:
            return (
                (await replica_a.post("/v1/events", json={"events": [EVENT]}, headers=auth(key))).status_code,
                (await replica_b.post("/v1/events", json={"events": [EVENT]}, headers=auth(key))).status_code,
                (await query.get("/v1/indicators", headers=auth(key))).status_code,
            )

        async def refused(key: str) -> None:
            """Ingest reads the key on every request: refused at once. The query service forgets a key it
            kept when api_keys announces the change, a moment after the commit (services/query/keys.py)."""
            assert (await works(key))[:2] == (401, 401)
            for _ in range(100):
                if (await query.get("/v1/indicators", headers=auth(key))).status_code == 401:
                    return
                await asyncio.sleep(0.01)
            pytest.fail("the query service still accepts the key a second later")

        assert await works(expiring) == await works(revoked) == (202, 202, 200)
        await stack.execute("UPDATE api_keys SET expires_at = now() WHERE id = $1", key_id(expiring))
        await refused(expiring)

        revoking = await replica_a.delete(f"/v1/admin/keys/{key_id(revoked)}", headers=auth(admin))
        assert revoking.status_code == 200 and revoking.json()["state"] == "revoked"
        await refused(revoked)  # on every replica
        again = await replica_b.delete(f"/v1/admin/keys/{key_id(revoked)}", headers=auth(admin))
        assert again.json()["revoked_at"] == revoking.json()["revoked_at"]  # revoking twice changes nothing

        seen = (await replica_b.get(f"/v1/admin/keys/{key_id(expiring)}", headers=auth(admin))).json()
        assert seen["state"] == "expired"
        # A key may revoke itself (a leaked key's holder should not need to find an administrator).
        assert (await replica_a.delete(f"/v1/admin/keys/{key_id(admin)}", headers=auth(admin))).status_code == 200
        assert (await replica_b.get("/v1/admin/keys", headers=auth(admin))).status_code == 401


async def test_an_admin_delegates_what_it_holds_and_never_more(stack: Stack) -> None:
    soon = datetime.now(UTC) + timedelta(days=30)
    admin = await stack.create_key(scope="80", edition="legacy", roles=("admin", "read"), expires_at=soon)
    reader = await stack.create_key(roles=("read", "submit"))
    async with running(create_app(no_relay(stack))) as client:
        async def create(**body: Any) -> httpx.Response:
            return await client.post("/v1/admin/keys", headers=auth(admin),
                                     json={"name": "delegate", "scope": "803", "roles": ["read"], **body})

        made = await create()
        assert made.status_code == 201, made.text
        assert made.json()["created_by"] == key_id(admin)
        assert datetime.fromisoformat(made.json()["expires_at"]) == soon  # inherits the creator's expiry

        def refused(response: httpx.Response, status: int, slug: str) -> bool:
            return response.status_code == status and response.json()["type"].endswith(slug)

        assert refused(await create(roles=["submit"]), 403, "/forbidden")  # a role it does not hold
        assert (await create(roles=["read", "admin"])).status_code == 201  # what it holds, it may delegate
        later = (soon + timedelta(days=1)).isoformat()
        assert refused(await create(expires_at=later), 403, "/forbidden")  # outliving its creator
        past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
        assert refused(await create(expires_at=past), 422, "/validation-error")
        assert refused(await create(expires_at="2030-01-01T00:00:00"), 422, "/validation-error")  # no offset
        assert refused(await create(scope="999"), 422, "/validation-error")
        assert refused(await create(name="\u202eevil"), 422, "/validation-error")
        assert refused(await create(name="   "), 422, "/validation-error")
        assert refused(await create(roles=[]), 422, "/validation-error")
        assert refused(await create(roles=["root"]), 422, "/validation-error")
        assert refused(await create(owner="me"), 422, "/validation-error")  # unknown fields are refused

        for method, path in (("GET", "/v1/admin/keys"), ("POST", "/v1/admin/keys"),
                             ("GET", f"/v1/admin/keys/{key_id(admin)}"), ("DELETE", f"/v1/admin/keys/{key_id(admin)}")):
            no_admin = await client.request(method, path, headers=auth(reader), json={"name": "x", "scope": "VN",
                                                                                      "roles": ["read"]})
            assert refused(no_admin, 403, "/forbidden"), (method, path)
            assert refused(await client.request(method, path), 401, "/unauthorized"), (method, path)


async def test_the_key_list_pages(stack: Stack) -> None:
    admin = await stack.create_key()
    for n in range(4):
        await stack.create_key(name=f"k{n}", roles=("read",))
    async with running(create_app(no_relay(stack))) as client:
        first = (await client.get("/v1/admin/keys", params={"limit": 3}, headers=auth(admin))).json()
        rest = (await client.get("/v1/admin/keys", params={"limit": 3, "cursor": first["next_cursor"]},
                                 headers=auth(admin))).json()
        ids = [k["id"] for k in first["items"] + rest["items"]]
        assert len(ids) == 5 and ids == sorted(ids) and rest["next_cursor"] is None
        bad = await client.get("/v1/admin/keys", params={"cursor": "'; --"}, headers=auth(admin))
        assert bad.status_code == 422 and bad.json()["errors"][0]["loc"] == "cursor"
        assert (await client.get("/v1/admin/keys/not-a-key-id", headers=auth(admin))).status_code == 404


async def test_last_used_at_is_kept_by_ingest_and_not_by_the_read_only_query_service(stack: Stack) -> None:
    """The decision of docs/security.md: the query role may only SELECT, so reads leave no trace there."""
    submitter = await stack.create_key(roles=("submit",))
    reader = await stack.create_key(roles=("read",))

    async def last_used(key: str) -> datetime | None:
        (row,) = await stack.fetch("SELECT last_used_at FROM api_keys WHERE id = $1", key_id(key))
        value: datetime | None = row["last_used_at"]
        return value

    async with running(create_app(no_relay(stack))) as client:
        assert (await client.post("/v1/events", json={"events": [EVENT]}, headers=auth(submitter))).status_code == 202
    async with serve(stack) as query:
        assert (await query.get("/v1/indicators", headers=auth(reader))).status_code == 200
    assert await last_used(submitter) is not None
    assert await last_used(reader) is None


async def test_the_operator_commands_follow_the_same_rules(stack: Stack) -> None:
    """`d06 keys` and /v1/admin/keys share one key service: the operator is bound by no other key, but a
    scope must still exist and roles must be known."""

    async def d06(*args: str) -> tuple[int, str, str]:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "shared.cli", "keys", *args, env=stack.env(),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        out, err = await process.communicate()
        return process.returncode or 0, out.decode(), err.decode()

    code, out, _ = await d06("create", "--scope", "803", "--edition", "legacy", "--roles", "submit",
                             "--name", "Bến Lức")
    assert code == 0
    key = out.strip()
    assert (await d06("create", "--scope", "999", "--roles", "read"))[0] == 2  # no such unit in 2025
    assert (await d06("create", "--scope", "VN", "--roles", "read,root"))[0] == 2
    async with running(create_app(no_relay(stack))) as client:
        assert (await client.post("/v1/events", json={"events": [EVENT]}, headers=auth(key))).status_code == 202

    def listed_state(listing: str) -> str:  # columns: id, name, scope, roles, state, last used
        (line,) = [line for line in listing.splitlines() if line.startswith(key_id(key))]
        assert line[36:50].strip() == "legacy/803"
        return line[74:82].strip()

    assert listed_state((await d06("list"))[1]) == "active"
    assert (await d06("revoke", key_id(key)))[:2] == (0, f"key {key_id(key)} revoked\n")
    assert listed_state((await d06("list"))[1]) == "revoked"
    assert (await d06("revoke", key_id(key)))[0] == 1  # no active key of that id any more
