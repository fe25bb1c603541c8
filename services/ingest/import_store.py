"""An uploaded file on its way in: spooled to disk while it is hashed, its format told, its reader opened;
and the `imports` table (migration 0006) that remembers each import and its summary.

The body is never held whole in memory: it goes to a temporary file chunk by chunk, hashed on the way
(SHA-256, the idempotency key of an upload) and refused with 413 as soon as it passes the limit.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import AsyncIterable
from dataclasses import dataclass
from typing import IO, Any

import orjson
from sqlalchemy import Row, text
from sqlalchemy.ext.asyncio import AsyncConnection

from services.ingest.import_service import Summary, error_dict
from shared.errors import PayloadTooLarge, UnsupportedMediaType
from shared.files.csvfile import count_csv, read_csv
from shared.files.dhis2 import read_dhis2_csv, read_dhis2_json
from shared.files.model import FileError, Table
from shared.files.xlsx import read_xlsx

XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
_ZIP_MAGIC = b"PK\x03\x04"
_OLE_MAGIC = b"\xd0\xcf\x11\xe0"  # an old .xls: read_xlsx refuses it with a message saying what to do
_TEXT_TYPES = ("text/csv", "text/plain", "application/csv", "application/octet-stream", "")
_SPOOL_IN_MEMORY = 1 << 20  # bytes a small upload keeps in memory before the spool moves to disk


@dataclass
class Upload:
    file: IO[bytes]
    sha256: str
    size: int
    head: bytes  # the first bytes, to tell the format by


async def spool(stream: AsyncIterable[bytes], limit: int) -> Upload:
    """The request body in a temporary file (deleted when closed), hashed; 413 past `limit` bytes."""
    file = tempfile.SpooledTemporaryFile(max_size=_SPOOL_IN_MEMORY)  # noqa: SIM115  # closed by the caller
    digest = hashlib.sha256()
    size = 0
    head = b""
    try:
        async for chunk in stream:
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(f"the file exceeds the limit of {limit:,} bytes (100 MB); split it into "
                                      "several files")
            digest.update(chunk)
            if len(head) < 64:
                head += chunk[: 64 - len(head)]
            file.write(chunk)
    except BaseException:
        file.close()
        raise
    file.seek(0)
    return Upload(file, digest.hexdigest(), size, head)


def file_format(content_type: str, head: bytes, *, dhis2: bool) -> str:
    """`csv`, `xlsx`, `dhis2-json` or `dhis2-csv`, from `?format=`, the content type and the first bytes."""
    media = content_type.split(";")[0].strip().lower()
    start = head.removeprefix(b"\xef\xbb\xbf").lstrip()
    if dhis2:
        return "dhis2-json" if media == "application/json" or start.startswith(b"{") else "dhis2-csv"
    if media == XLSX_TYPE or head.startswith((_ZIP_MAGIC, _OLE_MAGIC)):
        return "xlsx"
    if media == "application/json":
        raise UnsupportedMediaType("a JSON file is imported with ?format=dhis2 (a DHIS2 data value set); "
                                   "d06's own events in JSON go to POST /v1/events")
    if media not in _TEXT_TYPES:
        raise UnsupportedMediaType(f"'{media}' is not a file d06 imports: send CSV (text/csv), Excel "
                                   f"({XLSX_TYPE}) or, with ?format=dhis2, DHIS2 JSON or CSV")
    return "csv"


def open_table(kind: str, file: IO[bytes]) -> Table:
    """The file's reader (shared/files), from its start; raises FileRejected for a file that cannot be read."""
    file.seek(0)
    if kind == "xlsx":
        return read_xlsx(file)  # type: ignore[arg-type]  # a seekable binary file
    if kind == "dhis2-json":
        return read_dhis2_json(file.read())  # parsed whole: orjson needs the document (docs/files.md)
    if kind == "dhis2-csv":
        return read_dhis2_csv(file)  # type: ignore[arg-type]
    return read_csv(file)  # type: ignore[arg-type]


