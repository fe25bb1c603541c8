"""Rules and outliers through the real aggregator: flags written in the batch's transaction, resolved by a
correction, an acknowledgement undone by a later change, and `quality verify` clean after every step.

Figures (legacy Long An 80, Bến Lức 803 and its communes 27991, 27994, 27997):
  27991 cccd_issued climbs 1000 → 2100 by 100 a month through 2023, then 2024-01 says 1100 (14,100-style
  slip): it falls (rule, there and in the sums above it) and its increase leaves a constant history
  (outlier). Its level-2 accounts activated in 2024-01, 5000, exceed its cards (rule, at 27991 and at 803
  and 80, whose sums carry it).
  27994 and 27997 each answer for 20 of the 25 essential services: each commune keeps the rule, but their
  district and province, 40 of 25, break it.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid

from shared.catalog import load_catalog
from shared.db import make_engine
from shared.hierarchy import Hierarchy
from shared.periods import ordinal, shift
from shared.quality_flags import FlagKey
from shared.quality_verify import verify_quality
from tests.fixtures.aggregator import (
    aggregating,
    caught_up,
    event,
    merge,
    no_differences,
    produce,
    record_in_outbox,
)
from tests.fixtures.infra import ROOT, Stack

JAN = "2024-01"


async def open_flags(stack: Stack) -> dict[FlagKey, tuple[object, ...]]:
    rows = await stack.fetch("""SELECT edition, unit, kind, code, period, left_value, right_value, score,
                                       constant_history, acknowledged_by FROM quality_flags WHERE status = 'open'""")
    return {(r[0], r[1], r[2], r[3], r[4]): tuple(r[5:]) for r in rows}


async def quality_verified(stack: Stack, hierarchy: Hierarchy) -> None:
    """`d06 quality verify`'s check: every open flag, and only those, recomputed from the facts."""
    engine = make_engine(stack.database_url, pool_size=1)
    try:
        async with engine.connect() as conn:
            assert [str(d) for d in await verify_quality(conn, hierarchy, load_catalog())] == []
    finally:
        await engine.dispose()


