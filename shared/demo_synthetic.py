"""A SYNTHETIC national dataset for the demo (`make run`): invented figures, said so on every row.

The catalogue's required indicators (DESIGN §2) for every legacy commune from 2024-01 to 2025-06 and every
2025 commune from 2025-07 to the current month, as CSV files in the import's columns (DESIGN §9), one per
month. Every commune follows its own trend towards the targets (chip ID cards towards full coverage, online
dossiers upwards); a 2025 commune continues the trend of the legacy communes it was formed from, so the
series runs on across the reform. There are gaps (a commune silent for a month, a few for a season), a few
districts that report their own figure beside their communes' sum, and a few planted quality problems
(level-2 accounts above the cards issued, a stock that falls, a month's dossiers twelve times the usual),
each named in its row's comment. Deterministic: the same seed gives the same files on every machine.
"""

from __future__ import annotations

import csv
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from shared.crosswalk import read_crosswalk
from shared.hierarchy import Unit, read_dataset

SEED = 6
FIRST_MONTH = (2024, 1)
REFORM_INDEX = 18  # 2025-07, months after 2024-01
REFORM_MONTH = "2025-07"
COMMENT = "synthetic"
COLUMNS = ("unit", "indicator", "period", "value", "numerator", "denominator", "edition", "event_id", "comment")
GAP_RATE = 0.03  # a commune-month with no report at all
OVERRIDE_DISTRICTS = 6  # legacy districts that report their own cccd_issued beside their communes' sum
PLANTED = 12  # communes with one planted quality problem
PROBLEMS = ("l2_above_issued", "issued_fell", "dossiers_spike")


@dataclass(frozen=True, slots=True)
class Profile:
    """A commune's invented trajectory; t counts months from 2024-01."""

    eligible: float  # residents who must hold a chip ID card
    coverage0: float
    coverage_rate: float
    l2_start: float
    l2_goal: float
    l2_rate: float
    dossiers: float  # a month's dossiers, before the season and the noise
    online0: float
    services0: float  # essential services online of 25 in 2024-01
    group_month: int  # working group formed from this month (negative: before 2024)
    quiet_from: int  # three silent months from here (beyond the data: never)

    def coverage(self, t: int) -> float:
        return min(0.995, 1 - (1 - self.coverage0) * math.exp(-self.coverage_rate * t))

    def l2(self, t: int) -> float:
        return self.l2_goal - (self.l2_goal - self.l2_start) * math.exp(-self.l2_rate * t)

    def online(self, t: int) -> float:
        return 0.92 - (0.92 - self.online0) * math.exp(-0.06 * t)


def profile(code: str, ward: bool) -> Profile:
    rng = random.Random(f"{SEED}:{code}")
    laggard = rng.random() < 0.06
    eligible = rng.lognormvariate(math.log(11_000 if ward else 7_500), 0.45)
    return Profile(
        eligible=eligible,
        coverage0=rng.uniform(0.55, 0.7) if laggard else rng.uniform(0.8, 0.95),
        coverage_rate=rng.uniform(0.005, 0.02) if laggard else rng.uniform(0.03, 0.09),
        l2_start=rng.uniform(0.2, 0.45),
        l2_goal=rng.uniform(0.7, 0.9),
        l2_rate=rng.uniform(0.04, 0.1),
        dossiers=eligible * rng.uniform(0.01, 0.035),
        online0=rng.uniform(0.2, 0.55),
        services0=rng.randint(13, 21),
        group_month=rng.choice((-12, -6, -3, 2, 5, 9)) if rng.random() < 0.3 else -24,
        quiet_from=rng.randrange(0, 34) if rng.random() < 0.02 else 999,
    )


def merged(parts: list[tuple[Profile, float]]) -> Profile:
    """A 2025 commune's profile from its legacy sources (profile, crosswalk weight): amounts add up, shares
    are averaged by eligible residents, so its trend continues theirs."""
    mass = [(p, w * p.eligible) for p, w in parts]
    total = sum(m for _, m in mass) or 1.0

    def mean(field: str) -> float:
        return float(sum(getattr(p, field) * m for p, m in mass)) / total

    return Profile(
        eligible=sum(p.eligible * w for p, w in parts), coverage0=mean("coverage0"),
        coverage_rate=mean("coverage_rate"), l2_start=mean("l2_start"), l2_goal=mean("l2_goal"),
        l2_rate=mean("l2_rate"), dossiers=sum(p.dossiers * w for p, w in parts), online0=mean("online0"),
        services0=round(mean("services0")), group_month=min(p.group_month for p, _ in parts), quiet_from=999,
    )


@dataclass(frozen=True, slots=True)
class Nation:
    legacy: dict[str, Profile]  # legacy communes
    new: dict[str, Profile]  # 2025 communes
    district_of: dict[str, str]  # legacy commune -> district
    overrides: dict[str, float]  # legacy district -> the factor of its own report over its communes' sum
    planted: dict[str, tuple[str, int]]  # commune -> (problem, month index)


