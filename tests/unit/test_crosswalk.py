"""The 2025 crosswalk as read from the installed `vietnamadminunits` package: its counts, its coverage of
both editions, weights that sum to exactly 1, and a loud failure on a name slug that resolves to no code."""

from __future__ import annotations

import json
from collections import defaultdict
from decimal import Decimal
from pathlib import Path

import pytest

from shared.crosswalk import Crosswalk, CrosswalkError, equal_shares, package_file, read_crosswalk, settle
from shared.hierarchy import read_dataset


@pytest.fixture(scope="module")
def crosswalk() -> Crosswalk:
    return read_crosswalk()


def test_counts_are_those_of_the_reform(crosswalk: Crosswalk) -> None:
    c = crosswalk.counts
    # 9,564 communes and the 5 island districts that have none went whole into 3,282 2025 communes.
    assert (c.whole_sources, c.island_districts, c.whole_targets) == (9_569, 5, 3_282)
    assert c.divided_sources == 471
    assert c.targets_reached == 3_321
    assert (c.legacy_provinces, c.provinces_2025) == (63, 34)
    divided = defaultdict(int)
    for link in crosswalk.links:
        if link.basis == "equal":
            divided[link.legacy_code] += 1
    assert len(divided) == 471
    assert set(divided.values()) <= {2, 3, 4, 5}


def test_every_unit_of_both_editions_is_present(crosswalk: Crosswalk) -> None:
    units = read_dataset()
    legacy_communes = {u.code for u in units if u.edition == "legacy" and u.level == "commune"}
    communes_2025 = {u.code for u in units if u.edition == "2025" and u.level == "commune"}
    legacy_provinces = {u.code for u in units if u.edition == "legacy" and u.level == "province"}
    by_level = defaultdict(set)
    for link in crosswalk.links:
        by_level[link.legacy_level].add(link.legacy_code)
    assert by_level["commune"] == legacy_communes
    assert len(legacy_communes) == 10_035
    assert by_level["province"] == legacy_provinces
    assert {link.code_2025 for link in crosswalk.links if link.legacy_level != "province"} == communes_2025


def test_island_districts_are_the_sources_of_special_zones(crosswalk: Crosswalk) -> None:
    units = {(u.edition, u.code): u for u in read_dataset()}
    islands = {link.legacy_code: link for link in crosswalk.links if link.legacy_level == "district"}
    names = {units["legacy", code].name for code in islands}
    assert names == {"Huyện Côn Đảo", "Huyện Lý Sơn", "Huyện Bạch Long Vĩ", "Huyện Hoàng Sa", "Huyện Cồn Cỏ"}
    for code, link in islands.items():
        assert units["legacy", code].level == "district"
        assert units["2025", link.code_2025].kind == "Đặc khu"
        assert (link.weight, link.basis) == (1, "whole")


def test_weights_of_each_legacy_unit_sum_to_exactly_one(crosswalk: Crosswalk) -> None:
    totals: dict[str, Decimal] = defaultdict(Decimal)
    for link in crosswalk.links:
        assert 0 < link.weight <= 1
        assert (link.weight == 1) == (link.basis == "whole")
        totals[link.legacy_code] += link.weight
    assert set(totals.values()) == {Decimal(1)}


def test_tay_ninh_2025_is_long_an_and_tay_ninh(crosswalk: Crosswalk) -> None:
    units = {(u.edition, u.code): u for u in read_dataset()}
    assert units["2025", "80"].name == "Tỉnh Tây Ninh"
    sources = {x.legacy_code for x in crosswalk.links if x.legacy_level == "province" and x.code_2025 == "80"}
    assert sources == {"72", "80"}
    assert {units["legacy", c].name for c in sources} == {"Tỉnh Tây Ninh", "Tỉnh Long An"}


def test_shares_are_exact() -> None:
    assert sum(equal_shares(3)) == 1
    assert sorted(equal_shares(3)) == [Decimal("0.3333333333"), Decimal("0.3333333333"), Decimal("0.3333333334")]
    assert equal_shares(4) == [Decimal("0.25")] * 4
    assert sum(settle([Decimal("0.6"), Decimal("0.4000004")])) == 1


def _converter() -> dict[str, object]:
    with package_file("converter_2025.json") as path:
        data: dict[str, object] = json.loads(path.read_text(encoding="utf-8"))
    return data


def test_an_unresolvable_slug_fails_with_its_name(tmp_path: Path) -> None:
    data = _converter()
    wards = data["DICT_PROVINCE_WARD_NO_DIVIDED"]["tinhtayninh"]  # type: ignore[index]
    first = next(iter(wards))
    wards[first] = [*wards[first], "tinhlongan_huyenbenluc_xakhongcodau"]
    converter = tmp_path / "converter_2025.json"
    converter.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(CrosswalkError) as err:
        read_crosswalk(converter=converter)
    assert "'tinhlongan_huyenbenluc_xakhongcodau'" in str(err.value)
    assert "'tinhtayninh'" in str(err.value)
    assert "no code" in str(err.value)


def test_a_2025_slug_is_resolved_within_its_province(tmp_path: Path) -> None:
    """`phuongbadinh` is a 2025 ward of Hà Nội; listed under Hồ Chí Minh City it names nothing."""
    data = _converter()
    hanoi = data["DICT_PROVINCE_WARD_NO_DIVIDED"]["thanhphohanoi"]  # type: ignore[index]
    hcm = data["DICT_PROVINCE_WARD_NO_DIVIDED"]["thanhphohochiminh"]  # type: ignore[index]
    hcm["phuongbadinh"] = hanoi.pop("phuongbadinh")
    converter = tmp_path / "converter_2025.json"
    converter.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(CrosswalkError) as err:
        read_crosswalk(converter=converter)
    assert "2025 commune 'phuongbadinh' of 'thanhphohochiminh' resolves to no code" in str(err.value)


def test_a_divided_legacy_province_is_refused(tmp_path: Path) -> None:
    data = _converter()
    provinces = data["DICT_PROVINCE"]  # type: ignore[index]
    provinces["tinhtayninh"].remove("tinhlongan")
    provinces["thanhphohochiminh"].append("tinhlongan")
    converter = tmp_path / "converter_2025.json"
    converter.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(CrosswalkError) as err:
        read_crosswalk(converter=converter)
    assert "a legacy province would be divided" in str(err.value)
