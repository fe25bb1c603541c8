"""The JSON the query service answers with (v1). Field names are the public contract: DESIGN §4."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Number = int | float
Sort = Literal["-value", "value", "code", "name"]


def _examples(*examples: dict[str, Any]) -> ConfigDict:
    return ConfigDict(json_schema_extra={"examples": list(examples)})


class Indicator(BaseModel):
    code: str
    name_vi: str
    name_en: str
    group: str
    unit: str = Field(description="What a value counts; ratios and boolean coverage are served as percent.")
    measure: Literal["flow", "stock", "ratio", "boolean"]
    components: Literal["flow", "stock"] | None = Field(
        description="Ratios only: whether numerator and denominator add up over time or take the latest."
    )
    period_type: str = Field(description="The native period; coarser periods are derived.")
    rollup: bool = Field(description="False for own-level indicators: shown where reported, never summed.")
    target: float | None
    description_en: str | None


class IndicatorList(BaseModel):
    model_config = _examples({"items": [{
        "code": "cccd_issued", "name_vi": "Số thẻ căn cước đã cấp", "name_en": "Chip ID cards issued",
        "group": "digital_citizen", "unit": "cards", "measure": "stock", "components": None,
        "period_type": "month", "rollup": True, "target": None, "description_en": "Cards issued to date.",
    }]})

    items: list[Indicator]


class UnitRef(BaseModel):
    code: str
    name: str
    level: str


class Unit(BaseModel):
    edition: str
    code: str
    name: str
    kind: str = Field(description="Tỉnh, Thành phố, Huyện, Quận, Xã, Phường, …")
    level: str = Field(description="nation, province, district (legacy only) or commune.")
    parent: str | None
    children: int = Field(description="Number of child units in this edition.")


class UnitDetail(Unit):
    model_config = _examples({
        "edition": "legacy", "code": "803", "name": "Huyện Bến Lức", "kind": "Huyện", "level": "district",
        "parent": "80", "children": 15,
        "ancestors": [{"code": "VN", "name": "Việt Nam", "level": "nation"},
                      {"code": "80", "name": "Tỉnh Long An", "level": "province"}],
    })

    ancestors: list[UnitRef] = Field(description="From the nation down to the parent.")


class UnitPage(BaseModel):
    model_config = _examples({
        "edition": "legacy",
        "items": [{"edition": "legacy", "code": "803", "name": "Huyện Bến Lức", "kind": "Huyện",
                   "level": "district", "parent": "80", "children": 15}],
        "next_cursor": None,
    })

    edition: str
    items: list[Unit]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last one.")


class Components(BaseModel):
    value: Number | None
    numerator: Number | None
    denominator: Number | None


Source = Literal["reported", "computed", "mixed"]


class ValueFields(BaseModel):
    """What every answer of one indicator for one unit and period carries (a unit's value, a child's)."""

    value: Number | None = Field(
        description="The effective value: reported, else computed; percent for ratios.", examples=[97.25]
    )
    numerator: Number | None = Field(
        description="Ratios and boolean coverage only (null for amounts, which are in `value`).", examples=[1167000]
    )
    denominator: Number | None = Field(
        description="Ratios and boolean coverage only (null for amounts).", examples=[1200000]
    )
    source: Source | None = Field(
        description="`mixed`: a derived period whose native periods were partly reported, partly computed.",
        examples=["computed"],
    )
    reported: Components | None = Field(description="What the unit itself reported.")
    computed: Components | None = Field(description="The sum of its children's values.")
    reporting: int | None = Field(description="Children with a value (null for own-level indicators).", examples=[15])
    expected: int | None = Field(description="Children the unit has (null for own-level indicators).", examples=[15])
    updated_at: datetime | None = Field(
        description="When the value last changed (the newest of the rows it is derived from).",
        examples=["2024-07-03T08:15:00Z"],
    )


class Value(ValueFields):
    indicator: str = Field(description="An indicator code from /v1/indicators.", examples=["cccd_coverage"])
    target: float | None = Field(description="The indicator's target, if it has one.", examples=[100])


class UnitValues(BaseModel):
    model_config = _examples({
        "unit": {"edition": "legacy", "code": "80", "name": "Tỉnh Long An", "kind": "Tỉnh",
                 "level": "province", "parent": "VN", "children": 15},
        "edition": "legacy", "period": "2024-H1", "partial": False,
        "values": [{
            "indicator": "cccd_coverage", "value": 97.25, "numerator": 1167000, "denominator": 1200000,
            "source": "computed", "reported": None,
            "computed": {"value": 97.25, "numerator": 1167000, "denominator": 1200000},
            "reporting": 15, "expected": 15, "target": 100, "updated_at": "2024-07-03T08:15:00Z",
        }],
    })

    unit: Unit
    edition: str
    period: str
    partial: bool = Field(description="The period has not ended: its values can still change.")
    values: list[Value]


class ChildValue(ValueFields):
    unit: Unit
    rank: int = Field(description="Position in the requested order, 1-based, across pages.")


class ChildrenValues(BaseModel):
    model_config = _examples({
        "unit": {"edition": "legacy", "code": "80", "name": "Tỉnh Long An", "kind": "Tỉnh",
                 "level": "province", "parent": "VN", "children": 15},
        "edition": "legacy", "indicator": "dossiers_received", "period": "2024-07", "partial": False,
        "sort": "-value", "total": 15, "reporting": 14,
        "items": [{
            "unit": {"edition": "legacy", "code": "803", "name": "Huyện Bến Lức", "kind": "Huyện",
                     "level": "district", "parent": "80", "children": 15},
            "rank": 1, "value": 5120, "numerator": None, "denominator": None, "source": "reported",
            "reported": {"value": 5120, "numerator": None, "denominator": None},
            "computed": {"value": 4980, "numerator": None, "denominator": None},
            "reporting": 14, "expected": 15, "updated_at": "2024-08-02T10:00:00Z",
        }],
        "next_cursor": "eyJzIjoiLXZhbHVlIiwiayI6W2ZhbHNlLC01MTIwLCI4MDMiXX0",
    })

    unit: Unit
    edition: str
    indicator: str
    period: str
    partial: bool
    sort: Sort
    total: int = Field(description="Number of children.")
    reporting: int = Field(description="Children with a value for this period.")
    items: list[ChildValue]
    next_cursor: str | None


class SeriesPoint(BaseModel):
    period: str
    value: Number | None
    numerator: Number | None
    denominator: Number | None
    source: Literal["reported", "computed"] | None
    reporting: int | None
    expected: int | None
    partial: bool


class Series(BaseModel):
    model_config = ConfigDict(validate_by_name=True, serialize_by_alias=True, **_examples({
        "unit": {"edition": "legacy", "code": "803", "name": "Huyện Bến Lức", "kind": "Huyện",
                 "level": "district", "parent": "80", "children": 15},
        "edition": "legacy", "indicator": "cccd_issued", "from": "2024-01", "to": "2024-02",
        "points": [
            {"period": "2024-01", "value": 120000, "numerator": None, "denominator": None,
             "source": "computed", "reporting": 15, "expected": 15, "partial": False},
            {"period": "2024-02", "value": None, "numerator": None, "denominator": None,
             "source": None, "reporting": 0, "expected": 15, "partial": False},
        ],
    }))

    unit: Unit
    edition: str
    indicator: str
    from_: str = Field(alias="from")
    to: str
    points: list[SeriesPoint]
