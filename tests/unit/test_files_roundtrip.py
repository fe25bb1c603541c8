"""Files out and in again (DESIGN §9): what the export writes, the import reads back unchanged — text that
Excel would run as a formula included — and the forms people write headers and periods in."""

from __future__ import annotations

import io
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.files.cells import parse_number
from shared.files.columns import PROVENANCE
from shared.files.csvfile import count_csv, read_csv, write_csv
from shared.files.dhis2 import write_dhis2_json
from shared.files.model import FileError, OutCell
from shared.files.periods import dhis2_period, read_period
from shared.files.xlsx import write_xlsx
from shared.periods import PeriodType, period_containing
from tests.fixtures.files import read_all

INJECTIONS = ['=HYPERLINK("http://evil.example","bấm vào đây")', "+cmd|' /C calc'!A0", "-2+3", "@SUM(A1)",
              "\tTab", "'=already quoted", "''", "'giữ số 0 đầu"]
ROWS: list[dict[str, OutCell]] = [
    {"unit": "00004", "name": "Phường Ba Đình", "level": "commune", "indicator": "cccd_issued", "period": "2024-07",
     "value": Decimal("87700"), "source": "reported", "comment": "Sơ kết 6 tháng và tháng 7/2024"},
    {"unit": "00004", "name": "Phường Ba Đình", "level": "commune", "indicator": "vneid_share", "period": "2024-Q3",
     "numerator": Decimal("1234.5"), "denominator": Decimal("90412"), "source": "reported", "flags": "rule"},
    {"unit": "01", "name": "Hà Nội", "level": "province", "indicator": "residence_notice_deployed", "period": "2024-H1",
     "value": True, "comment": None},
    {"unit": "01", "name": "Hà Nội", "level": "province", "indicator": "cccd_issued", "period": "2024-07-15",
     "value": Decimal("0"), "comment": None},
] + [{"unit": "00004", "indicator": "cccd_issued", "period": f"2023-{m:02d}", "value": Decimal(m), "comment": text}
     for m, text in enumerate(INJECTIONS, start=1)]
COLUMNS = ["unit", "name", "level", "indicator", "period", "value", "numerator", "denominator", "source",
           "flags", "comment"]


def expected(row: dict[str, OutCell], *, provenance: bool) -> dict[str, object]:
    """The row as a reader gives it back; CSV and Excel also carry where a figure comes from (PROVENANCE)."""
    out: dict[str, object] = {k: row.get(k) for k in ("unit", "indicator", "period", "comment")}
    if provenance:
        out |= {k: row[k] for k in PROVENANCE if row.get(k) is not None}
    if row.get("denominator") is not None:
        out |= {"numerator": row["numerator"], "denominator": row["denominator"]}
    else:
        out["value"] = row["value"]
    return out


def comparable(rows: list[dict[str, object]]) -> list[dict[str, object]]:
    return [{k: v for k, v in r.items() if v is not None or k in ("comment",)
             if k not in ("numerator", "denominator") or r.get("denominator") is not None} for r in rows]


def export(kind: str) -> bytes:
    if kind == "csv":
        return b"".join(write_csv(COLUMNS, ROWS))
    if kind == "xlsx":
        out = io.BytesIO()
        write_xlsx(out, COLUMNS, ROWS)
        return out.getvalue()
    return b"".join(write_dhis2_json(ROWS))


@pytest.mark.parametrize(("kind", "reader"), [("csv", "csv"), ("xlsx", "xlsx"), ("dhis2", "dhis2-json")])
def test_an_export_reads_back_as_the_same_rows(kind: str, reader: str) -> None:
    rows, errors = read_all(reader, export(kind))
    assert errors == []
    got = sorted(comparable(rows), key=lambda r: (str(r["period"]), str(r["indicator"])))
    want = sorted(comparable([expected(r, provenance=kind != "dhis2") for r in ROWS]),
                  key=lambda r: (str(r["period"]), str(r["indicator"])))
    assert got == want


def test_the_csv_export_neutralises_formulas_and_opens_in_excel_as_utf8() -> None:
    data = export("csv")
    assert data.startswith(b"\xef\xbb\xbf")
    text = data.decode("utf-8-sig")
    assert "\"'=HYPERLINK(" in text and ",'+cmd|" in text and ",'-2+3" in text and ",'@SUM" in text
    assert "Phường Ba Đình" in text


def test_the_excel_export_has_vietnamese_headers_numbers_and_no_formula() -> None:
    from openpyxl import load_workbook

    sheet = load_workbook(io.BytesIO(export("xlsx"))).active
    assert sheet is not None
    assert [c.value for c in sheet[1]][:6] == ["Mã đơn vị", "Tên đơn vị", "Cấp", "Mã chỉ tiêu", "Kỳ", "Giá trị"]
    assert sheet["F2"].data_type == "n" and sheet["E2"].data_type == "s"
    assert all(c.data_type != "f" for row in sheet.iter_rows() for c in row)


