"""The 2025 crosswalk: which legacy units each 2025 unit was formed from, with weights (DESIGN §7).

Read from `vietnamadminunits`' `data/converter_2025.json`, whose keys are name slugs (the `provinceKey`,
`districtKey` and `wardKey` columns of `data/dataset.db`, joined by `_` for a legacy commune), resolved here
to GSO codes through `dataset.db`. Pure: no database of ours, no network.

Weights are exact decimals with WEIGHT_PLACES places, settled so that the pieces of one legacy unit sum to
exactly 1 (the largest piece takes the remainder of the rounding): a third is stored 0.3333333334 once and
0.3333333333 twice, never three times 0.3333333333.
"""

from __future__ import annotations

import json
import sqlite3
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

K = TypeVar("K")
V = TypeVar("V")

WEIGHT_PLACES = 10
_QUANTUM = Decimal(1).scaleb(-WEIGHT_PLACES)

WHOLE = "whole"  # went whole into one 2025 unit: weight 1
EQUAL = "equal"  # divided, nothing better known: equal shares


class CrosswalkError(ValueError):
    """The converter data cannot be turned into a crosswalk d06 can trust; the message lists every problem."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        shown = "\n  ".join(self.problems[:50])
        more = f"\n  … and {len(self.problems) - 50} more" if len(self.problems) > 50 else ""
        super().__init__(f"the 2025 crosswalk cannot be built ({len(self.problems)} problem(s)):\n  {shown}{more}")


@dataclass(frozen=True, slots=True)
class Link:
    """A legacy unit (`legacy_level`: province, district or commune) and a 2025 unit it (partly) went into.

    A legacy province goes into a 2025 province; a legacy commune, or one of the island districts that have
    no communes in the legacy edition, into a 2025 commune (or special zone)."""

    legacy_code: str
    legacy_level: str
    code_2025: str
    weight: Decimal
    basis: str


@dataclass(frozen=True, slots=True)
class Counts:
    whole_sources: int  # legacy communes (and island districts) that went whole into one 2025 commune
    whole_targets: int  # the 2025 communes made only of whole legacy units
    island_districts: int  # of whole_sources: legacy districts without communes
    divided_sources: int  # legacy communes divided between several 2025 communes
    divided_pieces: int
    targets_reached: int  # 2025 communes with at least one source
    legacy_provinces: int
    provinces_2025: int

    def lines(self) -> list[str]:
        return [
            f"{self.whole_sources:,} legacy units went whole into {self.whole_targets:,} 2025 communes "
            f"({self.whole_sources - self.island_districts:,} communes and {self.island_districts} island districts)",
            f"{self.divided_sources:,} legacy communes were divided into {self.divided_pieces:,} pieces (equal shares)",
            f"{self.targets_reached:,} 2025 communes reached; "
            f"{self.legacy_provinces} legacy provinces went whole into {self.provinces_2025} 2025 provinces",
        ]


@dataclass(frozen=True, slots=True)
class Crosswalk:
    links: tuple[Link, ...]  # provinces first, then communes and island districts, by legacy code
    counts: Counts


def settle(weights: Sequence[Decimal]) -> list[Decimal]:
    """The weights rounded to WEIGHT_PLACES places, the largest taking the rounding remainder so that the
    sum is exactly 1. The caller has checked that they sum to 1 within its tolerance."""
    rounded = [w.quantize(_QUANTUM) for w in weights]
    largest = max(range(len(rounded)), key=lambda i: rounded[i])
    rounded[largest] += Decimal(1) - sum(rounded, Decimal(0))
    return rounded


def equal_shares(n: int) -> list[Decimal]:
    return settle([Decimal(1) / n] * n)


@contextmanager
def package_file(name: str) -> Iterator[Path]:
    """A file of the installed `vietnamadminunits` package's `data/` directory, as a path."""
    with resources.as_file(resources.files("vietnamadminunits") / "data" / name) as path:
        yield path


