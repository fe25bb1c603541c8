"""The statements of the query service: each request's data comes from one statement built here.

The tables are declared for SQLAlchemy Core only (the migration owns the schema). Lists are bound as
one `text[]` parameter (`= ANY(:periods)`), never expanded into `IN (…)`, so a statement's SQL does not
change with the list's length and asyncpg reuses one prepared statement. Every filter on `rollups`
starts with its primary key (edition, unit, indicator, period).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any, NamedTuple

from sqlalchemy import (
    BindParameter,
    Column,
    DateTime,
    Integer,
    MetaData,
    Numeric,
    Select,
    SmallInteger,
    Table,
    Text,
    and_,
    any_,
    bindparam,
    case,
    func,
    or_,
    select,
    tuple_,
)
from sqlalchemy.dialects.postgresql import ARRAY

from shared.hierarchy import NATION

metadata = MetaData()

units = Table(
    "units",
    metadata,
    Column("edition", Text, primary_key=True),
    Column("code", Text, primary_key=True),
    Column("parent_code", Text),
    Column("level", Text),
    Column("depth", SmallInteger),
    Column("kind", Text),
    Column("name", Text),
    Column("name_ascii", Text),
    Column("province_code", Text),
    Column("ancestors", ARRAY(Text)),
    Column("n_children", Integer),
)

rollups = Table(
    "rollups",
    metadata,
    Column("edition", Text, primary_key=True),
    Column("unit", Text, primary_key=True),
    Column("indicator", Text, primary_key=True),
    Column("period", Text, primary_key=True),
    Column("rep_num", Numeric(asdecimal=True)),
    Column("rep_den", Numeric(asdecimal=True)),
    Column("rep_seq", Integer),
    Column("comp_num", Numeric(asdecimal=True)),
    Column("comp_den", Numeric(asdecimal=True)),
    Column("reporting", Integer),
    Column("accepted_at", DateTime(timezone=True)),
    Column("updated_at", DateTime(timezone=True)),
)

_r = rollups.c
_u = units.c


class Query(NamedTuple):
    """A statement built once at import (so neither it nor its cache key is rebuilt per request) and
    the values of its parameters."""

    statement: Select[Any]
    params: dict[str, Any]


def _text(name: str) -> BindParameter[str]:
    return bindparam(name, type_=Text)


def _texts(name: str) -> BindParameter[Sequence[str]]:
    return bindparam(name, type_=ARRAY(Text))


_NATIVE_COLUMNS = (_r.period, _r.rep_num, _r.rep_den, _r.comp_num, _r.comp_den, _r.reporting, _r.updated_at)
_IN_RANGE = (_r.indicator == any_(_texts("indicators")), _r.period == any_(_texts("periods")))

_UNIT_ROWS = select(_r.indicator, *_NATIVE_COLUMNS).where(
    _r.edition == _text("edition"), _r.unit == _text("unit"), *_IN_RANGE
)


def unit_rows(edition: str, unit: str, indicators: list[str], periods: list[str]) -> Query:
    """The native rows of one materialized unit (any level but the nation)."""
    return Query(_UNIT_ROWS, {"edition": edition, "unit": unit, "indicators": indicators, "periods": periods})


def _nation_rows() -> Select[Any]:
    has_rep = _r.rep_num.is_not(None)
    eff_num = case((has_rep, _r.rep_num), else_=_r.comp_num)
    eff_den = case((has_rep, _r.rep_den), else_=_r.comp_den)
    own = _r.unit == NATION
    child = and_(_r.unit != NATION, _r.indicator == any_(_texts("summed")))
    # array_append((SELECT array_agg …), 'VN'): an array expression, not `ANY (SELECT …)`, so Postgres
    # evaluates it once and probes the primary key with the list.
    provinces = func.array_append(
        select(func.array_agg(_u.code))
        .where(_u.edition == _text("edition"), _u.parent_code == NATION)
        .scalar_subquery(),
        NATION,
    )
    return (
        select(
            _r.indicator,
            _r.period,
            func.max(_r.rep_num).filter(own).label("rep_num"),
            func.max(_r.rep_den).filter(own).label("rep_den"),
            func.sum(eff_num).filter(child).label("comp_num"),
            func.sum(eff_den).filter(child).label("comp_den"),
            func.count().filter(and_(child, eff_num.is_not(None))).label("reporting"),
            func.max(_r.updated_at).label("updated_at"),
        )
        .where(_r.edition == _text("edition"), _r.unit == any_(provinces), *_IN_RANGE)
        .group_by(_r.indicator, _r.period)
    )


_NATION_ROWS = _nation_rows()


def nation_rows(edition: str, indicators: list[str], summed: list[str], periods: list[str]) -> Query:
    """The nation's native rows, summed at read time (DESIGN §3) in the same shape as `unit_rows`.

    `computed` is the sum of the provinces' effective pairs and `reporting` how many have one; only the
    `summed` indicators (those that roll up) get them. `reported` is a VN row's, if anyone reported
    at the nation itself.
    """
    return Query(
        _NATION_ROWS,
        {"edition": edition, "indicators": indicators, "summed": summed, "periods": periods},
    )


def _children_rows(latest_only: bool) -> Select[Any]:
    joined = units.outerjoin(
        rollups,
        and_(
            _r.edition == _u.edition,
            _r.unit == _u.code,
            _r.indicator == _text("indicator"),
            _r.period == any_(_texts("periods")),
        ),
    )
    columns = (_u.code, _u.name, _u.level, _u.kind, _u.n_children, *_NATIVE_COLUMNS)
    rows = (
        select(*columns)
        .select_from(joined)
        .where(_u.edition == _text("edition"), _u.parent_code == _text("parent"))
    )
    if not latest_only:
        return rows
    window = rows.add_columns(
        func.max(_r.period).filter(_r.rep_num.is_not(None)).over(partition_by=_u.code).label("last_rep"),
        func.max(_r.period).filter(_r.comp_num.is_not(None)).over(partition_by=_u.code).label("last_comp"),
    ).subquery("w")
    w = window.c
    return select(*(w[c.name] for c in columns)).where(
        or_(
            w.period.is_(None),
            w.period == w.last_rep,
            w.period == w.last_comp,
            and_(w.last_rep.is_(None), w.last_comp.is_(None)),  # rows without a value: the child stays
        )
    )


_CHILDREN_ROWS = {latest: _children_rows(latest) for latest in (False, True)}


def children_rows(edition: str, parent: str, indicator: str, periods: list[str], *, latest_only: bool) -> Query:
    """Every child of `parent`, with its native rows of the periods (none: one row of nulls).

    `latest_only` (indicators that take the latest native period, DESIGN §2): only the rows the
    derivation can use leave the server, those of each child's latest reported and latest computed
    period; a year of a province's 168 communes is then ~170 rows instead of ~2,000.
    """
    params = {"edition": edition, "parent": parent, "indicator": indicator, "periods": periods}
    return Query(_CHILDREN_ROWS[latest_only], params)


@dataclass(frozen=True, slots=True)
class UnitFilter:
    edition: str
    parent: str | None = None
    level: str | None = None
    q: str | None = None  # already folded (lower-case ASCII)
    scope_codes: tuple[str, ...] | None = None  # the subtrees the principal reads; None: the whole edition
    after: tuple[int, str] | None = None  # keyset cursor: (depth, code) of the last unit served
    limit: int = 50


def _like_pattern(folded: str) -> str:
    escaped = folded.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


@cache
def _units_statement(parent: bool, level: bool, q: bool, scoped: bool, after: bool) -> Select[Any]:
    stmt = select(_u.code, _u.name, _u.level, _u.kind, _u.parent_code, _u.n_children, _u.depth).where(
        _u.edition == _text("edition")
    )
    if scoped:
        scopes = _texts("scopes")
        stmt = stmt.where(or_(_u.code == any_(scopes), _u.ancestors.overlap(scopes)))
    if parent:
        stmt = stmt.where(_u.parent_code == _text("parent"))
    if level:
        stmt = stmt.where(_u.level == _text("level"))
    if q:
        stmt = stmt.where(or_(_u.name_ascii.like(_text("pattern"), escape="\\"), _u.code == _text("q")))
    if after:
        stmt = stmt.where(
            tuple_(_u.depth, _u.code) > tuple_(bindparam("after_depth", type_=SmallInteger), _text("after_code"))
        )
    return stmt.order_by(_u.depth, _u.code).limit(bindparam("limit", type_=Integer))


def list_units(f: UnitFilter) -> Query:
    """Units in (depth, code) order — provinces before their districts — one page past `after`
    (and one more row, to know whether there is a next page).

    Without a trigram index the `q` filter scans the edition (at most 13,392 rows), cheap at that size;
    a `pg_trgm` GIN index on name_ascii is the upgrade if search becomes hot.
    """
    scoped = f.scope_codes is not None
    stmt = _units_statement(f.parent is not None, f.level is not None, bool(f.q), scoped, f.after is not None)
    params: dict[str, Any] = {"edition": f.edition, "limit": f.limit + 1}
    if f.scope_codes is not None:
        params["scopes"] = list(f.scope_codes)
    if f.parent is not None:
        params["parent"] = f.parent
    if f.level is not None:
        params["level"] = f.level
    if f.q:
        params["q"], params["pattern"] = f.q, _like_pattern(f.q)
    if f.after is not None:
        params["after_depth"], params["after_code"] = f.after
    return Query(stmt, params)