def test_the_dhis2_export_writes_ratio_components_and_dhis2_periods() -> None:
    import orjson

    values = orjson.loads(export("dhis2"))["dataValues"]
    assert {"dataElement": "vneid_share.numerator", "period": "2024Q3", "orgUnit": "00004",
            "value": "1234.5"} in values
    assert {v["period"] for v in values} >= {"202407", "2024S1", "20240715"}


def test_vietnamese_headers_without_diacritics_semicolons_and_a_bom() -> None:
    data = "\ufeff  MA DON VI ;chi tieu;Ky bao cao;Gia tri;Ghi chú;Tên đơn vị\n00004;cccd_issued;T7/2024;87700;x;y\n"
    rows, errors = read_all("csv", data.encode())
    assert errors == []
    assert rows == [{"unit": "00004", "indicator": "cccd_issued", "period": "2024-07", "value": Decimal("87700"),
                     "comment": "x"}]


def test_quoted_fields_over_several_lines_count_as_one_row() -> None:
    data = 'unit,indicator,period,value,comment\n1,a,2024,1,"two\nlines"\n1,b,2024,x,\n'
    _, errors = read_all("csv", data.encode())
    assert [(e.row, e.column) for e in errors] == [(3, "D")]


def test_dhis2_set_level_defaults_and_deleted_values() -> None:
    data = (b'{"orgUnit": "00004", "period": "202407", "dataValues": [{"dataElement": "a", "value": "5"},'
            b'{"dataElement": "b", "value": "7", "deleted": true}]}')
    rows, errors = read_all("dhis2-json", data)
    assert errors == []
    assert [(r["unit"], r["period"], r["value"]) for r in rows] == [("00004", "2024-07", Decimal(5)),
                                                                     ("00004", "2024-07", None)]


@pytest.mark.parametrize(("text", "code"), [
    ("2024-07", "2024-07"), ("07/2024", "2024-07"), ("7/2024", "2024-07"), ("T7/2024", "2024-07"),
    ("tháng 7/2024", "2024-07"), ("Tháng 7 năm 2024", "2024-07"), ("Q3/2024", "2024-Q3"), ("Quý 3/2024", "2024-Q3"),
    ("quý III/2024", "2024-Q3"), ("6 tháng đầu năm 2024", "2024-H1"), ("6 THANG CUOI NAM 2024", "2024-H2"),
    ("năm 2024", "2024"), ("2024", "2024"), ("202407", "2024-07"), ("2024Q3", "2024-Q3"), ("2024S1", "2024-H1"),
    ("2024S2", "2024-H2"), ("20240715", "2024-07-15"), ("15/07/2024", "2024-07-15"), (2024, "2024"),
    (202407.0, "2024-07"),
])
def test_periods_as_people_and_dhis2_write_them(text: str | int | float, code: str) -> None:
    assert read_period(text).code == code


@given(st.dates(), st.sampled_from(list(PeriodType)))
def test_every_period_reads_back_from_its_code_and_its_dhis2_form(day: object, ptype: PeriodType) -> None:
    from datetime import date

    assert isinstance(day, date)
    period = period_containing(day, ptype)
    if not 2000 <= day.year <= 2100:
        return
    assert read_period(period.code) == period
    assert read_period(dhis2_period(period)) == period
    if ptype is PeriodType.MONTH:
        assert read_period(f"T{day.month}/{day.year}") == period


@pytest.mark.parametrize(("cell", "number"), [("1234.5", Decimal("1234.5")), (" 1234 ", Decimal(1234)),
                                              (1234.5, Decimal("1234.5")), (87700, Decimal(87700)),
                                              ("-3", Decimal(-3)), ("", None), (None, None), (0.1, Decimal("0.1"))])
def test_numbers_as_d06_takes_them(cell: str | int | float | None, number: Decimal | None) -> None:
    assert parse_number(cell) == number


def test_a_csv_is_counted_as_it_is_read() -> None:
    # blank rows (spreadsheets keep them) are no rows; a value right of the header is a row, with its error
    data = ("\ufeffunit;indicator;period;value\n803;cccd_issued;2024-07;1\n;;;\n  ; ;\t;\n"
            '804;cccd_issued;2024-07;"2\n"\n805;cccd_issued;2024-07;3;oops\n\n806;cccd_issued;2024-07;4\n').encode()
    rows = list(read_csv(io.BytesIO(data)).rows)
    assert len(rows) == 4 and sum(isinstance(r, FileError) for r in rows) == 1
    assert count_csv(io.BytesIO(data), 1_000) == 4
    assert count_csv(io.BytesIO(data), 2) == 3  # limit + 1: enough to refuse the file
