"""The body of POST /v1/events, from the bytes on the wire to the list of events the checks read.

Read as a stream and refused as soon as it passes the limit, then parsed by hand rather than through a
pydantic model: numbers must stay exact decimals, and every error must name its location in words a
reporting officer can act on. What each event says is `validation.py`'s business.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterable
from decimal import Decimal
from typing import Any

from shared.errors import MalformedJson, PayloadTooLarge, ValidationFailed, safe_echo

MAX_EVENTS = 5000


async def read_body(stream: AsyncIterable[bytes], limit: int) -> bytes:
    """The body, refused with 413 as soon as the streamed bytes exceed `limit` (chunked or lying clients)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in stream:
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"the body exceeds the limit of {limit:,} bytes; send smaller batches")
        chunks.append(chunk)
    return b"".join(chunks)


def field_name(key: str) -> str:
    """A field name the client sent, quoted in a message: cut, and with invisible characters made visible."""
    return safe_echo(key, 64)


class DuplicateField(ValueError):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


def _unique_fields(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """Refuse an object that names a field twice: parsers disagree on which one wins (the first, the
    last), so a repeated `unit` could be read one way by a check and another way by whoever comes next."""
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for name, _ in pairs:
            if name in seen:
                raise DuplicateField(name)
            seen.add(name)
    return obj


def parse_body(raw: bytes) -> list[Any]:
    """The `events` list of a body, exactly as sent: JSON numbers become Decimal, never float (and an
    integer of thousands of digits is a figure too large, not a parser error)."""
    try:
        # UTF-8 and nothing else (RFC 8259 §8.1): json.loads would also guess UTF-16 and UTF-32 from bytes.
        body = json.loads(raw.decode("utf-8"), parse_float=Decimal, parse_int=Decimal, parse_constant=Decimal,
                          object_pairs_hook=_unique_fields)
    except DuplicateField as exc:
        message = f"the field '{field_name(exc.name)}' appears twice in one object; send each field once"
        raise ValidationFailed(message, errors=[{"loc": "body", "message": message}]) from exc
    except UnicodeDecodeError as exc:
        raise MalformedJson("the request body is not UTF-8 text") from exc
    except json.JSONDecodeError as exc:
        if raw.startswith(b"\xef\xbb\xbf"):
            raise MalformedJson("the request body starts with a byte order mark; send UTF-8 without one") from exc
        raise MalformedJson(f"the request body is not valid JSON: {exc.msg} "
                            f"(line {exc.lineno}, column {exc.colno})") from exc
    except RecursionError as exc:
        raise MalformedJson("the request body nests arrays or objects too deeply") from exc
    except ValueError as exc:  # anything else the parser refuses: never echo its internals
        raise MalformedJson("the request body could not be parsed as JSON") from exc
    if not isinstance(body, dict):
        raise ValidationFailed("the body must be a JSON object", errors=[
            {"loc": "body", "message": 'expected an object like {"events": [...]}'}])
    errors = [{"loc": field_name(k), "message": "unknown field; the body has only `events`"}
              for k in body if k != "events"]
    events = body.get("events")
    if not isinstance(events, list):
        errors.append({"loc": "events", "message": "`events` must be a list of events"})
    elif not 1 <= len(events) <= MAX_EVENTS:
        errors.append({"loc": "events",
                       "message": f"a batch carries 1 to {MAX_EVENTS:,} events; this one has {len(events):,}"})
    if errors or not isinstance(events, list):
        raise ValidationFailed(f"{len(errors)} field(s) are invalid", errors=errors)
    return events
