"""Bad files (DESIGN §9, issue 12): each refused with the row and column a spreadsheet would show, and a
message that says what to do."""

from __future__ import annotations

import pytest

from tests.fixtures.files import DAY, HEAD, plain_zip, read_all, xlsx, zip_bomb


def csv(*lines: str, encoding: str = "utf-8") -> bytes:
    return "\n".join(lines).encode(encoding) + b"\n"


def _merge(sheet: object) -> None:
    sheet.merge_cells("A1:B1")  # type: ignore[attr-defined]


def _hide_column(sheet: object) -> None:
    sheet.column_dimensions["C"].hidden = True  # type: ignore[attr-defined]


def _hide_header(sheet: object) -> None:
    sheet.row_dimensions[1].hidden = True  # type: ignore[attr-defined]


GOOD = "00001,cccd_issued,2024-07,87700"
DV = '{{"dataElement": "{}", "period": "{}", "orgUnit": "00001", "value": "{}"}}'
DHIS2_HEAD = "dataelement,period,orgunit,categoryoptioncombo,attributeoptioncombo,value,storedby,lastupdated,comment"

BAD: list[tuple[str, str, bytes, int | None, str | None, str]] = [
    # name, reader, file, row, column, a fragment of the message
    ("empty file", "csv", b"", None, None, "the file is empty"),
    ("BOM alone", "csv", b"\xef\xbb\xbf", None, None, "the file is empty"),
    ("first row blank", "csv", csv("", GOOD), 1, None, "first row is empty"),
    ("Windows-1258 row", "csv", csv("unit,indicator,period,value,comment", GOOD + ",ok",
                                    "00002,cccd_issued,2024-07,5,Hà Giang", encoding="cp1258"), 3, None, "not UTF-8"),
    ("Windows-1258 header", "csv", csv("Đơn,indicator,period,value", encoding="cp1258"), 1, None, "not UTF-8"),
    ("missing period", "csv", csv("unit,indicator,value", "00001,cccd_issued,5"), 1, None, "no column period"),
    ("no value column", "csv", csv("unit,indicator,period,comment", "00001,x,2024,a"), 1, None, "no column value"),
    ("numerator alone", "csv", csv("unit,indicator,period,numerator", "00001,x,2024,1"), 1, None,
     "no column denominator"),
    ("unknown column", "csv", csv("unit,indicator,xyz,period,value", "00001,x,1,2024,1"), 1, "C",
     "'xyz' is not a d06 column"),
    ("duplicate column", "csv", csv("unit,indicator,period,Đơn vị,value", "1,x,2024,1,1"), 1, "D",
     "columns A and D are both unit"),
    ("blank header cell", "csv", csv("unit,,indicator,period,value", "1,,x,2024,1"), 1, "B", "has no header"),
    ("value without header", "csv", csv(",".join(HEAD), GOOD + ",oops"), 2, "E", "which has no header"),
    ("Vietnamese separators", "csv", csv(";".join(HEAD), "00001;cccd_issued;2024-07;1.234,5"), 2, "D",
     "separators that differ between countries"),
    ("thousands comma", "csv", csv(",".join(HEAD), '00001,cccd_issued,2024-07,"1,234"'), 2, "D", "separators"),
    ("thousands dots", "csv", csv(",".join(HEAD), "00001,cccd_issued,2024-07,1.234.567"), 2, "D", "separators"),
    ("thousands space", "csv", csv(",".join(HEAD), "00001,cccd_issued,2024-07,87 700"), 2, "D", "separators"),
    ("words for a number", "csv", csv(",".join(HEAD), "00001,cccd_issued,2024-07,nhiều"), 2, "D",
     "is not a number"),
    ("boolean as maybe", "csv", csv(",".join(HEAD), "00001,dvc_online,2024-07,có lẽ"), 2, "D", "not yes or no"),
    ("period in words", "csv", csv(",".join(HEAD), "00001,cccd_issued,tháng bảy,5"), 2, "C", "is not a period"),
    ("month 13", "csv", csv(",".join(HEAD), "00001,cccd_issued,13/2024,5"), 2, "C", "not a real period"),
    ("year 1899", "csv", csv(",".join(HEAD), "00001,cccd_issued,1899,5"), 2, "C", "outside the accepted window"),
    ("broken quotes", "csv", csv(",".join(HEAD), '00001,"cccd"x,2024-07,5'), 2, None, "cannot be read as CSV"),
    ("formula cell", "xlsx", xlsx([HEAD, ["00001", "cccd_issued", "2024-07", "=SUM(1,2)"]]), 2, "D", "formula"),
    ("error cell", "xlsx", xlsx([HEAD, ["00001", "cccd_issued", "2024-07", "#DIV/0!"]]), 2, "D", "#DIV/0!"),
    ("date as period", "xlsx", xlsx([HEAD, ["00001", "cccd_issued", DAY, 5]]), 2, "C", "a date is not a period"),
    ("merged header", "xlsx", xlsx([["Đơn vị", None, "indicator", "period", "value"]], _merge), 1, "A", "merged"),
    ("hidden column", "xlsx", xlsx([HEAD, ["1", "x", "2024", 1]], _hide_column), 1, "C", "column C is hidden"),
    ("hidden header", "xlsx", xlsx([HEAD, ["1", "x", "2024", 1]], _hide_header), 1, None, "row 1) is hidden"),
    ("empty sheet", "xlsx", xlsx([]), None, None, "first sheet is empty"),
    ("zip bomb", "xlsx", zip_bomb(), None, None, "possible zip bomb"),
    ("not an xlsx", "xlsx", b"unit,indicator\n" * 10, None, None, "not an Excel workbook"),
    ("old .xls", "xlsx", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(500), None, None, "old .xls"),
    ("zip of something else", "xlsx", plain_zip(), None, None, "is a zip but"),
    ("numerator alone", "dhis2-json", ('{"dataValues": [' + DV.format("r.numerator", "2024Q3", "5") + "]}").encode(),
     1, "dataElement", "has no r.denominator"),
    ("second numerator", "dhis2-json", ('{"dataValues": [' + DV.format("r.numerator", "2024Q3", "5") + ","
                                        + DV.format("r.numerator", "2024Q3", "6") + "]}").encode(),
     2, "dataElement", "a second r.numerator"),
    ("DHIS2 weekly period", "dhis2-json", ('{"dataValues": [' + DV.format("cccd", "2024W3", "5") + "]}").encode(),
     1, "period", "'2024W3' is not a period"),
    ("no orgUnit", "dhis2-json", b'{"dataValues": [{"dataElement": "x", "period": "2024", "value": "1"}]}', 1,
     "orgUnit", "no orgUnit"),
    ("disaggregated", "dhis2-json", b'{"dataValues": [{"dataElement": "x", "period": "2024", "orgUnit": "1", '
                                    b'"categoryOptionCombo": "MALE", "value": "1"}]}', 1, "categoryOptionCombo",
     "not the default"),
    ("not JSON", "dhis2-json", b"dataElement,period\n", None, None, "not JSON"),
    ("no dataValues", "dhis2-json", b'{"dataSet": "x"}', None, None, 'no "dataValues"'),
    ("DHIS2 CSV denominator alone", "dhis2-csv", csv(DHIS2_HEAD, "r.denominator,202407,00001,,,9,,,"), 2, "A",
     "has no r.numerator"),
    ("DHIS2 CSV unknown column", "dhis2-csv", csv(DHIS2_HEAD + ",colour", "x,2024,1,,,1,,,,red"), 1, "J",
     "not a DHIS2 CSV column"),
    ("DHIS2 CSV without value", "dhis2-csv", csv("dataelement,period,orgunit", "x,2024,1"), 1, None,
     "no column value"),
]