async def test_flags_open_resolve_and_reopen_as_values_arrive(stack: Stack, hierarchy: Hierarchy) -> None:
    group = f"g-{uuid.uuid4().hex[:8]}"
    months = [shift("2023-01", k) for k in range(12)]
    first = [event(k + 1, "27991", 1000 + 100 * k, period=p) for k, p in enumerate(months)]
    first += [
        event(20, "27991", 1100, period=JAN),
        event(21, "27991", 5000, period=JAN, indicator="vneid_l2_activated"),
        event(22, "27994", 10, 20, period=JAN, indicator="essential_services_online"),
        event(23, "27997", 12, 26, period=JAN, indicator="essential_services_online"),
    ]
    later = [event(30, "27991", 2200, period=JAN), event(31, "27991", 7, period=JAN, indicator="dossiers_received"),
             event(32, "27991", None, period=JAN, indicator="vneid_l2_activated")]
    await record_in_outbox(stack, first + later)
    async with aggregating(stack, group, quality=True):
        ends = await produce(stack, first)
        await caught_up(stack, group, ends)
        flags = await open_flags(stack)
        assert flags == {
            # communes only: a district's total also falls when a commune misses a month
            ("legacy", "27991", "rule", "cccd_issued_never_falls", JAN): (1100, 2100, None, False, None),
            ("legacy", "27991", "outlier", "cccd_issued", JAN): (-1000, 100, None, True, None),
            ("legacy", "27991", "rule", "vneid_l2_activated_within_cccd", JAN): (5000, 1100, None, False, None),
            ("legacy", "803", "rule", "vneid_l2_activated_within_cccd", JAN): (5000, 1100, None, False, None),
            ("legacy", "80", "rule", "vneid_l2_activated_within_cccd", JAN): (5000, 1100, None, False, None),
            # a commune's own list only: its district's computed 46 sums two lists
            ("legacy", "27997", "rule", "essential_services_within_list", JAN): (26, 25, None, False, None),
        }
        await quality_verified(stack, hierarchy)

        # A reviewer checks the commune's accounts (ingest will write this; here the columns it writes).
        vneid: FlagKey = ("legacy", "27991", "rule", "vneid_l2_activated_within_cccd", JAN)
        await stack.execute("""UPDATE quality_flags SET acknowledged_by = 'reviewer', acknowledged_at = now(),
                                      acknowledged_comment = 'recounted' WHERE unit = '27991' AND code = $1""",
                            vneid[3])
        # The card figure corrected: the fall and the outlier resolve; the accounts still exceed the cards,
        # with new values, so the acknowledgement no longer stands.
        ends = merge(ends, await produce(stack, [later[0]]))
        await caught_up(stack, group, ends)
        flags = await open_flags(stack)
        assert not [k for k in flags if k[3] == "cccd_issued_never_falls"]  # at every level
        assert ("legacy", "27991", "outlier", "cccd_issued", JAN) not in flags
        assert flags[vneid] == (5000, 2200, None, False, None)
        resolved = await stack.fetch("""SELECT resolved_at, opened_at FROM quality_flags
                                        WHERE unit = '27991' AND code = 'cccd_issued_never_falls'""")
        assert resolved[0]["resolved_at"] >= resolved[0]["opened_at"]  # kept, with its time

        await stack.execute("""UPDATE quality_flags SET acknowledged_by = 'reviewer', acknowledged_at = now()
                               WHERE unit = '27991' AND code = $1""", vneid[3])
        # A change elsewhere in the unit leaves the acknowledged flag as it was.
        ends = merge(ends, await produce(stack, [later[1]]))
        await caught_up(stack, group, ends)
        assert (await open_flags(stack))[vneid][-1] == "reviewer"
        # The accounts retracted: nothing left to check there, and nothing up the tree either.
        ends = merge(ends, await produce(stack, [later[2]]))
        await caught_up(stack, group, ends)
        flags = await open_flags(stack)
        assert not [k for k in flags if k[3] == "vneid_l2_activated_within_cccd"]
    await quality_verified(stack, hierarchy)
    await no_differences(stack, hierarchy)

    # The command an operator runs: clean, then one corrupted flag named with both values.
    clean = await asyncio.to_thread(_quality_verify, stack)
    assert (clean.returncode, clean.stdout.strip()) == (0, "quality flags verified: no difference")
    await stack.execute("UPDATE quality_flags SET left_value = 27 WHERE unit = '27997' AND code = $1",
                        "essential_services_within_list")
    broken = await asyncio.to_thread(_quality_verify, stack)
    assert broken.returncode == 1, broken.stdout + broken.stderr
    assert broken.stdout.splitlines() == [
        "legacy/27997 rule essential_services_within_list 2024-01: stored=open left=27 right=25 "
        "recomputed=open left=26 right=25"]


def _quality_verify(stack: Stack) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "shared.cli", "quality", "verify"], env=stack.env(), cwd=ROOT,
                          capture_output=True, text=True, timeout=180, check=False)


async def test_without_quality_the_aggregator_writes_no_flags(stack: Stack, hierarchy: Hierarchy) -> None:
    from services.aggregate.app import create_app
    from shared.settings import AggregateSettings

    group = f"g-{uuid.uuid4().hex[:8]}"
    settings = stack.settings(AggregateSettings, consumer_group=group, quality=False)
    app = create_app(settings)
    events = [event(1, "27991", 5000, period=JAN, indicator="vneid_l2_activated"), event(2, "27991", 10, period=JAN)]
    await record_in_outbox(stack, events)
    async with app.router.lifespan_context(app):
        ends = await produce(stack, events)
        await caught_up(stack, group, ends)
    assert await open_flags(stack) == {}
    await no_differences(stack, hierarchy)


