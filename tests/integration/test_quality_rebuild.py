"""`d06 quality rebuild`: the stored flags set to what the oracle computes from the facts, with the aggregator's
semantics (an unchanged flag keeps its acknowledgement; a changed one is open for review again), safe beside a
running aggregator (it waits for the province's writer lock), and `d06 quality verify` clean afterwards.

Figures (legacy Long An 80, Bến Lức 803 and its communes 27991, 27994, 27997), as in test_quality.py:
  27991 cccd_issued climbs 1000 → 2100 by 100 a month through 2023, then 2024-01 says 1100: it falls (rule,
  communes only) and its increase departs from a constant history (outlier). Its level-2 accounts activated in
  2024-01, 5000, exceed its cards (rule, at 27991 and at 803 and 80, whose sums carry it).
  27994 and 27997 answer for 20 and 26 of the 25 essential services: 27997 breaks the rule, which bounds
  communes only (their district's 46 adds up two lists).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import yaml
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.aggregate.repository import lock_writers
from shared.catalog import CATALOG_PATH, Catalog, load_catalog, parse_catalog
from shared.db import make_engine, transaction
from shared.dbroles import AGGREGATE_ROLE, act_as
from shared.hierarchy import Hierarchy
from shared.periods import shift
from shared.quality_rebuild import rebuild_quality
from shared.quality_verify import verify_quality
from tests.fixtures.aggregator import aggregating, caught_up, event, produce
from tests.fixtures.infra import ROOT, Stack
from tests.fixtures.waiting import eventually

JAN = "2024-01"
MONTHS = [shift("2023-01", k) for k in range(12)]
# (unit, indicator, period) -> (numerator, denominator): the reported values the aggregator would hold.
FACTS: dict[tuple[str, str, str], tuple[int, int | None]] = {
    **{("27991", "cccd_issued", p): (1000 + 100 * k, None) for k, p in enumerate(MONTHS)},
    ("27991", "cccd_issued", JAN): (1100, None),
    ("27991", "vneid_l2_activated", JAN): (5000, None),
    ("27994", "essential_services_online", JAN): (10, 20),
    ("27997", "essential_services_online", JAN): (12, 26),
}
EXPECTED = {  # (unit, kind, code, period) -> (left, right, score, constant history)
    ("27991", "rule", "cccd_issued_never_falls", JAN): (1100, 2100, None, False),
    ("27991", "outlier", "cccd_issued", JAN): (-1000, 100, None, True),
    ("27991", "rule", "vneid_l2_activated_within_cccd", JAN): (5000, 1100, None, False),
    ("803", "rule", "vneid_l2_activated_within_cccd", JAN): (5000, 1100, None, False),
    ("80", "rule", "vneid_l2_activated_within_cccd", JAN): (5000, 1100, None, False),
    ("27997", "rule", "essential_services_within_list", JAN): (26, 25, None, False),
}
VNEID = "vneid_l2_activated_within_cccd"


async def report(stack: Stack, facts: dict[tuple[str, str, str], tuple[int, int | None]]) -> None:
    """Reported values written straight into the read model: all the oracle reads are the reported ones."""
    for (unit, indicator, period), (num, den) in facts.items():
        await stack.execute("""INSERT INTO rollups (edition, unit, indicator, period, rep_num, rep_den, rep_seq)
                               VALUES ('legacy', $1, $2, $3, $4, $5, 1)
                               ON CONFLICT (edition, unit, indicator, period)
                               DO UPDATE SET rep_num = excluded.rep_num, rep_den = excluded.rep_den""",
                            unit, indicator, period, num, den)


async def plant(stack: Stack, unit: str, code: str, period: str, left: int, right: int) -> None:
    """A rule flag written behind the aggregator's back."""
    await stack.execute("""INSERT INTO quality_flags (edition, unit, kind, code, period, indicators, importance, status,
                                                      left_value, right_value)
                           VALUES ('legacy', $1, 'rule', $2, $3, ARRAY['cccd_issued'], 'high', 'open', $4, $5)""",
                        unit, code, period, left, right)


async def open_flags(stack: Stack) -> dict[tuple[str, str, str, str], tuple[object, ...]]:
    rows = await stack.fetch("""SELECT unit, kind, code, period, left_value, right_value, score, constant_history
                                FROM quality_flags WHERE status = 'open'""")
    return {(r[0], r[1], r[2], r[3]): tuple(r[4:]) for r in rows}


