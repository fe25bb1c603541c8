"""The import API (DESIGN §9): POST /v1/imports takes a file, GET /v1/imports/{id} shows its progress.

A file is a stream of events: its rows go through validation.py, service.submit and the outbox exactly
as POST /v1/events' events do (import_service.py). A file of more than 5,000 rows or 1 MB is imported in
the background (202 and `Location`); a smaller one is answered with its summary. A dry run is always
answered at once and never remembered.
"""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Path, Query, Request
from starlette.responses import Response

from services.ingest.deps import AppState, LoadedHierarchy, Submitter
from services.ingest.import_service import Job, Summary, error_dict, run_import
from services.ingest.import_store import (
    XLSX_TYPE,
    Upload,
    claim,
    count_rows,
    file_format,
    find,
    open_table,
    save,
    spool,
    stored_summary,
)
from services.ingest.state import IngestState
from services.ingest.validation import Context
from shared.auth import Principal, Role
from shared.db import transaction
from shared.errors import (
    Conflict,
    Forbidden,
    NotFound,
    PayloadTooLarge,
    Problem,
    ServiceUnavailable,
    TooManyRequests,
    Unauthorized,
    UnsupportedMediaType,
    ValidationFailed,
    responses,
)
from shared.files.model import FileError, FileRejected
from shared.periods import today_in_vietnam

log = logging.getLogger("d06.ingest.imports")
router = APIRouter(prefix="/v1", tags=["imports"])

MAX_ROWS = 1_000_000
#: An atomic import is one transaction, and every event accepted after its first chunk waits for its
#: COMMIT to be published (the relay never passes a running writer): this bounds that wait to a few seconds.
MAX_ATOMIC_ROWS = 100_000
_IMPORT_ID = re.compile(r"imp_[0-9a-f]{32}")
#: Above either, the import runs in the background and the answer is 202 (docs/files.md).
SYNC_ROWS = 5000
SYNC_BYTES = 1 << 20

_CSV_EXAMPLE = "đơn vị,chỉ tiêu,kỳ,giá trị\n803,cccd_issued,T7/2024,87700\nPhường Phúc Xá,cccd_issued,07/2024,1200\n"
_DHIS2_EXAMPLE = {"dataValues": [
    {"dataElement": "cccd_issued", "period": "202407", "orgUnit": "803", "value": "87700"},
    {"dataElement": "cccd_coverage.numerator", "period": "202407", "orgUnit": "803", "value": "87700"},
    {"dataElement": "cccd_coverage.denominator", "period": "202407", "orgUnit": "803", "value": "90412"},
]}
_SUMMARY_EXAMPLE = {"id": "imp_4f0c…", "status": "done", "rows": 3, "accepted": 2, "created": 1, "updated": 0,
                    "unchanged": 1, "retracted": 0, "rejected": 1, "errors": [
                        {"row": 4, "column": "D", "value": "1.234,5", "message": "'1.234,5' is written with "
                         "separators that differ between countries; …"}]}
_BODY: dict[str, Any] = {"requestBody": {"required": True, "content": {
    "text/csv": {"schema": {"type": "string"}, "example": _CSV_EXAMPLE},
    XLSX_TYPE: {"schema": {"type": "string", "format": "binary"}},
    "application/json": {"schema": {"type": "object"}, "example": _DHIS2_EXAMPLE,
                         "description": "With ?format=dhis2: a DHIS2 dataValueSets document."},
}}}
_SUMMARY = {"content": {"application/json": {"example": _SUMMARY_EXAMPLE}}}


