"""`d06 import FILE`: a file through POST /v1/imports, with a progress bar and the summary as a table.

The file is streamed from disk (never read whole), the bar following the bytes sent; a large file is
imported in the background by the service (202), and the bar then follows the rows it has read. Exit
status 1 when any row was rejected or the file refused, so a script can tell.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TaskID, TextColumn, TimeRemainingColumn
from rich.table import Table

XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
_CHUNK = 1 << 16
_POLL_SECONDS = 1.0
_SHOWN_ERRORS = 20


def add_command(sub: Any) -> None:
    """`d06 import` on the `d06` parser's subcommands."""
    parser = sub.add_parser("import", help="import a CSV, Excel or DHIS2 file through the ingest API")
    parser.add_argument("file", type=Path)
    parser.add_argument("--dry-run", action="store_true", help="store nothing; say what would happen")
    parser.add_argument("--format", choices=["dhis2"], help="the file is a DHIS2 data value set (JSON or CSV)")
    parser.add_argument("--atomic", choices=["true", "false"], help="refuse the whole file if a row is bad "
                                                                   "(default: up to 5,000 rows)")
    parser.add_argument("--url", default="http://127.0.0.1:8001", help="the ingest service")
    parser.add_argument("--key", help="an API key with the submit role (default: --key-file)")
    parser.add_argument("--key-file", default=".run/dev-api-key")
    parser.set_defaults(fn=cmd_import)


def _content_type(path: Path, dhis2: bool) -> str:
    if path.suffix.lower() == ".xlsx":
        return XLSX_TYPE
    if dhis2 and path.suffix.lower() == ".json":
        return "application/json"
    return "text/csv"


def _chunks(path: Path, progress: Progress, task: TaskID) -> Iterator[bytes]:
    with path.open("rb") as file:
        while chunk := file.read(_CHUNK):
            progress.advance(task, len(chunk))
            yield chunk


def cmd_import(args: argparse.Namespace) -> int:
    key = args.key or Path(args.key_file).read_text().strip()
    params = {k: v for k, v in (("format", args.format), ("atomic", args.atomic),
                                ("dryRun", "true" if args.dry_run else None)) if v}
    headers = {"Authorization": f"Bearer {key}", "Content-Type": _content_type(args.file, args.format == "dhis2")}
    console = Console(stderr=True)
    base = args.url.rstrip("/")
    with httpx.Client(base_url=base, headers={"Authorization": headers["Authorization"]}, timeout=None) as client, \
            Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TimeRemainingColumn(),
                     console=console, transient=True) as progress:
        task = progress.add_task("sending", total=args.file.stat().st_size)
        response = client.post("/v1/imports", params=params, headers=headers,
                               content=_chunks(args.file, progress, task))
        if response.status_code == 202:
            progress.update(task, description="importing", completed=0, total=response.json().get("rows") or 1)
            response = _follow(client, response, progress, task)
    body = response.json()
    if response.status_code >= 400:
        print(f"{args.file}: {body.get('detail', response.text)}", file=sys.stderr)
        _errors(body.get("errors") or [])
        return 1
    _summary(args.file, body)
    return 1 if body.get("rejected") or body.get("status") == "failed" else 0


def _follow(client: httpx.Client, response: httpx.Response, progress: Progress, task: TaskID) -> httpx.Response:
    where = response.headers["location"]
    while True:
        time.sleep(_POLL_SECONDS)
        response = client.get(where)
        body = response.json()
        if response.status_code != 200 or body.get("status") != "running":
            return response
        progress.update(task, completed=body.get("progress", {}).get("rows_read", 0))


def _summary(path: Path, body: dict[str, Any]) -> None:
    table = Table(title=f"{path.name}: {body.get('status')}" + (" (dry run: nothing stored)"
                                                                 if body.get("dryRun") else ""))
    for name in ("rows", "accepted", "created", "updated", "unchanged", "retracted", "rejected"):
        table.add_column(name, justify="right")
    table.add_row(*(f"{body.get(name, 0):,}" for name in ("rows", "accepted", "created", "updated", "unchanged",
                                                          "retracted", "rejected")))
    Console().print(table)
    if body.get("id"):
        print(f"import {body['id']}")
    _errors(body.get("errors") or [])


def _errors(errors: list[dict[str, Any]]) -> None:
    if not errors:
        return
    table = Table(title=f"errors (the first {min(len(errors), _SHOWN_ERRORS)} of {len(errors):,} listed)")
    for name in ("row", "column", "value", "message"):
        table.add_column(name)
    for error in errors[:_SHOWN_ERRORS]:
        table.add_row(*(str(error.get(name) if error.get(name) is not None else "") for name in
                        ("row", "column", "value", "message")))
    Console().print(table)