async def test_a_rule_reads_what_an_earlier_batch_wrote_even_one_applied_without_quality(
        stack: Stack, hierarchy: Hierarchy) -> None:
    # The accounts arrive while rules are off; the cards, later, with rules on: the rule at the commune, its
    # district and its province reads the accounts from the read model. That is only asked for where the
    # province is known to hold the indicator (shared/indicator_presence.py), which the first batch recorded.
    before = await stack.fetch("SELECT indicator FROM indicator_presence WHERE province = '80'")
    assert before == []
    accounts = [event(1, "27991", 5000, period=JAN, indicator="vneid_l2_activated")]
    cards = [event(2, "27991", 1100, period=JAN)]
    await record_in_outbox(stack, accounts + cards)
    group = f"g-{uuid.uuid4().hex[:8]}"
    async with aggregating(stack, group, quality=False):
        await caught_up(stack, group, await produce(stack, accounts))
    assert {r["indicator"] for r in await stack.fetch(
        "SELECT indicator FROM indicator_presence WHERE edition = 'legacy' AND province = '80'")} \
        == {"vneid_l2_activated"}
    async with aggregating(stack, group, quality=True):
        await caught_up(stack, group, await produce(stack, cards))
    assert await open_flags(stack) == {
        ("legacy", unit, "rule", "vneid_l2_activated_within_cccd", JAN): (5000, 1100, None, False, None)
        for unit in ("27991", "803", "80")}
    await quality_verified(stack, hierarchy)


async def test_histories_are_read_to_their_periods_whole_as_ints_and_a_fraction_exactly(stack: Stack) -> None:
    from decimal import Decimal

    from services.aggregate.quality import OutlierTarget
    from services.aggregate.quality_repository import load_histories

    stored = {("27991", "2023-01"): 10, ("27991", "2023-02"): 12, ("27991", "2023-04"): 7,  # March missing
              ("27994", "2023-01"): Decimal("12.5"), ("27994", "2023-02"): 3}
    for (unit, period), value in stored.items():
        await stack.execute("""INSERT INTO rollups (edition, unit, indicator, period, rep_num, rep_seq)
                               VALUES ('legacy', $1, 'dossiers_received', $2, $3, 1)""", unit, period, value)
    target = OutlierTarget(frozenset({"2023-04"}), "2022-12", "2024-04", "2024-04")
    engine = make_engine(stack.database_url, pool_size=1)
    try:
        async with engine.connect() as conn:
            read = await load_histories(conn, {("legacy", unit, "dossiers_received"): target
                                               for unit in ("27991", "27994", "27997")})
    finally:
        await engine.dispose()
    first = ordinal("2023-01")
    gap, fraction = read[("legacy", "27991", "dossiers_received")], read[("legacy", "27994", "dossiers_received")]
    assert (gap.first, gap.values) == (first, [10, 12, None, 7])
    assert all(type(v) is int for v in gap.values if v is not None)
    assert (fraction.first, fraction.values) == (first, [Decimal("12.5"), Decimal(3)])
    assert ("legacy", "27997", "dossiers_received") not in read  # nothing stored


async def test_histories_of_different_stretches_are_each_read_to_their_own(stack: Stack) -> None:
    """Series whose changes span different periods are read in different groups, and a unit's series that
    read different stretches in different groups: each series is read to its own stretch, and no other."""
    from services.aggregate.quality import OutlierTarget
    from services.aggregate.quality_repository import load_histories

    for unit in ("27991", "27994"):
        for indicator in ("dossiers_received", "directives_issued"):
            for month in range(1, 13):
                await stack.execute("""INSERT INTO rollups (edition, unit, indicator, period, rep_num, rep_seq)
                                       VALUES ('legacy', $1, $2, $3, $4, 1)""",
                                    unit, indicator, f"2023-{month:02}", month)
    wide = OutlierTarget(frozenset({"2023-06"}), "2023-02", "2023-10", "2023-10")
    narrow = OutlierTarget(frozenset({"2023-11"}), "2023-11", "2023-12", "2023-12")
    targets = {("legacy", "27994", "dossiers_received"): narrow,
               ("legacy", "27991", "dossiers_received"): wide, ("legacy", "27994", "directives_issued"): wide}
    engine = make_engine(stack.database_url, pool_size=1)
    try:
        async with engine.connect() as conn:
            read = await load_histories(conn, targets)
    finally:
        await engine.dispose()
    assert {series: (s.first, s.values) for series, s in read.items()} == {
        ("legacy", "27991", "dossiers_received"): (ordinal("2023-02"), list(range(2, 11))),
        ("legacy", "27994", "directives_issued"): (ordinal("2023-02"), list(range(2, 11))),
        ("legacy", "27994", "dossiers_received"): (ordinal("2023-11"), [11, 12]),
    }
