"""The figures of a run: the table printed at the end and the JSON file kept under bench/results/."""

from __future__ import annotations

import math
import os
import platform
import subprocess
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import orjson

Bound = tuple[Literal[">=", "<="], float]


@dataclass
class Figure:
    scenario: str
    figure: str
    measured: float | None
    unit: str
    target: Bound | None = None  # the performance issue's aim
    floor: Bound | None = None  # DESIGN §6's promise
    note: str = ""

    @property
    def status(self) -> str:
        if self.measured is None:
            return "FAILED" if self.target or self.floor else ""
        if self.target and _meets(self.measured, self.target):
            return "target met"
        if self.floor:
            return "floor met" if _meets(self.measured, self.floor) else "BELOW FLOOR"
        return "missed" if self.target else ""

    def target_text(self) -> str:
        parts = []
        if self.target:
            parts.append(_bound(self.target, self.unit))
        if self.floor:
            parts.append(f"floor {_bound(self.floor, self.unit)}")
        return "; ".join(parts) or "—"

    def measured_text(self) -> str:
        return "—" if self.measured is None else _number(self.measured, self.unit)


def _meets(value: float, bound: Bound) -> bool:
    op, limit = bound
    return value >= limit if op == ">=" else value <= limit


def _bound(bound: Bound, unit: str) -> str:
    op, limit = bound
    shown = f"{limit:,.0f} {unit}" if limit == int(limit) else _number(limit, unit)
    return f"{'≥' if op == '>=' else '≤'} {shown}"


def _number(value: float, unit: str) -> str:
    if unit in ("ms", "µs"):
        return f"{value:,.1f} {unit}" if value >= 10 else f"{value:,.2f} {unit}"
    if unit == "x":
        return f"{value:,.0f}×" if value >= 10 else f"{value:,.2f}×"
    return f"{value:,.0f} {unit}"


def percentile(values: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile (p in 0..100) of the values; None when there are none."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def table(figures: Sequence[Figure]) -> str:
    rows = [("scenario", "figure", "target", "measured", "")]
    rows += [(f.scenario, f.figure, f.target_text(), f.measured_text(), f.status) for f in figures]
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = []
    for n, row in enumerate(rows):
        lines.append(" | ".join(cell.ljust(w) if i != 3 else cell.rjust(w) for i, (cell, w)
                                in enumerate(zip(row, widths, strict=True))).rstrip())
        if n == 0:
            lines.append("-+-".join("-" * w for w in widths))
    return "\n".join(lines)


@dataclass
class Run:
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    profile: str = "full"
    figures: list[Figure] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    failed: bool = False

    def add(self, *figures: Figure) -> None:
        self.figures.extend(figures)

    def write(self, directory: Path) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{self.started_at.strftime('%Y%m%dT%H%M%SZ')}.json"
        document = {
            "started_at": self.started_at.isoformat(),
            "finished_at": datetime.now(UTC).isoformat(),
            "profile": self.profile,
            "failed": self.failed,
            "machine": machine(),
            "figures": [{**asdict(f), "status": f.status} for f in self.figures],
            "details": self.details,
        }
        path.write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS))
        return path


def speed_probe() -> float:
    """Seconds (wall clock) a fixed pure-Python loop takes. Shared and virtual machines vary from one hour to
    the next (this one by more than a factor of two), and other work on the machine takes its share: compare
    a run's figures with another's only at a similar probe."""
    started = time.perf_counter()
    total = 0
    for i in range(5_000_000):
        total += i
    return time.perf_counter() - started


def machine() -> dict[str, Any]:
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                check=False, timeout=5).stdout.strip()
    except OSError:
        commit = ""
    return {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
            "commit": commit or None}
