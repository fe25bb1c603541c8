"""The one exception devstack raises, and the log tail its messages carry."""

from __future__ import annotations

import os
from pathlib import Path


class DevstackError(RuntimeError):
    """A local server failed to start or stop; the message carries the server's own log."""


def log_tail(path: Path, max_bytes: int = 12_000) -> str:
    """The end of a log file, for exception messages (a failed start is useless without the server's why)."""
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - max_bytes))
            text = fh.read().decode(errors="replace")
    except OSError as exc:
        return f"<log {path} unreadable: {exc}>"
    return ("…" if size > max_bytes else "") + text