def _json(body: object, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json", headers=headers)


def _refused(summary: Summary) -> Problem:
    """An atomic import refused: 403 for a row outside the key's scope, 409 for an event_id holding other
    content, 422 for anything else; the errors name row and column."""
    errors = [{"loc": _where(e), **error_dict(e)} for e in summary.errors]
    extra: dict[str, Any] = {"rows": summary.rows, "rejected": summary.rejected}
    if summary.dhis2:
        extra["dhis2"] = summary.dhis2_summary()
    first = summary.errors[0] if summary.errors else FileError(None, None, None, "the file is refused")
    if summary.scope_row is not None:
        scoped = next((e for e in summary.errors if e.row == summary.scope_row), first)
        return Forbidden(f"row {summary.scope_row}: {scoped.message}; nothing was stored", errors=errors, **extra)
    kind = Conflict if summary.conflict_row is not None and summary.rejected == 1 else ValidationFailed
    return kind(f"{summary.rejected:,} of {summary.rows:,} rows are refused ({_where(first)}: {first.message}); "
                "nothing was stored", errors=errors, **extra)


def _where(error: FileError) -> str:
    if error.row is None:
        return "the file"
    return f"row {error.row}" + (f", column {error.column}" if error.column else "")


def _read(kind: str, upload: Upload) -> int:
    """The file's rows counted (the header read and checked first); raises FileRejected."""
    return count_rows(kind, upload.file, MAX_ROWS)


@router.post(
    "/imports",
    summary="Import a file of indicator values (CSV, Excel, DHIS2)",
    description=(
        "The body is the file: CSV (`text/csv`, UTF-8, comma or semicolon), Excel (`.xlsx`, its first sheet) "
        "or, with `format=dhis2`, a DHIS2 `dataValueSets` document in JSON or CSV. Every row goes through the "
        "validation, scope check, outbox and sequence of `POST /v1/events`. `atomic` defaults to true up to "
        f"{SYNC_ROWS:,} rows and false above: an atomic file with any bad row is refused whole (403 for a "
        "row outside the key's scope, 422 otherwise), naming row and column as a spreadsheet numbers them. "
        f"A file of more than {SYNC_ROWS:,} rows or {SYNC_BYTES >> 20} MB is answered 202 with `Location: "
        "/v1/imports/{id}`; a smaller one with its summary (201). Uploading the same bytes again answers with "
        f"the first import. At most {MAX_ROWS:,} rows and 100 MB (413), {MAX_ATOMIC_ROWS:,} rows when atomic "
        "(413). docs/files.md has the columns."
    ),
    response_model=None,
    responses={200: {"description": "A dry run, or the earlier import of the same file.", **_SUMMARY},
               201: {"description": "Imported.", **_SUMMARY},
               202: {"description": "Importing in the background; GET the Location for progress."},
               **responses(Unauthorized, Forbidden, Conflict, PayloadTooLarge, UnsupportedMediaType,
                           ValidationFailed, TooManyRequests, ServiceUnavailable)},
    openapi_extra=_BODY,
)
async def import_file(
    request: Request,
    state: AppState,
    principal: Submitter,
    hierarchy: LoadedHierarchy,
    dhis2: Annotated[Literal["dhis2"] | None, Query(alias="format", description="`dhis2` for DHIS2 files.")] = None,
    atomic: Annotated[bool | None, Query(description=f"Refuse the whole file if any row is bad (default: up "
                                                     f"to {SYNC_ROWS:,} rows; at most {MAX_ATOMIC_ROWS:,}).")] = None,
    dry_run: Annotated[bool, Query(alias="dryRun", description="Store nothing; say what would happen.")] = False,
) -> Response:
    upload = await spool(request.stream(), state.settings.max_import_bytes)
    handed_over = False
    try:
        kind = file_format(request.headers.get("content-type", ""), upload.head, dhis2=dhis2 is not None)
        try:
            rows = await asyncio.to_thread(_read, kind, upload)
        except FileRejected as exc:
            errors = [{"loc": _where(e), **error_dict(e)} for e in exc.errors]
            raise ValidationFailed(f"the file cannot be read: {exc.errors[0].message}", errors=errors) from None
        if rows > MAX_ROWS:
            raise PayloadTooLarge(f"the file has more than {MAX_ROWS:,} rows, the limit of one import; split it")
        if atomic and not dry_run and rows > MAX_ATOMIC_ROWS:
            raise PayloadTooLarge(f"the file has more than {MAX_ATOMIC_ROWS:,} rows, the limit of an atomic import "
                                  "(other clients' events wait for it to commit); import it with atomic=false, "
                                  "or split it")
        summary = Summary(rows=rows, results=[] if dry_run else None, dhis2=kind.startswith("dhis2"))
        job = Job(state.engine, Context(state.catalog, hierarchy, principal, today_in_vietnam()),
                  atomic=rows <= SYNC_ROWS if atomic is None else atomic, dry_run=dry_run,
                  client_addr=request.client.host if request.client else None, on_commit=state.wake_relay)
        if not dry_run:
            summary.id = f"imp_{uuid.uuid4().hex}"
            async with transaction(state.engine) as conn:
                earlier = await claim(conn, import_id=summary.id, sha256=upload.sha256, key_id=principal.key_id,
                                      kind=kind, atomic=job.atomic, rows=rows)
            if earlier is not None:
                return await _answer(state, earlier, again=True)
        if not dry_run and (rows > SYNC_ROWS or upload.size > SYNC_BYTES):
            task = asyncio.create_task(_in_background(state, job, kind, upload, summary), name=f"d06-{summary.id}")
            handed_over = True
            state.imports.add(task)
            task.add_done_callback(state.imports.discard)
            return _json(summary.body(), 202, {"Location": f"/v1/imports/{summary.id}"})
        table = await asyncio.to_thread(open_table, kind, upload.file)
        try:
            await run_import(job, table, summary)
        finally:
            if summary.id is not None:
                if summary.status == "running":
                    summary.status = "failed"  # an error of ours, or the client gone: nothing committed answers
                async with transaction(state.engine) as conn:
                    await save(conn, summary)
        if summary.status == "failed":
            raise _refused(summary)
        if dry_run:
            return _json(summary.body())
        return _json(summary.body(), 201, {"Location": f"/v1/imports/{summary.id}"})
    finally:
        if not handed_over:
            upload.file.close()


async def _in_background(state: IngestState, job: Job, kind: str, upload: Upload, summary: Summary) -> None:
    async def progress(current: Summary) -> None:
        async with transaction(state.engine) as conn:
            await save(conn, current)

    try:
        table = await asyncio.to_thread(open_table, kind, upload.file)
        await run_import(Job(**{**job.__dict__, "progress": progress}), table, summary)
    except asyncio.CancelledError:
        summary.status = "failed"
        summary.errors.append(FileError(None, None, None, "the service stopped during the import; rows "
                                        "committed so far are kept: upload the file again to import the rest"))
        raise
    except Exception:
        log.exception("import %s failed", summary.id)
        summary.status = "failed"
        summary.errors.append(FileError(None, None, None, "the import failed on our side; upload the file again "
                                        f"and quote the import id {summary.id} if it fails again"))
    finally:
        upload.file.close()
        await asyncio.shield(progress(summary))


async def _answer(state: IngestState, import_id: str, *, again: bool = False) -> Response:
    async with transaction(state.engine) as conn:
        row = await find(conn, import_id)
    if row is None:
        raise NotFound("no such import is visible to this API key")
    summary = stored_summary(row)
    status = 202 if summary.status == "running" else 200
    headers = {"Location": f"/v1/imports/{import_id}"} if again else None
    return _json(summary.body(), status, headers)


@router.get(
    "/imports/{import_id}",
    summary="The progress, then the summary, of an import",
    description="`status` is `running` (with `progress`), then `done` or `failed`. Only the key that sent the "
                "file, or an admin key, sees it.",
    response_model=None,
    responses={200: {"description": "The summary.", **_SUMMARY},
               **responses(Unauthorized, NotFound, TooManyRequests, ServiceUnavailable)},
)
async def get_import(
    state: AppState, principal: Submitter,
    import_id: Annotated[str, Path(description="The `id` of the import's answer.", examples=["imp_4f0c…"])],
) -> Response:
    if not _IMPORT_ID.fullmatch(import_id):  # could not have been given: never quoted back
        raise NotFound("no such import is visible to this API key")
    async with transaction(state.engine) as conn:
        row = await find(conn, import_id)
    if row is None or not _mine(principal, row.key_id):
        raise NotFound("no such import is visible to this API key")
    summary = stored_summary(row)
    return _json(summary.body())


def _mine(principal: Principal, key_id: str | None) -> bool:
    return principal.key_id == key_id or principal.has(Role.ADMIN)