class _Codes:
    """Slug -> GSO code lookups of both editions, each scoped by its province's slug."""

    def __init__(self, dataset: Path) -> None:
        with sqlite3.connect(f"file:{dataset}?mode=ro", uri=True) as db:
            legacy = db.execute(
                "SELECT provinceKey, provinceCode, districtKey, districtCode, wardKey, wardCode FROM admin_units_legacy"
            ).fetchall()
            new = db.execute("SELECT provinceKey, provinceCode, wardKey, wardCode FROM admin_units").fetchall()
        self.legacy_provinces = _index((p, pc) for p, pc, *_ in legacy)
        # An island district without communes has one row with no ward: its slug ends in `_` (converter_2025.py).
        self.legacy_units = _index(
            (f"{p}_{d}_{w or ''}", (wc, "commune") if wc else (dc, "district")) for p, _, d, dc, w, wc in legacy
        )
        self.provinces = _index((p, pc) for p, pc, *_ in new)
        self.communes = _index(((p, w), wc) for p, _, w, wc in new)
        self.legacy_province_of = {(wc or dc): pc for _, pc, _, dc, _, wc in legacy}
        self.all_legacy = {(wc or dc) for _, _, _, dc, _, wc in legacy}
        self.all_communes = {wc for *_, wc in new}


def _index(pairs: Iterable[tuple[K, V]]) -> dict[K, set[V]]:
    index: dict[K, set[V]] = defaultdict(set)
    for key, value in pairs:
        index[key].add(value)
    return index


def _one(index: dict[K, set[V]], key: K, what: str, problems: list[str]) -> V | None:
    found = index.get(key, set())
    if len(found) == 1:
        return next(iter(found))
    listed = ", ".join(sorted(map(str, found)))
    problems.append(f"{what} resolves to {'several codes: ' + listed if found else 'no code'}")
    return None


def read_crosswalk(converter: Path | None = None, dataset: Path | None = None) -> Crosswalk:
    """Build and check the crosswalk (the package's own files unless given); raises CrosswalkError."""
    if converter is None or dataset is None:
        with package_file("converter_2025.json") as conv, package_file("dataset.db") as data:
            return read_crosswalk(converter or conv, dataset or data)
    data = json.loads(converter.read_text(encoding="utf-8"))
    return _build(data, _Codes(dataset))


def _build(data: dict[str, Any], codes: _Codes) -> Crosswalk:
    problems: list[str] = []
    provinces = _provinces(data["DICT_PROVINCE"], codes, problems)
    communes: list[Link] = []
    whole_targets = 0
    for p_slug, wards in data["DICT_PROVINCE_WARD_NO_DIVIDED"].items():
        province = _one(codes.provinces, p_slug, f"2025 province {p_slug!r}", problems)
        for w_slug, sources in wards.items():
            target = _one(codes.communes, (p_slug, w_slug), f"2025 commune {w_slug!r} of {p_slug!r}", problems)
            whole_targets += 1
            for source in sources:
                found = _source(source, p_slug, province, provinces, codes, problems)
                if found and target:
                    communes.append(Link(found[0], found[1], target, Decimal(1), WHOLE))
    n_whole = len(communes)
    pieces = divided = 0
    for p_slug, divisions in data["DICT_PROVINCE_WARD_DIVIDED"].items():
        province = _one(codes.provinces, p_slug, f"2025 province {p_slug!r}", problems)
        for source, parts in divisions.items():
            found = _source(source, p_slug, province, provinces, codes, problems)
            targets = [
                _one(codes.communes, (p_slug, part["newWardKey"]), f"2025 commune {part['newWardKey']!r} of {p_slug!r}",
                     problems)
                for part in parts
            ]
            divided += 1
            pieces += len(parts)
            distinct = sorted({t for t in targets if t})
            if len(parts) < 2 or (all(targets) and len(distinct) < len(parts)):
                problems.append(f"divided legacy commune {source!r} (under {p_slug!r}) has {len(distinct)} distinct "
                                f"piece(s) in {len(parts)}")
            elif found and all(targets):
                shares = equal_shares(len(distinct))
                communes.extend(Link(found[0], found[1], t, w, EQUAL) for t, w in zip(distinct, shares, strict=True))
    _check_coverage(communes, codes, problems)
    if problems:
        raise CrosswalkError(problems)
    islands = sum(1 for link in communes[:n_whole] if link.legacy_level == "district")
    counts = Counts(
        whole_sources=n_whole, whole_targets=whole_targets, island_districts=islands, divided_sources=divided,
        divided_pieces=pieces, targets_reached=len({link.code_2025 for link in communes}),
        legacy_provinces=len(provinces), provinces_2025=len(set(provinces.values())),
    )
    province_links = [Link(lp, "province", p, Decimal(1), WHOLE) for lp, p in sorted(provinces.items())]
    return Crosswalk((*province_links, *sorted(communes, key=lambda x: (x.legacy_code, x.code_2025))), counts)


