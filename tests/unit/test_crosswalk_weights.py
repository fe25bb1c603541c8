"""A crosswalk weights file read and checked without a database: every bad line, numbered as a spreadsheet
numbers it, and weights settled to sum to exactly 1."""

from __future__ import annotations

from decimal import Decimal

from shared.crosswalk_weights import Known, check_weights, parse_weights, settled

KNOWN = Known(
    targets={"00007": frozenset({"00008", "00025"}), "80": frozenset({"80"})},
    levels={"00007": "commune", "80": "province"},
    legacy_codes=frozenset({"00007", "80"}),
    codes_2025=frozenset({"00008", "00025", "80"}),
)


def test_lines_are_numbered_as_a_spreadsheet_numbers_them() -> None:
    data = b'legacy_code,code_2025,weight,basis\n\n"00007","00008",0.25,area\n00007,00025,,area\n'
    lines, bad = parse_weights(data)
    assert [(w.line, w.legacy_code, w.weight) for w in lines] == [(3, "00007", Decimal("0.25"))]
    assert [str(b) for b in bad] == ["line 4: weight is empty"]


def test_a_wrong_header_or_an_empty_file_is_refused() -> None:
    assert [b.line for b in parse_weights(b"legacy,new,w,b\n00007,00008,1,x\n")[1]] == [1]
    assert [b.line for b in parse_weights(b"")[1]] == [1]
    assert [b.line for b in parse_weights(b"legacy_code,code_2025,weight,basis\n")[1]] == [1]
    assert "not UTF-8" in parse_weights(b"legacy_code,code_2025,weight,basis\n\xff\n")[1][0].message


def test_weights_out_of_range_and_bad_labels_are_refused() -> None:
    data = (b"legacy_code,code_2025,weight,basis\n00007,00008,1.5,area\n00007,00025,-0.5,area\n"
            b"00007,00008,NaN,area\n00007,00025,0.5,two words\n00007,00025,0.5,whole\n")
    _, bad = parse_weights(data)
    assert [b.line for b in bad] == [2, 3, 4, 5, 6]


def test_a_commune_must_be_given_whole_and_sum_to_one() -> None:
    lines, _ = parse_weights(b"legacy_code,code_2025,weight,basis\n00007,00008,0.5,area\n80,80,1,area\n")
    messages = {str(b) for b in check_weights(lines, KNOWN)}
    assert messages == {
        "line 2: the weights of legacy unit 00007 sum to 0.5, not 1",
        "line 2: legacy unit 00007 also goes into 00025: give the weight of every piece",
        "line 3: legacy province 80 goes whole into its 2025 province: it has no weights to set",
    }


def test_a_pair_named_twice_is_refused() -> None:
    lines, _ = parse_weights(b"legacy_code,code_2025,weight,basis\n00007,00008,0.5,a\n00007,00008,0.5,a\n")
    assert "line 3: 00007 -> 00008 is already on line 2" in {str(b) for b in check_weights(lines, KNOWN)}


def test_weights_within_the_tolerance_are_settled_to_exactly_one() -> None:
    lines, bad = parse_weights(b"legacy_code,code_2025,weight,basis\n00007,00008,0.3333333,a\n"
                               b"00007,00025,0.6666666,a\n")
    assert bad == [] and check_weights(lines, KNOWN) == []
    weights = {w.code_2025: w.weight for w in settled(lines)}
    assert weights == {"00008": Decimal("0.3333333"), "00025": Decimal("0.6666667")}
