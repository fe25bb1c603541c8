"""`make run`'s synthetic demo data (shared/demo_synthetic.py), loaded through the public ingest API.

Each month's CSV goes to `POST /v1/imports` (DESIGN §9); a deployment without that route (it answers 404)
gets the same rows through `POST /v1/events` in batches of 5,000. The months loaded are noted in
`.run/demo/loaded.txt`, so the next `make run` loads only what is new (the current month, once a month
has passed) — unless the database has lost them (a reset), which the query service tells.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path
from typing import Any

import httpx

from shared import demo_synthetic

BATCH = 5_000
PARALLEL = 4  # one client waits on each answer's commit: a few at once keep the ingest service busy
TEXT_COLUMNS = ("unit", "indicator", "period", "edition", "event_id", "comment")
TIMEOUT = httpx.Timeout(300, connect=10)
APPLY_SECONDS = 900
LOADED_WHEN = 60  # legacy provinces with a 2024-01 figure: the synthetic months are in this database


class DemoLoader:
    def __init__(self, key: str, ingest: str, query: str, directory: Path) -> None:
        self.headers = {"Authorization": f"Bearer {key}"}
        self.ingest = ingest
        self.query = query
        self.directory = directory
        self.marker = directory / "loaded.txt"
        self.imports = True  # until the ingest service says it has no /v1/imports

    def present(self) -> bool:
        """Whether this database already holds the synthetic dataset (the seed reports have no 2024-01)."""
        try:
            r = httpx.get(f"{self.query}/v1/units/VN/values", headers=self.headers, timeout=10,
                          params={"edition": "legacy", "period": "2024-01", "indicator": "cccd_issued"})
        except httpx.HTTPError:
            return False
        values = r.json().get("values", []) if r.status_code == 200 else []
        return bool(values) and (values[0].get("reporting") or 0) >= LOADED_WHEN

    def load(self, today: date) -> None:
        loaded = set(self.marker.read_text().split()) if self.marker.exists() and self.present() else set()
        todo = [m for m in demo_synthetic.months(today) if m not in loaded]
        if not todo:
            print(f"==> demo: the synthetic dataset is already loaded ({len(loaded)} months); reused", flush=True)
            return
        print(f"==> demo: loading a SYNTHETIC national dataset, {len(todo)} months (invented figures, "
              f"each row says so; D06_DEMO=seeds skips it)", flush=True)
        started = time.monotonic()
        data = demo_synthetic.nation()
        total = 0
        for n, month in enumerate(todo, 1):
            path, rows = demo_synthetic.write_month(data, self.directory, month)
            how = self._post(path)
            path.unlink()
            total += rows
            loaded.add(month)
            self.marker.write_text("\n".join(sorted(loaded)) + "\n")
            print(f"    {month}: {rows:,} rows {how} ({n}/{len(todo)}, {total:,} rows, "
                  f"{time.monotonic() - started:.0f}s)", flush=True)
        print(f"==> demo: synthetic dataset posted ({total:,} rows); waiting for the aggregator to apply it",
              flush=True)
        if self._applied(todo[-1], deadline=time.monotonic() + APPLY_SECONDS):
            print(f"==> demo: the synthetic dataset is in every figure ({time.monotonic() - started:.0f}s)", flush=True)
        else:
            print(f"    (the aggregator is still applying it after {APPLY_SECONDS // 60} minutes; the figures fill in "
                  f"as it goes)", flush=True)

    def _applied(self, last: str, deadline: float) -> bool:
        """Whether the nation shows the last month posted from most provinces (what was posted last)."""
        edition = "legacy" if last < demo_synthetic.REFORM_MONTH else "2025"
        while time.monotonic() < deadline:
            try:
                r = httpx.get(f"{self.query}/v1/units/VN/values", headers=self.headers, timeout=10,
                              params={"edition": edition, "period": last, "indicator": "cccd_issued"})
                values = r.json().get("values", []) if r.status_code == 200 else []
                if values and (values[0].get("reporting") or 0) >= 0.9 * (values[0].get("expected") or 1):
                    return True
            except httpx.HTTPError:
                pass
            time.sleep(2)
        return False

    def _post(self, path: Path) -> str:
        if self.imports:
            with httpx.Client(timeout=TIMEOUT, headers=self.headers) as client:
                r = client.post(f"{self.ingest}/v1/imports", params={"atomic": "false"}, content=path.read_bytes(),
                                headers={"Content-Type": "text/csv"})
                if r.status_code != 404:
                    self._finish(client, r)
                    return "imported"
            self.imports = False
            print("    (this ingest service has no POST /v1/imports: posting the rows to /v1/events instead)",
                  flush=True)
        with httpx.Client(timeout=TIMEOUT, headers=self.headers) as client, ThreadPoolExecutor(PARALLEL) as pool:

            def post(batch: list[dict[str, Any]]) -> httpx.Response:
                return client.post(f"{self.ingest}/v1/events", params={"atomic": "false"}, json={"events": batch})

            for r in pool.map(post, _batches(path)):
                if r.status_code != 202:
                    raise RuntimeError(f"POST /v1/events answered {r.status_code}: {r.text[:500]}")
        return "posted"

    def _finish(self, client: httpx.Client, r: httpx.Response) -> None:
        """Until the import's summary says it is done: a large file is answered 202 with a Location to follow."""
        if r.status_code >= 400:
            raise RuntimeError(f"POST /v1/imports answered {r.status_code}: {r.text[:500]}")
        summary: dict[str, Any] = r.json()
        location = r.headers.get("Location")
        while summary.get("status") == "running" and location:
            time.sleep(1)
            summary = client.get(f"{self.ingest}{location}" if location.startswith("/") else location).json()
        if summary.get("status") == "failed":
            raise RuntimeError(f"the import failed: {summary}")


def _number(text: str) -> int | float | bool | None:
    if text in ("true", "false"):
        return text == "true"
    if not text:
        return None
    number = float(text)
    return int(number) if number.is_integer() else number


def _batches(path: Path) -> Iterator[list[dict[str, Any]]]:
    """The CSV's rows as POST /v1/events bodies, BATCH at a time."""
    batch: list[dict[str, Any]] = []
    with path.open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            event: dict[str, Any] = {k: row[k] for k in TEXT_COLUMNS}
            for field in ("value", "numerator", "denominator"):
                if row[field]:
                    event[field] = _number(row[field])
            batch.append(event)
            if len(batch) == BATCH:
                yield batch
                batch = []
    if batch:
        yield batch