def _provinces(mapping: dict[str, list[str]], codes: _Codes, problems: list[str]) -> dict[str, str]:
    """Legacy province code -> 2025 province code; every province of both editions, each legacy one in one."""
    into: dict[str, str] = {}
    for p_slug, legacy_slugs in mapping.items():
        province = _one(codes.provinces, p_slug, f"2025 province {p_slug!r}", problems)
        for slug in legacy_slugs:
            legacy = _one(codes.legacy_provinces, slug, f"legacy province {slug!r} (into {p_slug!r})", problems)
            if legacy and province:
                if legacy in into and into[legacy] != province:
                    problems.append(f"legacy province {slug!r} goes into both {into[legacy]} and {province}")
                into[legacy] = province
    missing_legacy = {c for cs in codes.legacy_provinces.values() for c in cs} - set(into)
    missing_new = {c for cs in codes.provinces.values() for c in cs} - set(into.values())
    problems.extend(f"legacy province {c} goes into no 2025 province" for c in sorted(missing_legacy))
    problems.extend(f"2025 province {c} is formed from no legacy province" for c in sorted(missing_new))
    return into


def _source(
    slug: str, p_slug: str, province: str | None, provinces: dict[str, str], codes: _Codes, problems: list[str]
) -> tuple[str, str] | None:
    """The legacy code and level of a source slug listed under 2025 province `p_slug`, whose legacy province
    must go whole into that one (no legacy province is divided)."""
    found = _one(codes.legacy_units, slug, f"legacy commune {slug!r} (listed under {p_slug!r})", problems)
    if found is None:
        return None
    legacy_province = codes.legacy_province_of[found[0]]
    if province is not None and provinces.get(legacy_province) != province:
        problems.append(
            f"legacy commune {slug!r} is listed under 2025 province {p_slug!r} ({province}) but its legacy province "
            f"{legacy_province} goes into {provinces.get(legacy_province, 'no 2025 province')}: a legacy province "
            "would be divided"
        )
    return found


def _check_coverage(communes: list[Link], codes: _Codes, problems: list[str]) -> None:
    """Every legacy unit below the district appears, every 2025 commune is reached, and each legacy unit's
    weights sum to exactly 1 (a unit listed twice would count twice)."""
    totals: dict[str, Decimal] = defaultdict(Decimal)
    for link in communes:
        totals[link.legacy_code] += link.weight
    problems.extend(f"legacy unit {c} goes into no 2025 commune" for c in sorted(codes.all_legacy - set(totals)))
    problems.extend(
        f"legacy unit {c}'s weights sum to {w}, not 1 (listed more than once?)" for c, w in totals.items() if w != 1
    )
    reached = {link.code_2025 for link in communes}
    problems.extend(f"2025 commune {c} is formed from no legacy unit" for c in sorted(codes.all_communes - reached))