def nation() -> Nation:
    units = read_dataset()
    communes = [u for u in units if u.level == "commune"]
    legacy = {u.code: profile(u.code, _ward(u)) for u in communes if u.edition == "legacy"}
    sources: dict[str, list[tuple[Profile, float]]] = {}
    for link in read_crosswalk().links:
        if link.legacy_level == "commune" and link.legacy_code in legacy:
            sources.setdefault(link.code_2025, []).append((legacy[link.legacy_code], float(link.weight)))
    new = {
        u.code: merged(sources[u.code]) if u.code in sources else profile(u.code, _ward(u))
        for u in communes if u.edition == "2025"
    }
    rng = random.Random(SEED)
    districts = sorted({u.code for u in units if u.edition == "legacy" and u.level == "district"} - {"803"})
    overrides = {d: rng.uniform(1.01, 1.06) for d in ["803", *rng.sample(districts, OVERRIDE_DISTRICTS - 1)]}
    planted = {code: (rng.choice(PROBLEMS), rng.randrange(2, REFORM_INDEX))
               for code in rng.sample(sorted(legacy), PLANTED // 2)}
    planted |= {code: (rng.choice(PROBLEMS), rng.randrange(REFORM_INDEX + 2, REFORM_INDEX + 6))
                for code in rng.sample(sorted(new), PLANTED // 2)}
    district_of = {u.code: u.parent_code or "" for u in communes if u.edition == "legacy"}
    return Nation(legacy, new, district_of, overrides, planted)


def _ward(unit: Unit) -> bool:
    return unit.kind.startswith("Phường")


def months(today: date) -> list[str]:
    """2024-01 to the current month."""
    year, month = FIRST_MONTH
    out = []
    while (year, month) <= (today.year, today.month):
        out.append(f"{year}-{month:02d}")
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return out


def _index(period: str) -> int:
    year, month = map(int, period.split("-"))
    return (year - FIRST_MONTH[0]) * 12 + month - FIRST_MONTH[1]


Row = tuple[str, ...]


def rows(data: Nation, period: str) -> Iterator[Row]:
    """Every row of one month: the legacy edition's before the reform, the 2025 edition's from it."""
    t = _index(period)
    edition, profiles = ("legacy", data.legacy) if t < REFORM_INDEX else ("2025", data.new)
    issued_by_district: dict[str, int] = {}
    for code, p in profiles.items():
        for row in _commune(code, p, t, period, edition, data.planted.get(code)):
            if row[1] == "cccd_issued" and edition == "legacy" and data.district_of[code] in data.overrides:
                district = data.district_of[code]
                issued_by_district[district] = issued_by_district.get(district, 0) + int(row[3])
            yield row
    for district, total in sorted(issued_by_district.items()):
        own = round(total * data.overrides[district])
        yield _row(district, "cccd_issued", period, edition, value=own, note="the district's own report")


def _row(code: str, indicator: str, period: str, edition: str, *, value: object = "", numerator: object = "",
         denominator: object = "", note: str = "") -> Row:
    comment = f"{COMMENT}; {note}" if note else COMMENT
    event_id = f"syn-{edition}-{code}-{indicator}-{period}"
    return (code, indicator, period, str(value), str(numerator), str(denominator), edition, event_id, comment)


def _commune(code: str, p: Profile, t: int, period: str, edition: str, problem: tuple[str, int] | None) -> list[Row]:
    rng = random.Random(f"{SEED}:{code}:{t}")
    if rng.random() < GAP_RATE or p.quiet_from <= t < p.quiet_from + 3:
        return []
    eligible = round(p.eligible)
    issued = round(p.eligible * p.coverage(t))
    l2 = min(issued, round(p.eligible * p.l2(t)))
    season = 1 + 0.15 * math.sin(2 * math.pi * (t % 12) / 12)
    dossiers = max(1, round(p.dossiers * season * rng.uniform(0.85, 1.15)))
    planted = problem[0] if problem and problem[1] == t else None
    note = f"planted quality problem: {planted}" if planted else ""
    if planted == "l2_above_issued":
        l2 = round(issued * 1.08)
    elif planted == "issued_fell":
        issued = round(issued * 0.7)
    elif planted == "dossiers_spike":
        dossiers *= 12
    online = round(dossiers * min(0.99, p.online(t) * rng.uniform(0.95, 1.05)))
    services = min(25, int(p.services0) + t // 3)

    def row(indicator: str, **fields: object) -> Row:
        return _row(code, indicator, period, edition, note=note, **fields)

    out = [
        row("cccd_issued", value=issued),
        row("cccd_coverage", numerator=issued, denominator=eligible),
        row("vneid_l2_activated", value=l2),
        row("dossiers_received", value=dossiers),
        row("online_dossier_rate", numerator=online, denominator=dossiers),
        row("essential_services_online", numerator=services, denominator=25),
        row("working_group_formed", value="true" if t >= p.group_month else "false"),
    ]
    if rng.random() < 0.25:
        out.append(row("directives_issued", value=rng.randint(1, 3)))
    return out


def write_month(data: Nation, directory: Path, period: str) -> tuple[Path, int]:
    """`directory/synthetic-<period>.csv` and its number of rows; the same seed writes the same file."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"synthetic-{period}.csv"
    partial = path.with_suffix(".part")
    with partial.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(COLUMNS)
        count = 0
        for count, row in enumerate(rows(data, period), 1):  # noqa: B007 - the count is the last index
            writer.writerow(row)
    partial.replace(path)
    return path, count
