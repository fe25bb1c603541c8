"""Opaque cursors: the sort key of the last item served, so a page never repeats or skips an item
when a value changes between two requests (the item moves, the cursor does not)."""

from __future__ import annotations

import base64
import binascii
from typing import Any

import orjson

from shared.errors import ValidationFailed


def encode_cursor(payload: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(payload)).rstrip(b"=").decode()


def decode_cursor(cursor: str) -> dict[str, Any]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        payload = orjson.loads(raw)
    except (binascii.Error, ValueError) as exc:
        raise bad_cursor() from exc
    if not isinstance(payload, dict):
        raise bad_cursor()
    return payload


def bad_cursor() -> ValidationFailed:
    message = "not a cursor of this query; pass the `next_cursor` of the previous page unchanged"
    return ValidationFailed(message, errors=[{"loc": "cursor", "message": message}])