@pytest.mark.parametrize(("kind", "data", "row", "column", "fragment"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_a_bad_file_is_refused_naming_row_and_column(
    kind: str, data: bytes, row: int | None, column: str | None, fragment: str
) -> None:
    _, errors = read_all(kind, data)
    assert errors, "the file was read without an error"
    assert any(e.row == row and e.column == column and fragment in e.message for e in errors), errors


def test_the_table_holds_at_least_thirty_bad_files() -> None:
    assert len(BAD) >= 30


def test_good_rows_beside_a_bad_one_are_still_read() -> None:
    """Non-atomic imports keep the good rows: a row's error does not stop the reader."""
    data = xlsx([HEAD, ["00001", "a", "2024-07", 1], ["00001", "b", DAY, 2], ["00001", "c", "2024-08", 3]])
    rows, errors = read_all("xlsx", data)
    assert [r["indicator"] for r in rows] == ["a", "c"]
    assert [(e.row, e.column) for e in errors] == [(3, "C")]


def test_every_header_problem_is_listed_at_once() -> None:
    _, errors = read_all("csv", csv("unit,foo,unit,bar", "1,2,3,4"))
    assert {(e.column, e.message.split(" ")[0]) for e in errors} >= {("B", "column"), ("C", "columns"),
                                                                     ("D", "column")}
    assert any("no column period" in e.message for e in errors)
