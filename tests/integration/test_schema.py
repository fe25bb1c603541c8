"""The migrations and the reference data, on the real server."""

from __future__ import annotations

import asyncpg

from shared.db import plain_url
from shared.migrate import downgrade, upgrade
from tests.fixtures.infra import Stack


async def _counts(url: str) -> dict[tuple[str, str], int]:
    conn = await asyncpg.connect(plain_url(url))
    try:
        rows = await conn.fetch("SELECT edition, level, count(*) AS n FROM units GROUP BY 1, 2")
        return {(r["edition"], r["level"]): r["n"] for r in rows}
    finally:
        await conn.close()


async def test_both_editions_are_loaded_with_their_real_counts(stack: Stack) -> None:
    counts = await _counts(stack.database_url)
    assert counts[("legacy", "province")] == 63
    assert counts[("legacy", "district")] == 696
    assert counts[("legacy", "commune")] == 10_035
    assert counts[("2025", "province")] == 34
    assert counts[("2025", "commune")] == 3_321
    assert counts[("legacy", "nation")] == counts[("2025", "nation")] == 1


async def test_codes_keep_leading_zeros_and_are_reused_across_editions(stack: Stack) -> None:
    conn = await asyncpg.connect(plain_url(stack.database_url))
    try:
        rows = await conn.fetch("SELECT edition, name, ancestors, n_children FROM units WHERE code = '00004'")
        names = {r["edition"]: r["name"] for r in rows}
        assert names == {"legacy": "Phường Trúc Bạch", "2025": "Phường Ba Đình"}
        legacy = next(r for r in rows if r["edition"] == "legacy")
        assert legacy["ancestors"] == ["VN", "01", "001"]
        island = await conn.fetchval("SELECT n_children FROM units WHERE edition='legacy' AND code='318'")
        assert island == 0  # Bạch Long Vĩ has no communes
    finally:
        await conn.close()


def test_migrations_downgrade_and_upgrade_cleanly(stack: Stack) -> None:
    downgrade(stack.database_url, "base")
    upgrade(stack.database_url)
