"""A file exported from d06 and imported again changes nothing: every row `unchanged`, no new event.

DESIGN §9: "An export imported again is all `unchanged`". The figures go in as a commune officer's CSV
(a stock, a flow, a ratio and a yes/no indicator for Bến Lức's communes and for the district itself), the
real aggregator applies them, and each export format of the query service (CSV, Excel, DHIS2) is posted
back to the ingest service as it was downloaded.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from shared.hierarchy import read_dataset
from tests.fixtures.infra import Stack
from tests.fixtures.processes import ServiceProcesses, start_services
from tests.fixtures.waiting import until

pytestmark = pytest.mark.e2e

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
CONTENT_TYPE = {"csv": "text/csv", "xlsx": XLSX, "dhis2": "application/json"}


@pytest.fixture
def services(stack: Stack) -> Iterator[ServiceProcesses]:
    with start_services(stack) as procs:
        yield procs


def _officer_csv() -> tuple[bytes, int]:
    communes = sorted(u.code for u in read_dataset() if u.edition == "legacy" and u.parent_code == "803")
    lines = ["Đơn vị;Chỉ tiêu;Kỳ;Giá trị;Tử số;Mẫu số;Ghi chú"]
    for n, code in enumerate(communes):
        for month in ("07/2024", "T8/2024"):
            lines.append(f"{code};cccd_issued;{month};{5_000 + 37 * n};;;")
            lines.append(f"{code};dossiers_received;{month};{120 + n};;;")
            lines.append(f"{code};online_dossier_rate;{month};;{60 + n};{120 + n};")
            lines.append(f"{code};working_group_formed;{month};{'có' if n % 3 else 'không'};;;")
    lines.append('803;cccd_issued;07/2024;141000;;;"=HYPERLINK(""http://example.invalid"",""xem"")"')
    return ("\n".join(lines) + "\n").encode(), len(lines) - 1


def test_an_export_imported_again_is_all_unchanged(stack: Stack, services: ServiceProcesses) -> None:
    headers = {"Authorization": f"Bearer {services.key}"}
    body, rows = _officer_csv()
    with httpx.Client(headers=headers, timeout=120) as client:
        first = client.post(f"{services.ingest}/v1/imports", content=body, headers={"Content-Type": "text/csv"})
        assert first.status_code in (200, 201), first.text
        assert (first.json()["created"], first.json()["rejected"]) == (rows, 0), first.json()

        def applied() -> bool:
            got = client.get(f"{services.query}/v1/units/80/values",
                             params={"edition": "legacy", "period": "2024-08", "indicator": "dossiers_received"})
            return got.status_code == 200 and got.json()["values"][0]["reporting"] == 1

        until(applied, what="the officer's figures rolled up to Long An", within=60)
        events_before = stack_events(stack)

        for fmt in ("csv", "xlsx", "dhis2"):
            exported = client.get(f"{services.query}/v1/exports", params={
                "unit": "803", "edition": "legacy", "from": "2024-07", "to": "2024-08", "format": fmt,
            })
            assert exported.status_code == 200, exported.text
            again = client.post(f"{services.ingest}/v1/imports", content=exported.content,
                                params={"format": "dhis2"} if fmt == "dhis2" else {},
                                headers={"Content-Type": CONTENT_TYPE[fmt]})
            assert again.status_code in (200, 201), f"{fmt}: {again.text}"
            summary = again.json()
            assert summary["rows"] > 0, fmt
            assert summary["unchanged"] == summary["rows"], f"{fmt}: {summary}"
            assert (summary["created"], summary["updated"], summary["retracted"], summary["rejected"]) == (
                0, 0, 0, 0), f"{fmt}: {summary}"
        assert stack_events(stack) == events_before  # no new event: nothing for the aggregator to do


def stack_events(stack: Stack) -> int:
    import asyncio

    return int(asyncio.run(stack.fetch("SELECT count(*) AS n FROM outbox"))[0]["n"])
