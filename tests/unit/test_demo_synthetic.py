"""The synthetic demo dataset: what a reader of the portal or of the CSV must be able to rely on."""

from __future__ import annotations

from datetime import date

import pytest

from shared import demo_synthetic
from shared.catalog import load_catalog
from shared.hierarchy import read_dataset

REQUIRED = {"cccd_issued", "cccd_coverage", "vneid_l2_activated", "dossiers_received", "online_dossier_rate",
            "essential_services_online", "working_group_formed", "directives_issued"}


@pytest.fixture(scope="module")
def nation() -> demo_synthetic.Nation:
    return demo_synthetic.nation()


def _rows(nation: demo_synthetic.Nation, period: str) -> list[dict[str, str]]:
    return [dict(zip(demo_synthetic.COLUMNS, row, strict=True)) for row in demo_synthetic.rows(nation, period)]


def test_the_months_run_from_january_2024_to_the_current_one() -> None:
    months = demo_synthetic.months(date(2026, 12, 2))
    assert (months[0], months[17], months[18], months[-1], len(months)) == ("2024-01", "2025-06", "2025-07",
                                                                            "2026-12", 36)


def test_each_month_covers_its_edition_s_communes_with_the_required_indicators(
    nation: demo_synthetic.Nation,
) -> None:
    units = read_dataset()
    for period, edition in (("2025-06", "legacy"), ("2025-07", "2025")):
        rows = _rows(nation, period)
        assert {r["edition"] for r in rows} == {edition} and {r["period"] for r in rows} == {period}
        assert all(r["comment"].startswith("synthetic") for r in rows)
        assert {r["indicator"] for r in rows} == REQUIRED
        communes = {u.code for u in units if u.edition == edition and u.level == "commune"}
        reporting = {r["unit"] for r in rows if r["indicator"] == "cccd_issued"} & communes
        assert 0.9 * len(communes) < len(reporting) < len(communes), "most communes report, a few are silent"
        assert len({r["event_id"] for r in rows}) == len(rows)


def test_the_same_seed_gives_the_same_rows(nation: demo_synthetic.Nation) -> None:
    assert _rows(nation, "2024-03") == _rows(demo_synthetic.nation(), "2024-03")


def test_values_are_plausible_and_the_planted_problems_say_so(nation: demo_synthetic.Nation) -> None:
    targets = {i.code: i.target for i in load_catalog()}
    planted = 0
    for period in ("2024-06", "2024-07", "2026-01"):
        for r in _rows(nation, period):
            if "planted" in r["comment"]:
                planted += 1
                continue
            if r["indicator"] == "cccd_coverage":
                assert 0 < int(r["numerator"]) <= int(r["denominator"])
                assert 100 * int(r["numerator"]) / int(r["denominator"]) <= (targets["cccd_coverage"] or 100)
            if r["indicator"] == "essential_services_online":
                assert int(r["numerator"]) <= int(r["denominator"]) == 25
    assert planted, "a few rows carry a planted quality problem, named in their comment"


def test_a_few_districts_report_their_own_figure_beside_their_communes(nation: demo_synthetic.Nation) -> None:
    own = {r["unit"] for r in _rows(nation, "2024-07") if "district's own report" in r["comment"]}
    assert "803" in own and len(own) == demo_synthetic.OVERRIDE_DISTRICTS
