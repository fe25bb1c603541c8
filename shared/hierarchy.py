"""Administrative units: loading both editions from the `vietnamadminunits` dataset, and the in-memory tree.

A unit is identified by (edition, code). Services hold the whole tree in memory (13,392 units in
legacy, 3,356 in 2025) because validation, scope checks and the rollup walk consult it per event.
"""

from __future__ import annotations

import sqlite3
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from importlib import resources

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

NATION = "VN"


class Edition(StrEnum):
    LEGACY = "legacy"
    E2025 = "2025"


# The reform took effect on 1 July 2025: periods ending before it belong to the legacy edition.
REFORM_DATE = date(2025, 7, 1)


def edition_for(period_end: date) -> Edition:
    return Edition.LEGACY if period_end < REFORM_DATE else Edition.E2025


def fold(name: str) -> str:
    """Lower-case ASCII without diacritics, so `cua lo` finds `Cửa Lò` (đ is a letter, not a mark)."""
    decomposed = unicodedata.normalize("NFD", name.replace("đ", "d").replace("Đ", "D"))
    return "".join(c for c in decomposed if not unicodedata.combining(c)).lower()


@dataclass(frozen=True, slots=True)
class Unit:
    edition: str
    code: str
    parent_code: str | None
    level: str
    kind: str
    name: str
    province_code: str | None
    ancestors: tuple[str, ...]  # from the nation down to the parent

    @property
    def depth(self) -> int:
        return len(self.ancestors)


def _unit(edition: Edition, code: str, parent: Unit | None, level: str, kind: str, name: str) -> Unit:
    ancestors = (*parent.ancestors, parent.code) if parent else ()
    province = code if level == "province" else (parent.province_code if parent else None)
    return Unit(edition.value, code, parent.code if parent else None, level, kind, name, province, ancestors)


def _kind(full_name: str, short_name: str) -> str:
    """`Tỉnh Long An` with short name `Long An` is of kind `Tỉnh`."""
    return full_name.removesuffix(short_name).strip() or full_name


def read_dataset() -> list[Unit]:
    """Both editions from the package's SQLite dataset, parents before children."""
    db_path = resources.files("vietnamadminunits") / "data" / "dataset.db"
    with resources.as_file(db_path) as path, sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        legacy_rows = db.execute(
            "SELECT provinceCode, province, provinceShort, districtCode, district, districtShort, "
            "wardCode, ward, wardType FROM admin_units_legacy ORDER BY provinceCode, districtCode, wardCode"
        ).fetchall()
        new_rows = db.execute(
            "SELECT provinceCode, province, provinceShort, wardCode, ward, wardType "
            "FROM admin_units ORDER BY provinceCode, wardCode"
        ).fetchall()

    units: list[Unit] = []
    seen: dict[str, Unit] = {}

    def add(unit: Unit) -> Unit:
        if unit.code not in seen:
            seen[unit.code] = unit
            units.append(unit)
        return seen[unit.code]

    legacy = Edition.LEGACY
    nation = add(_unit(legacy, NATION, None, "nation", "Quốc gia", "Việt Nam"))
    for p_code, p_name, p_short, d_code, d_name, d_short, w_code, w_name, w_type in legacy_rows:
        province = add(_unit(legacy, p_code, nation, "province", _kind(p_name, p_short), p_name))
        district = add(_unit(legacy, d_code, province, "district", _kind(d_name, d_short), d_name))
        if w_code:  # five island districts have no communes
            add(_unit(legacy, w_code, district, "commune", w_type or "Xã", w_name))

    seen.clear()
    new = Edition.E2025
    nation = add(_unit(new, NATION, None, "nation", "Quốc gia", "Việt Nam"))
    for p_code, p_name, p_short, w_code, w_name, w_type in new_rows:
        province = add(_unit(new, p_code, nation, "province", _kind(p_name, p_short), p_name))
        add(_unit(new, w_code, province, "commune", w_type, w_name))
    return units


async def store_units(conn: AsyncConnection, units: list[Unit]) -> None:
    """Upsert the units (parents first, so the foreign key holds) and recount children."""
    for depth in sorted({u.depth for u in units}):
        layer = [u for u in units if u.depth == depth]
        await conn.execute(
            text("""
            INSERT INTO units (edition, code, parent_code, level, depth, kind, name, name_ascii,
                               province_code, ancestors)
            SELECT e, c, p, l, :depth, k, n, a, pr, string_to_array(an, ',')
            FROM unnest(CAST(:e AS text[]), CAST(:c AS text[]), CAST(:p AS text[]), CAST(:l AS text[]),
                        CAST(:k AS text[]), CAST(:n AS text[]), CAST(:a AS text[]), CAST(:pr AS text[]),
                        CAST(:an AS text[])) AS t(e, c, p, l, k, n, a, pr, an)
            ON CONFLICT (edition, code) DO UPDATE SET
                parent_code = excluded.parent_code, level = excluded.level, depth = excluded.depth,
                kind = excluded.kind, name = excluded.name, name_ascii = excluded.name_ascii,
                province_code = excluded.province_code, ancestors = excluded.ancestors
            """),
            {
                "depth": depth,
                "e": [u.edition for u in layer],
                "c": [u.code for u in layer],
                "p": [u.parent_code for u in layer],
                "l": [u.level for u in layer],
                "k": [u.kind for u in layer],
                "n": [u.name for u in layer],
                "a": [fold(u.name) for u in layer],
                "pr": [u.province_code for u in layer],
                "an": [",".join(u.ancestors) for u in layer],
            },
        )
    await conn.execute(
        text("""
        UPDATE units u SET n_children = coalesce(c.n, 0)
        FROM units x LEFT JOIN (
            SELECT edition, parent_code, count(*) AS n FROM units GROUP BY edition, parent_code
        ) c ON c.edition = x.edition AND c.parent_code = x.code
        WHERE u.edition = x.edition AND u.code = x.code AND u.n_children IS DISTINCT FROM coalesce(c.n, 0)
        """)
    )


class Hierarchy:
    """The unit tree of every edition, in memory."""

    def __init__(self, units: list[Unit]) -> None:
        self._units = {(u.edition, u.code): u for u in units}
        children: dict[tuple[str, str], int] = {}
        for u in units:
            if u.parent_code is not None:
                key = (u.edition, u.parent_code)
                children[key] = children.get(key, 0) + 1
        self._children = children

    def __len__(self) -> int:
        return len(self._units)

    def __iter__(self) -> Iterator[Unit]:
        return iter(self._units.values())

    def get(self, edition: str, code: str) -> Unit | None:
        return self._units.get((edition, code))

    def n_children(self, edition: str, code: str) -> int:
        return self._children.get((edition, code), 0)

    def in_subtree(self, unit: Unit, root_code: str) -> bool:
        return root_code == NATION or unit.code == root_code or root_code in unit.ancestors


async def fetch_hierarchy(conn: AsyncConnection) -> Hierarchy:
    rows = await conn.execute(
        text("SELECT edition, code, parent_code, level, kind, name, province_code, ancestors FROM units")
    )
    return Hierarchy(
        [
            Unit(r.edition, r.code, r.parent_code, r.level, r.kind, r.name, r.province_code, tuple(r.ancestors))
            for r in rows
        ]
    )
