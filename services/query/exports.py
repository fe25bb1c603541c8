"""Files out (DESIGN §9): export rows written as CSV, Excel or DHIS2 JSON, whole or streamed.

The writers are shared/files' (CSV with a BOM and formula text neutralised, Excel write-only with Vietnamese
headers, DHIS2 `dataValueSets`); they pull rows from a plain iterator. A streamed export's rows come from the
database a chunk at a time (export_rows.py), so a worker thread runs the writer and fetches each chunk from the
event loop when it needs one: the loop stays free, and at most one chunk and one writer buffer are held. An
Excel workbook is a zip whose directory comes last, so it is written to a temporary file (openpyxl's write-only
mode spools the sheet to disk too) and then sent from there.
"""

from __future__ import annotations

import asyncio
import re
import tempfile
from collections.abc import AsyncGenerator, AsyncIterator, Generator, Iterable, Iterator, Sequence
from typing import IO
from urllib.parse import quote

import anyio
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response, StreamingResponse

from services.query.export_rows import ExportRow
from shared.files.csvfile import write_csv
from shared.files.dhis2 import write_dhis2_json
from shared.files.xlsx import write_xlsx
from shared.hierarchy import fold

MEDIA_TYPES: dict[str, str] = {
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "dhis2": "application/json",
}
_SUFFIX = {"csv": "csv", "xlsx": "xlsx", "dhis2": "json"}
_SEND = 1 << 16  # about how many bytes each piece sent holds


def disposition(parts: Sequence[str], fmt: str) -> str:
    """`attachment` with an ASCII filename every client takes (`d06-80-tinh-long-an-2024-01.csv`) and the
    Vietnamese one (RFC 5987 `filename*`) for those that read it."""
    stem = "-".join(p for p in parts if p)
    ascii_stem = re.sub(r"[^a-z0-9]+", "-", fold(stem)).strip("-") or "export"
    utf8 = re.sub(r"[\x00-\x1f\x7f/\\\"]+", "-", stem)
    suffix = _SUFFIX[fmt]
    return (f'attachment; filename="d06-{ascii_stem}.{suffix}"; '
            f"filename*=UTF-8''{quote(f'd06-{utf8}.{suffix}', safe='')}")


def _headers(parts: Sequence[str], fmt: str) -> dict[str, str]:
    # private: an export depends on the key's scope; no shared cache may keep it.
    return {"Content-Disposition": disposition(parts, fmt), "Cache-Control": "private, no-store",
            "Vary": "Authorization"}


def _write(fmt: str, columns: Sequence[str], rows: Iterable[ExportRow]) -> Generator[bytes]:
    if fmt == "csv":
        yield from write_csv(columns, rows)
    elif fmt == "dhis2":
        yield from write_dhis2_json(rows)
    else:  # pragma: no cover - Excel goes through a file
        raise ValueError(fmt)


def _step(writer: Iterator[bytes]) -> bytes | None:
    """The writer's next bytes, gathered to about _SEND: the DHIS2 writer yields each data value alone, and a
    thread hop per value would cost more than writing it."""
    parts: list[bytes] = []
    size = 0
    for part in writer:
        parts.append(part)
        size += len(part)
        if size >= _SEND:
            break
    return b"".join(parts) if parts else None


def _xlsx_file(columns: Sequence[str], rows: Iterable[ExportRow]) -> IO[bytes]:
    out = tempfile.TemporaryFile()  # noqa: SIM115 - handed to the response, which closes it
    try:
        write_xlsx(out, columns, rows)
        out.seek(0)
    except BaseException:
        out.close()
        raise
    return out


def file_response(fmt: str, columns: Sequence[str], rows: list[ExportRow], name: Sequence[str]) -> Response:
    """A small export (one page of a drill-down, one series), written whole."""
    if fmt == "xlsx":
        with _xlsx_file(columns, rows) as f:
            body = f.read()
    else:
        body = b"".join(_write(fmt, columns, rows))
    return Response(body, media_type=MEDIA_TYPES[fmt], headers=_headers(name, fmt))


async def _next_chunk(chunks: AsyncGenerator[list[ExportRow]]) -> list[ExportRow] | None:
    return await anext(chunks, None)


def _pulled(chunks: AsyncGenerator[list[ExportRow]], loop: asyncio.AbstractEventLoop) -> Iterator[ExportRow]:
    """The rows of `chunks`, for a writer running in a worker thread: each chunk is fetched on the loop."""
    while (chunk := asyncio.run_coroutine_threadsafe(_next_chunk(chunks), loop).result()) is not None:
        yield from chunk


async def _streamed(fmt: str, columns: Sequence[str], chunks: AsyncGenerator[list[ExportRow]]) -> AsyncIterator[bytes]:
    loop = asyncio.get_running_loop()
    writer: Generator[bytes] | None = None
    f: IO[bytes] | None = None
    try:
        if fmt == "xlsx":
            f = await run_in_threadpool(_xlsx_file, columns, _pulled(chunks, loop))
            while block := await run_in_threadpool(f.read, _SEND):
                yield block
            return
        writer = _write(fmt, columns, _pulled(chunks, loop))
        while (piece := await run_in_threadpool(_step, writer)) is not None:
            yield piece
    finally:
        # A client gone mid-file cancels the response. A worker thread is never abandoned mid-step (the await
        # returns once it is done), so nothing pulls rows any more: close the writer here, and give the
        # database connection back even though the response is being cancelled.
        with anyio.CancelScope(shield=True):
            if writer is not None:
                writer.close()
            if f is not None:
                f.close()
            await chunks.aclose()


def streamed_response(fmt: str, columns: Sequence[str], chunks: AsyncGenerator[list[ExportRow]],
                      name: Sequence[str]) -> StreamingResponse:
    """A large export, sent as it is read: memory holds one chunk of rows and the writer's buffer."""
    return StreamingResponse(_streamed(fmt, columns, chunks), media_type=MEDIA_TYPES[fmt],
                             headers=_headers(name, fmt))
