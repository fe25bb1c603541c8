"""`make run`'s development key: every role, kept across runs, replaced when it predates a role."""

from __future__ import annotations

import asyncio
from pathlib import Path

from shared.auth import Role, key_id_of
from shared.devrun import dev_key
from tests.fixtures.infra import Stack


async def roles_and_revoked(stack: Stack, key: str) -> tuple[set[str], bool]:
    row = (await stack.fetch("SELECT roles, revoked_at FROM api_keys WHERE id = $1", key_id_of(key)))[0]
    return set(row["roles"]), row["revoked_at"] is not None


async def test_the_development_key_holds_every_role_and_an_older_one_is_replaced(stack: Stack, tmp_path: Path) -> None:
    path = tmp_path / "dev-api-key"
    first = await asyncio.to_thread(dev_key, stack.database_url, path)
    assert await roles_and_revoked(stack, first) == ({"submit", "read", "admin", "review"}, False)
    assert path.read_text().strip() == first
    assert await asyncio.to_thread(dev_key, stack.database_url, path) == first  # kept across runs

    # A key written by a `make run` from before the review role existed.
    older = await stack.create_key(roles=("submit", "read", "admin"), name="development (make run)")
    path.write_text(older + "\n")
    replaced = await asyncio.to_thread(dev_key, stack.database_url, path)
    assert replaced != older and path.read_text().strip() == replaced
    assert await roles_and_revoked(stack, replaced) == ({r.value for r in Role}, False)
    assert (await roles_and_revoked(stack, older))[1]  # revoked: it no longer stays valid beside the new one
