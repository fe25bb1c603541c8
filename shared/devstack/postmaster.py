"""The postmaster of a data directory: its postmaster.pid, whether it is alive, and the leftovers of a dead one.

PostgreSQL itself trusts `kill(pid, 0)` on the PID in postmaster.pid, so a zombie or a reused PID makes it
refuse to start; here liveness is checked through /proc and a stale file is cleared before starting.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
from dataclasses import dataclass
from pathlib import Path

from shared.devstack.processes import alive, comm, group_members, send_signal, wait_gone

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PidFile:
    """The lines of PGDATA/postmaster.pid that matter here (pid 0: the file is garbled)."""

    pid: int
    port: int | None


def read_pidfile(data_dir: Path) -> PidFile | None:
    """The postmaster.pid of `data_dir`, or None when there is none."""
    try:
        lines = (data_dir / "postmaster.pid").read_text().splitlines()
    except (FileNotFoundError, NotADirectoryError):
        return None
    try:
        pid = int(lines[0])
    except (IndexError, ValueError):
        return PidFile(pid=0, port=None)  # a half-written file of a crashed start
    port = int(lines[3]) if len(lines) > 3 and lines[3].strip().isdigit() else None
    return PidFile(pid=pid, port=port)


def is_our_postmaster(pid: int, data_dir: Path) -> bool:
    """`pid` is a live postgres whose cwd is `data_dir` (guards against PID reuse after a crash)."""
    if pid <= 0 or not alive(pid) or comm(pid) != "postgres":
        return False
    try:
        return Path(os.readlink(f"/proc/{pid}/cwd")) == data_dir.resolve()
    except OSError:
        return True  # cannot inspect another user's process: trust the name


def clear_stale(info: PidFile, data_dir: Path, socket_dir: Path) -> None:
    """Remove the postmaster.pid of a dead server, after its orphaned backends have gone.

    PostgreSQL clears a stale file by itself only when the old PID is free; a zombie or a reused PID
    makes it refuse to start, and surviving backends keep the old shared memory segment "in use".
    """
    if info.pid > 0:
        leftovers = [p for p in group_members(info.pid) if comm(p) == "postgres"]
        if leftovers and not wait_gone(leftovers, 5.0):
            _log.warning("killing orphaned backends %s of a dead postmaster", leftovers)
            for pid in leftovers:
                send_signal(pid, signal.SIGKILL)
            wait_gone(leftovers, 5.0)
    _log.info("removing stale postmaster.pid (pid %s) from %s", info.pid, data_dir)
    with contextlib.suppress(FileNotFoundError):
        (data_dir / "postmaster.pid").unlink()
    # The unix socket's lock file names the dead PID too, and is checked the same way.
    for lock in socket_dir.glob(".s.PGSQL.*.lock"):
        try:
            owner = int(lock.read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            owner = 0
        if not alive(owner) or owner == info.pid:
            _log.info("removing stale socket lock %s (pid %s)", lock, owner)
            with contextlib.suppress(FileNotFoundError):
                lock.unlink()
                lock.with_suffix("").unlink()
