"""The JSON the query service answers with (v1). Field names are the public contract: DESIGN §4."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Number = int | float
Importance = Literal["high", "medium", "low"]
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


Source = Literal["reported", "computed", "mixed", "reexpressed"]
Basis = Literal["native", "reexpressed", "mixed"]


class Reexpression(BaseModel):
    """Where a value object says on what it rests (DESIGN §7), in `values`, `children/values` and `series`."""

    basis: Basis = Field(
        description="`native`: the unit's own edition; `reexpressed`: legacy figures through the 2025 crosswalk "
        "(a 2025 unit before 1 July 2025); `mixed`: a derived period built from both (the year 2025 of a flow).",
        examples=["reexpressed"],
    )
    estimated: bool = Field(
        description="True when part of the value rests on a crosswalk weight below 1 (a legacy commune divided "
        "between several 2025 communes, counted in equal shares); false when it is exact.",
        examples=[False],
    )
    reexpressed: Components | None = Field(
        description="The crosswalk's figure: Σ weight × the legacy sources' values, shown beside the unit's own "
        "wherever it exists; null for legacy units, own-level indicators and periods from 1 July 2025."
    )


class RuleFlag(BaseModel):
    kind: Literal["rule"]
    code: str = Field(description="The rule's code (shared/indicators.yaml `rules:`; docs/quality.md).",
                      examples=["vneid_l2_activated_within_cccd"])
    importance: Importance
    left: Number | None = Field(description="The rule's left side, evaluated on this unit and period.",
                                examples=[5000])
    right: Number | None = Field(description="The rule's right side.", examples=[1100])
    acknowledged: bool = Field(description="A reviewer has checked it (it stays open; see the quality listing).")


class OutlierFlag(BaseModel):
    kind: Literal["outlier"]
    code: str = Field(description="The indicator's code.", examples=["cccd_issued"])
    importance: Importance
    score: Number | None = Field(description="The modified z-score; null for a departure from a constant history.",
                                 examples=[-41.2])
    constant_history: bool = Field(description="The unit's previous values had no spread at all.")
    acknowledged: bool


Flag = Annotated[RuleFlag | OutlierFlag, Field(discriminator="kind")]
FLAGS_DESCRIPTION = (
    "The open quality flags (DESIGN §8) of this unit, indicator and period: rule violations naming the indicator "
    "and outliers of it; `[]` when clean. Only a native period carries them: a derived period (a quarter of a "
    "monthly indicator), a re-expressed figure and the nation carry `[]` (their flags are on the native periods, "
    "the legacy units and the provinces: GET /v1/units/{code}/quality)."
)


class ValueFields(Reexpression):
    """What every answer of one indicator for one unit and period carries (a unit's value, a child's)."""

    value: Number | None = Field(
        description="The effective value: reported, else computed, else (a 2025 unit on a legacy period) "
        "re-expressed; percent for ratios.", examples=[97.25]
    )
    numerator: Number | None = Field(
        description="Ratios and boolean coverage only (null for amounts, which are in `value`).", examples=[1167000]
    )
    denominator: Number | None = Field(
        description="Ratios and boolean coverage only (null for amounts).", examples=[1200000]
    )
    source: Source | None = Field(
        description="`reexpressed`: only the crosswalk gives it; `mixed`: a derived period whose native periods "
        "come from more than one source.",
        examples=["computed"],
    )
    reported: Components | None = Field(description="What the unit itself reported.")
    computed: Components | None = Field(description="The sum of its children's values.")
    reporting: int | None = Field(
        description="Children with a value (a re-expressed value: legacy sources with a value); null for "
        "own-level indicators.", examples=[15])
    expected: int | None = Field(
        description="Children the unit has (a re-expressed value: its legacy sources); null for own-level "
        "indicators.", examples=[15])
    updated_at: datetime | None = Field(
        description="When the value last changed (the newest of the rows it is derived from).",
        examples=["2024-07-03T08:15:00Z"],
    )
    flags: list[Flag] = Field(description=FLAGS_DESCRIPTION)


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
            "basis": "native", "estimated": False, "reexpressed": None, "flags": [],
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
            "basis": "native", "estimated": False, "reexpressed": None,
            "flags": [{"kind": "outlier", "code": "dossiers_received", "importance": "medium", "score": 5.2,
                       "constant_history": False, "acknowledged": False}],
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


class SeriesPoint(Reexpression):
    period: str
    value: Number | None
    numerator: Number | None
    denominator: Number | None
    source: Literal["reported", "computed", "reexpressed"] | None
    reporting: int | None
    expected: int | None
    partial: bool
    flags: list[Flag] = Field(description=FLAGS_DESCRIPTION)


class Series(BaseModel):
    model_config = ConfigDict(validate_by_name=True, serialize_by_alias=True, **_examples({
        "unit": {"edition": "legacy", "code": "803", "name": "Huyện Bến Lức", "kind": "Huyện",
                 "level": "district", "parent": "80", "children": 15},
        "edition": "legacy", "indicator": "cccd_issued", "from": "2024-01", "to": "2024-02",
        "points": [
            {"period": "2024-01", "value": 120000, "numerator": None, "denominator": None,
             "source": "computed", "reporting": 15, "expected": 15, "partial": False,
             "basis": "native", "estimated": False, "reexpressed": None,
             "flags": [{"kind": "rule", "code": "cccd_issued_never_falls", "importance": "high", "left": 120000,
                        "right": 121400, "acknowledged": False}]},
            {"period": "2024-02", "value": None, "numerator": None, "denominator": None,
             "source": None, "reporting": 0, "expected": 15, "partial": False,
             "basis": "native", "estimated": False, "reexpressed": None, "flags": []},
        ],
    }))

    unit: Unit
    edition: str
    indicator: str
    from_: str = Field(alias="from")
    to: str
    points: list[SeriesPoint]


class LineageItem(BaseModel):
    code: str
    name: str
    level: str
    weight: Number = Field(description="The share of the legacy unit that went into the 2025 unit (1: whole).",
                           examples=[0.5])
    basis: str = Field(description="`whole`, `equal` (divided, equal shares) or the label of loaded weights "
                       "(`population`, `area`, …).", examples=["whole"])


class Lineage(BaseModel):
    model_config = _examples({
        "unit": {"edition": "2025", "code": "80", "name": "Tỉnh Tây Ninh", "kind": "Tỉnh",
                 "level": "province", "parent": "VN", "children": 96},
        "edition": "2025", "direction": "formed_from",
        "items": [{"code": "72", "name": "Tỉnh Tây Ninh", "level": "province", "weight": 1, "basis": "whole"},
                  {"code": "80", "name": "Tỉnh Long An", "level": "province", "weight": 1, "basis": "whole"}],
    })

    unit: Unit
    edition: str
    direction: Literal["formed_from", "went_into"] = Field(
        description="`formed_from`: a 2025 unit's legacy units; `went_into`: the 2025 units a legacy unit went into."
    )
    items: list[LineageItem] = Field(description="Units of the other edition, largest weight first; only those "
                                     "the key may read.")


class Acknowledgement(BaseModel):
    by: str = Field(description="Who checked it, as ingest recorded it.", examples=["reviewer-80"])
    at: datetime
    comment: str | None = Field(examples=["the district re-counted; the figure is right"])


class QualityFlag(BaseModel):
    id: int = Field(description="The flag's id (what `POST /v1/quality/{id}/acknowledge` on ingest takes).")
    kind: Literal["rule", "outlier"]
    code: str = Field(description="The rule's code, or the indicator's for an outlier.")
    name_vi: str = Field(description="The rule's name (an outlier: its indicator's), in Vietnamese.")
    name_en: str
    importance: Importance
    status: Literal["open", "acknowledged", "resolved"] = Field(
        description="`open`: holds and nobody checked it; `acknowledged`: holds, a reviewer checked it; `resolved`: "
        "it stopped holding (a later value or a correction).")
    unit: UnitRef
    indicators: list[str] = Field(description="The indicators the flag is about.")
    period: str = Field(description="The native period it is about.")
    left: Number | None = Field(description="A rule's left side; an outlier's scored value (a stock's increase "
                                "over the previous period).")
    right: Number | None = Field(description="A rule's right side; an outlier's median of its previous values.")
    operator: str | None = Field(description="A rule's comparison (`left operator right` should hold); null for an "
                                 "outlier.", examples=["<="])
    left_expression: str | None = Field(description="A rule's left side as the catalogue writes it.")
    right_expression: str | None = Field(description="A rule's right side as the catalogue writes it.")
    score: Number | None = Field(description="An outlier's modified z-score; null for a rule and for a departure "
                                 "from a constant history.")
    constant_history: bool
    opened_at: datetime = Field(description="Since when it holds (again).")
    resolved_at: datetime | None
    updated_at: datetime = Field(description="When its values last changed.")
    acknowledged: Acknowledgement | None = Field(description="A reviewer's check, kept while the values it read "
                                                 "stay as they were.")


class QualityPage(BaseModel):
    model_config = _examples({
        "unit": {"edition": "legacy", "code": "80", "name": "Tỉnh Long An", "kind": "Tỉnh",
                 "level": "province", "parent": "VN", "children": 15},
        "edition": "legacy", "status": "open",
        "items": [{
            "id": 41, "kind": "rule", "code": "vneid_l2_activated_within_cccd",
            "name_vi": "Tài khoản định danh mức 2 kích hoạt không vượt số CCCD đã cấp",
            "name_en": "Level-2 accounts activated do not exceed chip ID cards issued", "importance": "high",
            "status": "open", "unit": {"code": "27991", "name": "Thị trấn Bến Lức", "level": "commune"},
            "indicators": ["cccd_issued", "vneid_l2_activated"], "period": "2024-01", "left": 5000,
            "right": 1100, "operator": "<=", "left_expression": "vneid_l2_activated",
            "right_expression": "cccd_issued", "score": None, "constant_history": False,
            "opened_at": "2024-02-03T08:15:00Z", "resolved_at": None, "updated_at": "2024-02-03T08:15:00Z",
            "acknowledged": None,
        }],
        "next_cursor": None,
    })

    unit: Unit
    edition: str
    status: Literal["open", "acknowledged", "resolved"]
    items: list[QualityFlag] = Field(description="The flags of the unit's whole subtree, most important first "
                                     "(high, medium, low), then the largest |score| (a constant history first, "
                                     "rules last), then the latest period, then id.")
    next_cursor: str | None