async def table(stack: Stack) -> list[dict[str, Any]]:
    """Every row and column of quality_flags, to show that nothing at all was written."""
    return [dict(r) for r in await stack.fetch("SELECT * FROM quality_flags ORDER BY id")]


def d06(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "shared.cli", "quality", *args], env=stack.env(), cwd=ROOT,
                          capture_output=True, text=True, timeout=300, check=False)


async def cli(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(d06, stack, *args)


@asynccontextmanager
async def engine_of(stack: Stack, role: str = "") -> AsyncIterator[AsyncEngine]:
    engine = act_as(make_engine(stack.database_url, pool_size=2, app="d06-rebuild-test"), role)
    try:
        yield engine
    finally:
        await engine.dispose()


async def differences(stack: Stack, hierarchy: Hierarchy, catalog: Catalog) -> list[str]:
    async with engine_of(stack) as engine, engine.connect() as conn:
        return [str(d) for d in await verify_quality(conn, hierarchy, catalog)]


def catalog_with(change: dict[str, dict[str, Any] | None], outliers_off: tuple[str, ...] = ()) -> Catalog:
    """The catalogue with rules changed (a rule code -> fields to set, None: the rule removed) and indicators'
    `outliers` switched off, as an operator would edit shared/indicators.yaml."""
    raw = yaml.safe_load(CATALOG_PATH.read_text(encoding="utf-8"))
    rules = []
    for rule in raw["rules"]:
        if rule["code"] in change:
            fields = change[rule["code"]]
            if fields is None:
                continue
            rule = {k: v for k, v in {**rule, **fields}.items() if v is not None}
        rules.append(rule)
    raw["rules"] = rules
    for indicator in raw["indicators"]:
        if indicator["code"] in outliers_off:
            indicator["outliers"] = False
    return parse_catalog(yaml.safe_dump(raw, allow_unicode=True))


async def test_rebuild_sets_right_what_the_aggregator_left_and_a_second_run_changes_nothing(
        stack: Stack, hierarchy: Hierarchy) -> None:
    # Applied with AGGREGATE_QUALITY off: the facts are there, no flag is.
    group = f"g-{uuid.uuid4().hex[:8]}"
    events = [event(k + 1, unit, num, den, period=period, indicator=indicator)
              for k, ((unit, indicator, period), (num, den)) in enumerate(FACTS.items())]
    async with aggregating(stack, group, quality=False):
        await caught_up(stack, group, await produce(stack, events))
    assert await open_flags(stack) == {}
    # Behind its back: a flag that should not be open, and one open with other values.
    await plant(stack, "27994", "cccd_issued_never_falls", "2023-06", 1, 2)
    await plant(stack, "27997", "essential_services_within_list", JAN, 27, 25)

    broken = await cli(stack, "verify")
    assert broken.returncode == 1 and len(broken.stdout.splitlines()) == 7, broken.stdout + broken.stderr

    rebuilt = await cli(stack, "rebuild")
    assert rebuilt.returncode == 0, rebuilt.stdout + rebuilt.stderr
    lines = rebuilt.stdout.splitlines()
    assert lines[-1] == "quality flags rebuilt: 5 opened, 1 updated, 1 resolved, 0 given their rule's new importance"
    assert "resolve legacy/27994 rule cccd_issued_never_falls 2023-06: stored=open left=1 right=2 recomputed=none" \
        in lines
    assert ("update legacy/27997 rule essential_services_within_list 2024-01: stored=open left=27 right=25 "
            "recomputed=open left=26 right=25") in lines
    assert "provinces" in rebuilt.stderr  # progress
    assert await open_flags(stack) == EXPECTED
    # Written as the aggregator writes them: the catalogue's importance, the indicators read.
    written = {(r["unit"], r["code"]): (r["importance"], r["indicators"]) for r in await stack.fetch(
        "SELECT unit, code, importance, indicators FROM quality_flags WHERE status = 'open'")}
    assert written[("803", VNEID)] == ("high", ["cccd_issued", "vneid_l2_activated"])
    assert written[("27991", "cccd_issued")] == ("medium", ["cccd_issued"])

    clean = await cli(stack, "verify")
    assert (clean.returncode, clean.stdout.strip()) == (0, "quality flags verified: no difference")

    before = await table(stack)
    again = await cli(stack, "rebuild")
    assert again.returncode == 0, again.stdout + again.stderr
    assert again.stdout.splitlines() == [
        "quality flags rebuilt: 0 opened, 0 updated, 0 resolved, 0 given their rule's new importance"]
    assert await table(stack) == before  # not a row touched: updated_at and acknowledgements as they were


async def test_dry_run_prints_the_changes_and_writes_nothing(stack: Stack, hierarchy: Hierarchy) -> None:
    await report(stack, FACTS)
    await plant(stack, "27994", "cccd_issued_never_falls", "2023-06", 1, 2)
    await plant(stack, "27997", "essential_services_within_list", JAN, 27, 25)
    before = await table(stack)

    dry = await cli(stack, "rebuild", "--dry-run", "--max-print", "2")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    lines = dry.stdout.splitlines()
    assert len(lines) == 3  # the first two changes, then the summary
    assert all(line.split(" ")[0] in ("open", "update", "resolve") for line in lines[:2])
    assert lines[-1] == ("dry run, nothing written: 5 flag(s) to open, 1 to update, 1 to resolve, "
                         "0 to give their rule's new importance")
    assert await table(stack) == before
    assert len(await differences(stack, hierarchy, load_catalog())) == 7


async def test_an_acknowledged_flag_stays_acknowledged_unless_its_values_changed(
        stack: Stack, hierarchy: Hierarchy) -> None:
    catalog = load_catalog()
    await report(stack, FACTS)
    async with engine_of(stack) as engine:
        await rebuild_quality(engine, hierarchy, catalog, write=True)
        await stack.execute("""UPDATE quality_flags SET acknowledged_by = 'reviewer', acknowledged_at = now(),
                                      acknowledged_comment = 'recounted' WHERE code = $1""", VNEID)
        # 27994's cards: the district's and province's sums now read 2,100 cards; the commune's own flag
        # reads the same 5,000 against 1,100 as before.
        await report(stack, {("27994", "cccd_issued", JAN): (1000, None)})
        rebuilt = await rebuild_quality(engine, hierarchy, catalog, write=True)
    assert sorted((d.change, d.key[1]) for d in rebuilt.changes) == [("update", "80"), ("update", "803")]
    rows = {r["unit"]: r for r in await stack.fetch(
        "SELECT * FROM quality_flags WHERE code = $1 AND period = $2", VNEID, JAN)}
    assert (rows["27991"]["acknowledged_by"], rows["27991"]["acknowledged_comment"]) == ("reviewer", "recounted")
    for unit in ("803", "80"):
        assert rows[unit]["status"] == "open"
        assert (rows[unit]["left_value"], rows[unit]["right_value"]) == (5000, 2100)
        assert (rows[unit]["acknowledged_by"], rows[unit]["acknowledged_at"], rows[unit]["acknowledged_comment"]) \
            == (None, None, None)
    assert await differences(stack, hierarchy, catalog) == []


async def test_rebuild_follows_a_changed_catalogue(stack: Stack, hierarchy: Hierarchy) -> None:
    await report(stack, FACTS)
    async with engine_of(stack) as engine:
        await rebuild_quality(engine, hierarchy, load_catalog(), write=True)
        await stack.execute("UPDATE quality_flags SET acknowledged_by = 'reviewer', acknowledged_at = now() "
                            "WHERE code = 'cccd_issued_never_falls'")
        # The list of 25 now bounds every level; the accounts-within-cards rule removed; cards not scored.
        changed = catalog_with({"essential_services_within_list": {"levels": None}, VNEID: None},
                               outliers_off=("cccd_issued",))
        stale = await differences(stack, hierarchy, changed)
        assert len(stale) == 6, stale
        rebuilt = await rebuild_quality(engine, hierarchy, changed, write=True)
        assert (rebuilt.count("open"), rebuilt.count("update"), rebuilt.count("resolve")) == (2, 0, 4)
        assert await differences(stack, hierarchy, changed) == []
        assert (await rebuild_quality(engine, hierarchy, changed, write=True)).changes == []
    assert await open_flags(stack) == {
        ("27991", "rule", "cccd_issued_never_falls", JAN): (1100, 2100, None, False),
        ("27997", "rule", "essential_services_within_list", JAN): (26, 25, None, False),
        ("803", "rule", "essential_services_within_list", JAN): (46, 25, None, False),
        ("80", "rule", "essential_services_within_list", JAN): (46, 25, None, False),
    }
    kept = await stack.fetch("SELECT acknowledged_by FROM quality_flags WHERE code = 'cccd_issued_never_falls'")
    assert [r["acknowledged_by"] for r in kept] == ["reviewer"]  # its values did not change
    resolved = await stack.fetch("SELECT status, resolved_at FROM quality_flags WHERE code = $1", VNEID)
    assert len(resolved) == 3 and all(r["status"] == "resolved" and r["resolved_at"] for r in resolved)


async def test_a_rule_whose_importance_changed_passes_it_on_and_acknowledgements_stand(
        stack: Stack, hierarchy: Hierarchy) -> None:
    await report(stack, FACTS)
    async with engine_of(stack) as engine:
        await rebuild_quality(engine, hierarchy, load_catalog(), write=True)
    await stack.execute("UPDATE quality_flags SET acknowledged_by = 'reviewer', acknowledged_at = now() "
                        "WHERE code = $1 AND unit = '27991'", VNEID)
    await stack.execute("UPDATE quality_flags SET status = 'resolved', resolved_at = now() "
                        "WHERE code = $1 AND unit = '80'", VNEID)
    changed = catalog_with({VNEID: {"importance": "low"}})
    # As the aggregator's own database role, as an operator runs it: what a batch may write is all it writes.
    async with engine_of(stack, AGGREGATE_ROLE) as engine:
        dry = await rebuild_quality(engine, hierarchy, changed, write=False)
        assert (dry.count("open"), dry.reranked) == (1, 3)  # 80's, resolved behind the aggregator's back
        assert {r["importance"] for r in await stack.fetch(
            "SELECT importance FROM quality_flags WHERE code = $1", VNEID)} == {"high"}
        rebuilt = await rebuild_quality(engine, hierarchy, changed, write=True)
        assert (rebuilt.count("open"), rebuilt.reranked) == (1, 2)  # re-opened with the new importance already
        again = await rebuild_quality(engine, hierarchy, changed, write=True)
        assert (again.changes, again.reranked) == ([], 0)
    rows = await stack.fetch("SELECT unit, importance, status, acknowledged_by FROM quality_flags WHERE code = $1",
                             VNEID)
    assert sorted(tuple(r) for r in rows) == [("27991", "low", "open", "reviewer"), ("80", "low", "open", None),
                                              ("803", "low", "open", None)]
    assert await differences(stack, hierarchy, changed) == []


async def test_rebuild_waits_for_the_province_lock_an_aggregator_batch_holds(
        stack: Stack, hierarchy: Hierarchy) -> None:
    await report(stack, FACTS)
    async with engine_of(stack) as engine:
        async with transaction(engine) as batch:
            # What an aggregator batch of Long An holds until it commits, and what it writes meanwhile: the
            # commune's accounts corrected to 500, which no rule finds fault with.
            await lock_writers(batch, "g", stack.events_topic, [0], ["legacy/80"])
            rebuilding = asyncio.create_task(rebuild_quality(engine, hierarchy, load_catalog(), write=True))

            async def waiting() -> bool:
                return bool(await stack.fetch(
                    "SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"))

            await eventually(waiting, what="the rebuild to wait for Long An's writer lock")
            assert not rebuilding.done()
            assert await open_flags(stack) == {}  # nothing of Long An written while the batch holds it
            await batch.execute(text("""UPDATE rollups SET rep_num = 500 WHERE edition = 'legacy' AND unit = '27991'
                                        AND indicator = 'vneid_l2_activated' AND period = :p"""), {"p": JAN})
        rebuilt = await rebuilding
    # The flags of the values as the batch left them, though the rebuild first read them before it.
    assert await open_flags(stack) == {k: v for k, v in EXPECTED.items() if k[2] != VNEID}
    assert rebuilt.count("open") == 3
    assert await differences(stack, hierarchy, load_catalog()) == []


async def test_rebuild_records_which_indicators_each_provinces_rows_hold(stack: Stack, hierarchy: Hierarchy) -> None:
    await report(stack, FACTS)  # behind the aggregators' back, as one of the release before 0012 writes them
    assert await stack.fetch("SELECT * FROM indicator_presence") == []
    async with engine_of(stack) as engine:
        await rebuild_quality(engine, hierarchy, load_catalog(), write=False)
        assert await stack.fetch("SELECT * FROM indicator_presence") == []  # a dry run writes nothing
        await rebuild_quality(engine, hierarchy, load_catalog(), write=True)
    rows = await stack.fetch("SELECT edition, province, indicator FROM indicator_presence")
    assert sorted(tuple(r) for r in rows) == [
        ("legacy", "80", "cccd_issued"), ("legacy", "80", "essential_services_online"),
        ("legacy", "80", "vneid_l2_activated")]
