"""The indicator catalogue: data in `indicators.yaml`, loaded once at start-up by every service."""

from __future__ import annotations

from collections.abc import Iterator
from enum import StrEnum
from functools import cache
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.periods import PeriodType
from shared.rules import Rule, RuleError, RuleSpec, compile_rule

CATALOG_PATH = Path(__file__).with_name("indicators.yaml")


class Measure(StrEnum):
    FLOW = "flow"
    STOCK = "stock"
    RATIO = "ratio"
    BOOLEAN = "boolean"


class Group(StrEnum):
    PUBLIC_SERVICES = "public_services"
    SOCIO_ECONOMIC = "socio_economic"
    DIGITAL_CITIZEN = "digital_citizen"
    ECOSYSTEM = "ecosystem"
    GOVERNANCE = "governance"


class Indicator(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    code: str = Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=64)
    name_vi: str
    name_en: str
    group: Group
    unit: str
    measure: Measure
    components: Literal["flow", "stock"] | None = None
    period_type: PeriodType
    rollup: bool = True
    target: float | None = None
    description_en: str | None = None
    retired: bool = False
    outliers: bool = False  # score each reported value against the unit's own history (DESIGN §8)

    @model_validator(mode="after")
    def _components_only_for_ratios(self) -> Indicator:
        if (self.measure is Measure.RATIO) != (self.components is not None):
            raise ValueError(f"{self.code}: `components` is required for ratios and only for them")
        return self

    @model_validator(mode="after")
    def _outliers_only_for_amounts(self) -> Indicator:
        if self.outliers and self.measure not in (Measure.FLOW, Measure.STOCK):
            raise ValueError(f"{self.code}: `outliers` scores amounts (flows and stocks), not a {self.measure.value}")
        return self

    @property
    def time_rollup(self) -> Literal["sum", "latest"]:
        """How native periods combine into a coarser one (DESIGN §2)."""
        if self.measure is Measure.FLOW or self.components == "flow":
            return "sum"
        return "latest"

    @property
    def has_denominator(self) -> bool:
        return self.measure in (Measure.RATIO, Measure.BOOLEAN)


class Catalog:
    def __init__(self, indicators: list[Indicator], rules: list[RuleSpec] | None = None) -> None:
        self.by_code = {i.code: i for i in indicators}
        if len(self.by_code) != len(indicators):
            raise ValueError("indicator codes in the catalogue must be unique")
        self.rules: list[Rule] = [compile_rule(spec, self.by_code) for spec in rules or []]
        if len({r.code for r in self.rules}) != len(self.rules):
            raise RuleError("rule codes in the catalogue must be unique")

    def __iter__(self) -> Iterator[Indicator]:
        return iter(self.by_code.values())

    def __len__(self) -> int:
        return len(self.by_code)

    def get(self, code: str) -> Indicator | None:
        return self.by_code.get(code)


def parse_catalog(text: str) -> Catalog:
    raw = yaml.safe_load(text)
    return Catalog(
        [Indicator.model_validate(item) for item in raw["indicators"]],
        [RuleSpec.model_validate(item) for item in raw.get("rules") or []],
    )


@cache
def load_catalog(path: Path = CATALOG_PATH) -> Catalog:
    return parse_catalog(path.read_text(encoding="utf-8"))


async def store_catalog(conn: AsyncConnection, catalog: Catalog) -> None:
    """Mirror the YAML into the `indicators` table, for SQL analytics and operators' queries."""
    await conn.execute(
        text("""
        INSERT INTO indicators (code, name_vi, name_en, grp, unit, measure, components,
                                period_type, rollup, target, retired)
        VALUES (:code, :name_vi, :name_en, :grp, :unit, :measure, :components,
                :period_type, :rollup, :target, :retired)
        ON CONFLICT (code) DO UPDATE SET name_vi = excluded.name_vi, name_en = excluded.name_en,
            grp = excluded.grp, unit = excluded.unit, measure = excluded.measure,
            components = excluded.components, period_type = excluded.period_type,
            rollup = excluded.rollup, target = excluded.target, retired = excluded.retired
        """),
        [
            {
                "code": ind.code, "name_vi": ind.name_vi, "name_en": ind.name_en,
                "grp": ind.group.value, "unit": ind.unit, "measure": ind.measure.value,
                "components": ind.components, "period_type": ind.period_type.value,
                "rollup": ind.rollup, "target": ind.target, "retired": ind.retired,
            }
            for ind in catalog
        ],
    )
