"""The 2025 crosswalk in PostgreSQL, through the `d06` command line: stored with the reference data, weights
replaced from a file (all or nothing, every bad line listed, announced), a unit's lineage read back."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections import defaultdict
from decimal import Decimal
from pathlib import Path

import asyncpg

from shared.db import plain_url
from shared.events import CROSSWALK_CHANGED
from shared.hierarchy import read_dataset
from tests.fixtures.infra import Stack


async def d06(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "shared.cli", *args], env=stack.env(), capture_output=True,
        text=True, timeout=300, check=False,
    )


async def weights(stack: Stack) -> dict[tuple[str, str], tuple[Decimal, str]]:
    rows = await stack.fetch("SELECT legacy_code, code_2025, weight, basis FROM crosswalk")
    return {(r["legacy_code"], r["code_2025"]): (r["weight"], r["basis"]) for r in rows}


async def test_the_crosswalk_is_stored_with_the_reference_data(stack: Stack) -> None:
    stored = await weights(stack)
    units = read_dataset()
    legacy_below_district = {u.code for u in units if u.edition == "legacy" and u.level == "commune"} | {
        "318", "471", "498", "536", "755"  # the island districts without communes
    }
    communes_2025 = {u.code for u in units if u.edition == "2025" and u.level == "commune"}
    legacy_provinces = {u.code for u in units if u.edition == "legacy" and u.level == "province"}
    provinces_2025 = {u.code for u in units if u.edition == "2025" and u.level == "province"}

    into: dict[str, set[str]] = defaultdict(set)
    totals: dict[str, Decimal] = defaultdict(Decimal)
    for (legacy, new), (weight, _) in stored.items():
        into[legacy].add(new)
        totals[legacy] += weight
    assert set(into) == legacy_below_district | legacy_provinces
    assert {new for legacy in legacy_below_district for new in into[legacy]} == communes_2025
    assert {new for legacy in legacy_provinces for new in into[legacy]} == provinces_2025
    assert all(len(into[p]) == 1 for p in legacy_provinces)  # no province divided
    assert set(totals.values()) == {Decimal(1)}  # exactly, not within a tolerance
    divided = {legacy for legacy in legacy_below_district if len(into[legacy]) > 1}
    assert len(divided) == 471
    whole = legacy_below_district - divided
    assert len(whole) == 9_569
    assert len({new for legacy in whole for new in into[legacy]}) == 3_282
    levels = await stack.fetch("SELECT legacy_code FROM crosswalk WHERE legacy_level = 'district'")
    assert {r["legacy_code"] for r in levels} == {"318", "471", "498", "536", "755"}


async def test_hierarchy_load_prints_its_counts_and_keeps_loaded_weights(stack: Stack, tmp_path: Path) -> None:
    good = tmp_path / "weights.csv"
    good.write_text("legacy_code,code_2025,weight,basis\n00007,00008,0.8,population\n00007,00025,0.2,population\n")
    assert (await d06(stack, "crosswalk", "weights", str(good))).returncode == 0

    load = await d06(stack, "hierarchy", "load")
    assert load.returncode == 0, load.stderr
    for figure in ("9,569 legacy units went whole into 3,282 2025 communes", "471 legacy communes were divided",
                   "3,321 2025 communes reached", "63 legacy provinces went whole into 34 2025 provinces",
                   "0 legacy unit(s) written afresh, 1 keep weights"):
        assert figure in load.stdout
    stored = await weights(stack)
    assert stored["00007", "00008"] == (Decimal("0.8"), "population")


async def test_a_good_weights_file_replaces_the_weights_and_is_announced(stack: Stack, tmp_path: Path) -> None:
    before = await weights(stack)
    good = tmp_path / "weights.csv"
    # As a spreadsheet saves it: a byte-order mark, CRLF, a blank line; a third rounded within the tolerance.
    good.write_bytes(
        "\ufefflegacy_code,code_2025,weight,basis\r\n"
        "00025,00008,0.5,population\r\n00025,00025,0.3,population\r\n00025,00199,0.2,population\r\n\r\n"
        "00007,00008,0.3333333,area\r\n00007,00025,0.6666666,area\r\n".encode()
    )
    listener = await asyncpg.connect(plain_url(stack.database_url))
    heard: asyncio.Queue[str] = asyncio.Queue()
    await listener.add_listener(CROSSWALK_CHANGED, lambda *args: heard.put_nowait(args[3]))
    try:
        result = await d06(stack, "crosswalk", "weights", str(good))
        assert result.returncode == 0, result.stderr
        assert "weights of 2 legacy unit(s) replaced: 5 row(s) changed" in result.stdout
        assert await asyncio.wait_for(heard.get(), timeout=30) == "UPDATE"
    finally:
        await listener.close()

    after = await weights(stack)
    assert after["00025", "00008"] == (Decimal("0.5"), "population")
    assert after["00025", "00199"] == (Decimal("0.2"), "population")
    assert after["00007", "00008"][1] == "area"
    assert after["00007", "00008"][0] + after["00007", "00025"][0] == 1  # stored exactly
    assert after["00007", "00025"][0] == Decimal("0.6666667")  # the largest piece took the remainder
    unchanged = {k: v for k, v in after.items() if k[0] not in {"00025", "00007"}}
    assert unchanged == {k: v for k, v in before.items() if k[0] not in {"00025", "00007"}}


async def test_a_bad_weights_file_lists_every_bad_line_and_changes_nothing(stack: Stack, tmp_path: Path) -> None:
    before = await weights(stack)
    bad = tmp_path / "weights.csv"
    bad.write_text(
        "legacy_code,code_2025,weight,basis\n"
        "00025,00008,0.5,population\n"  # 2: fine
        "00025,00025,0.3,population\n"  # 3: fine
        "00025,00199,0.2,population\n"  # 4: fine
        "00007,00008,0.6,population\n"  # 5: 00007 sums to 1.1
        "00007,00025,0.5,population\n"  # 6: 00007 sums to 1.1
        "00001,00199,1,population\n"  # 7: Phúc Xá did not go into 00199
        "99999,00008,1,population\n"  # 8: no such legacy unit
        "00016,99999,0.5,population\n"  # 9: no such 2025 unit
        "00016,00004,0.5\n"  # 10: malformed
        "00022,00004,half,population\n"  # 11: not a number
        "80,80,1,population\n"  # 12: a province has no weights to set
    )
    result = await d06(stack, "crosswalk", "weights", str(bad))
    assert result.returncode == 1
    reported = {int(line.split(":")[1].removeprefix("line ")) for line in result.stderr.splitlines()
                if line.startswith(f"{bad}:line ")}
    assert reported == {5, 6, 7, 8, 9, 10, 11, 12}
    assert "sum to 1.1, not 1" in result.stderr
    assert "00001 -> 00199 is not in the crosswalk" in result.stderr
    assert "no legacy unit 99999" in result.stderr
    assert "no 2025 unit 99999" in result.stderr
    assert "nothing changed" in result.stderr
    assert await weights(stack) == before


async def test_no_transaction_leaves_weights_that_do_not_sum_to_one(stack: Stack) -> None:
    conn = await asyncpg.connect(plain_url(stack.database_url))
    try:
        try:
            await conn.execute("UPDATE crosswalk SET weight = 0.4 WHERE legacy_code = '00007' AND code_2025 = '00008'")
        except asyncpg.CheckViolationError as exc:
            assert "00007" in str(exc)
        else:
            raise AssertionError("a crosswalk summing to 0.9 was committed")
    finally:
        await conn.close()


async def test_show_prints_the_lineage_of_tay_ninh_both_ways(stack: Stack) -> None:
    result = await d06(stack, "crosswalk", "show", "80")
    assert result.returncode == 0, result.stderr
    assert "Tỉnh Tây Ninh (2025 province 80) was formed from:" in result.stdout
    rows = {line.split()[0]: line for line in result.stdout.splitlines()[2:] if not line.startswith("  (")}
    assert set(rows) == {"72", "80"}
    assert "Tỉnh Long An" in rows["80"] and "Tỉnh Tây Ninh" in rows["72"]
    assert all(line.split()[-2:] == ["1", "whole"] for line in rows.values())

    legacy = await d06(stack, "crosswalk", "show", "80", "--edition", "legacy")
    assert "Tỉnh Long An (legacy province 80) went into:" in legacy.stdout
    assert "Tỉnh Tây Ninh" in legacy.stdout

    divided = await d06(stack, "crosswalk", "show", "00025", "--edition", "legacy")
    assert [line.split()[-2:] for line in divided.stdout.splitlines()[2:5]] == [["0.3333333334", "equal"]] + [
        ["0.3333333333", "equal"]] * 2

    missing = await d06(stack, "crosswalk", "show", "99999")
    assert missing.returncode == 1
    assert "no unit 99999 in edition 2025" in missing.stderr
