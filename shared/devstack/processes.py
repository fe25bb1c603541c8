"""Processes seen through /proc: liveness, process groups, command lines and signals.

Liveness comes from `/proc/<pid>/stat`, not `kill(pid, 0)`: where PID 1 never reaps orphans a dead
server lingers as a zombie, which `kill(pid, 0)` still reports as alive (see the package docstring).
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Final

#: /proc states of a process that has exited (a zombie is only waiting to be reaped).
_EXITED: Final = ("Z", "X", "x")


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state, process group) of `pid`, or None when it does not exist."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    except OSError:
        return ("?", -1)
    # The command name is in parentheses and may itself contain spaces or parentheses.
    fields = raw[raw.rfind(")") + 2 :].split()
    return fields[0], int(fields[2])


def alive(pid: int) -> bool:
    """True when `pid` exists and has not exited (zombies included among the exited)."""
    if not Path("/proc/self/stat").exists():  # not Linux: best effort
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass  # it exists; it is just not ours
        return True
    info = _proc_stat(pid)
    return info is not None and info[0] not in _EXITED


def comm(pid: int) -> str:
    """The command name of `pid` ("" when it cannot be read)."""
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def cmdline(pid: int) -> list[str]:
    """The argv of `pid` ([] when it cannot be read)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes whose process group is `pgid`."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        info = _proc_stat(int(entry.name))
        if info is not None and info[1] == pgid and info[0] not in _EXITED:
            members.append(int(entry.name))
    return members


def wait_gone(pids: Sequence[int], timeout: float) -> bool:
    """Wait until none of `pids` is alive; False if one still is after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while any(alive(p) for p in pids):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)
    return True


def send_signal(pid: int, sig: signal.Signals) -> None:
    """Signal `pid`; one that has already gone is not an error."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