def count_rows(kind: str, file: IO[bytes], limit: int) -> int:
    """The file's rows (refused ones included), counted up to `limit + 1`, the header read and checked
    first; raises FileRejected. A CSV is counted by the csv module alone, at a fraction of reading it."""
    if kind == "csv":
        file.seek(0)
        return count_csv(file, limit)  # type: ignore[arg-type]  # a binary file
    n = 0
    for _ in open_table(kind, file).rows:
        n += 1
        if n > limit:
            break
    return n


# --- the imports table ---------------------------------------------------------------------------------

#: A running import saves its progress after every chunk; one silent this long died with its process (a
#: SIGKILL, a lost node), and would otherwise answer for its file for ever.
STALE = "10 minutes"
_EXPIRE = text(f"""
UPDATE imports SET status = 'failed', finished_at = now(), errors = errors || CAST(:error AS jsonb)
WHERE status = 'running' AND updated_at < now() - interval '{STALE}'
""")
_DIED = orjson.dumps([{"row": None, "column": None, "value": None, "message": (
    "the import stopped with the service that ran it; rows committed before are kept: upload the file again "
    "to import the rest")}]).decode()

_CLAIM = text("""
INSERT INTO imports (id, sha256, key_id, format, status, atomic, rows)
VALUES (:id, :sha256, :key_id, :format, 'running', :atomic, :rows)
ON CONFLICT (sha256, format, coalesce(key_id, '')) WHERE status <> 'failed' DO NOTHING
RETURNING id
""")
_EARLIER = text("""
SELECT id FROM imports
WHERE sha256 = :sha256 AND format = :format AND coalesce(key_id, '') = coalesce(:key_id, '') AND status <> 'failed'
""")


async def claim(conn: AsyncConnection, *, import_id: str, sha256: str, key_id: str | None, kind: str,
                atomic: bool, rows: int) -> str | None:
    """Record a new import; None when it is new, else the id of the earlier import of the same file by the
    same key (running or done), which answers for this one."""
    params = {"id": import_id, "sha256": sha256, "key_id": key_id, "format": kind, "atomic": atomic, "rows": rows}
    await conn.execute(_EXPIRE, {"error": _DIED})
    if (await conn.execute(_CLAIM, params)).first() is not None:
        return None
    earlier = (await conn.execute(_EARLIER, params)).first()
    if earlier is None:  # pragma: no cover - the conflicting import failed in between: nothing answers
        return None
    return str(earlier.id)


async def save(conn: AsyncConnection, summary: Summary) -> None:
    """The summary as it stands (progress while running, the result once finished)."""
    finished = summary.status != "running"
    await conn.execute(text("""
        UPDATE imports SET status = :status, rows = :rows, rows_done = :done, accepted = :accepted,
               created = :created, updated = :updated, unchanged = :unchanged, retracted = :retracted,
               rejected = :rejected, errors = CAST(:errors AS jsonb),
               updated_at = now(), finished_at = CASE WHEN :finished THEN now() END
        WHERE id = :id
    """), {**summary.counts(), "status": summary.status, "done": summary.done, "id": summary.id,
           "errors": orjson.dumps([error_dict(e) for e in summary.errors]).decode(),
           "finished": finished})


async def find(conn: AsyncConnection, import_id: str) -> Row[Any] | None:
    await conn.execute(_EXPIRE, {"error": _DIED})
    return (await conn.execute(text("SELECT * FROM imports WHERE id = :id"), {"id": import_id})).first()


def stored_summary(row: Row[Any]) -> Summary:
    """An import read back as its summary."""
    return Summary(id=row.id, status=row.status, rows=row.rows, created=row.created, updated=row.updated,
                   unchanged=row.unchanged, retracted=row.retracted, rejected=row.rejected, done=row.rows_done,
                   errors=[FileError(e["row"], e["column"], e["value"], e["message"]) for e in row.errors],
                   dhis2=row.format.startswith("dhis2"))
