"""`make run`'s services kept running the way Kubernetes keeps a pod's containers running.

A service that exits without being asked to is started again after a capped exponential back-off, with
a line saying how it ended and how many restarts it has had; the back-off starts afresh once a run has
lasted long enough to count as healthy. Only a crash loop (so many exits within a window that restarting
is clearly not helping) gives up, by raising `CrashLoop` for the caller to stop everything.

The supervised processes run in a process group of their own: Ctrl-C in a terminal signals the whole
foreground group, and a service that received it directly would exit on its own, racing the supervisor,
which could not tell that exit from a crash. Here only the supervisor hears Ctrl-C, and it stops them.

`RestartPolicy` is the decision alone, with its clock injected, so it is tested without processes.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from shared.retry import Backoff

Clock = Callable[[], float]

FIRST_DELAY: Final = 0.5
MAX_DELAY: Final = 10.0
# A run this long was healthy: its crash is a new incident and waits only FIRST_DELAY again.
STABLE_AFTER: Final = 30.0
CRASH_LIMIT: Final = 5
CRASH_WINDOW: Final = 60.0


class RestartPolicy:
    """When to restart one service that exited, or that it is crash-looping and restarting is pointless.

    Call `started()` each time the process starts and `exited()` each time it exits unasked.
    """

    def __init__(
        self,
        clock: Clock = time.monotonic,
        *,
        first: float = FIRST_DELAY,
        cap: float = MAX_DELAY,
        stable_after: float = STABLE_AFTER,
        limit: int = CRASH_LIMIT,
        window: float = CRASH_WINDOW,
    ) -> None:
        self._clock = clock
        # No jitter: there are no replicas here that could fall into step, and the log line states the delay.
        self._backoff = Backoff(first, cap, jitter=0)
        self.stable_after = stable_after
        self.limit = limit
        self.window = window
        self._exits: deque[float] = deque()
        self._started_at = clock()
        self.restarts = 0

    def started(self) -> None:
        self._started_at = self._clock()

    def exited(self) -> float | None:
        """Seconds to wait before the restart, or None to give up: `limit` exits within `window` seconds."""
        now = self._clock()
        if now - self._started_at >= self.stable_after:
            self._backoff.reset()
        self._exits.append(now)
        while self._exits[0] <= now - self.window:
            self._exits.popleft()
        if len(self._exits) >= self.limit:
            return None
        self.restarts += 1
        return self._backoff.next()


class CrashLoop(Exception):
    """A supervised program exited `limit` times within `window` seconds."""

    def __init__(self, name: str, policy: RestartPolicy, log: Path) -> None:
        super().__init__(
            f"{name} exited {policy.limit} times within {policy.window:g} s (restarted {policy.restarts} times)"
        )
        self.name = name
        self.log = log


@dataclass(frozen=True)
class Program:
    name: str
    argv: Sequence[str]
    env: Mapping[str, str]
    log: Path  # stdout and stderr, appended to across restarts
    pidfile: Path  # holds the pid while the process runs; absent while it waits for its restart


def exit_status(returncode: int) -> str:
    """`1`, or `-9 (SIGKILL)` for a process ended by a signal."""
    if returncode < 0:
        try:
            return f"{returncode} ({signal.Signals(-returncode).name})"
        except ValueError:
            pass
    return str(returncode)


def _say(line: str) -> None:
    print(line, flush=True)


@dataclass
class _Child:
    program: Program
    policy: RestartPolicy
    proc: subprocess.Popen[bytes] | None = None
    restart_at: float | None = None


class Supervisor:
    """Owns its programs' processes, their restarts and their pid files. Synchronous: call `poll()` often."""

    def __init__(
        self,
        *,
        clock: Clock = time.monotonic,
        say: Callable[[str], None] = _say,
        policy: Callable[[Clock], RestartPolicy] = RestartPolicy,
    ) -> None:
        self._clock = clock
        self._say = say
        self._policy = policy
        self._children: dict[str, _Child] = {}
        self._stopping = False

    def start(self, program: Program) -> None:
        if program.name in self._children:
            raise ValueError(f"{program.name} is already supervised")
        child = _Child(program, self._policy(self._clock))
        self._children[program.name] = child
        self._spawn(child)

    def pid(self, name: str) -> int | None:
        """The pid of `name` while it runs (None while it waits for a restart)."""
        proc = self._children[name].proc
        return None if proc is None else proc.pid

    def poll(self) -> None:
        """Notice exits and start what is due; raises `CrashLoop` when a program exits too often to go on."""
        if self._stopping:
            return
        for child in self._children.values():
            if child.proc is None:
                if child.restart_at is not None and self._clock() >= child.restart_at:
                    self._spawn(child)
                continue
            returncode = child.proc.poll()
            if returncode is None:
                continue
            child.proc = None
            child.program.pidfile.unlink(missing_ok=True)
            delay = child.policy.exited()
            if delay is None:
                raise CrashLoop(child.program.name, child.policy, child.program.log)
            child.restart_at = self._clock() + delay
            self._say(
                f"!! {child.program.name} exited with {exit_status(returncode)}; "
                f"restarting in {delay:g} s (restart {child.policy.restarts})"
            )

    def stop(self, timeout: float = 20) -> None:
        """SIGTERM to every process, newest program first; SIGKILL to one still running after `timeout`."""
        self._stopping = True
        children = list(reversed(self._children.values()))
        for child in children:
            if child.proc is not None and child.proc.poll() is None:
                child.proc.terminate()
        for child in children:
            if child.proc is not None:
                try:
                    child.proc.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    child.proc.kill()
                    child.proc.wait()
            child.program.pidfile.unlink(missing_ok=True)

    def _spawn(self, child: _Child) -> None:
        program = child.program
        with program.log.open("ab") as log:
            child.proc = subprocess.Popen(
                list(program.argv), env=dict(program.env), stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, process_group=0,
            )
        child.restart_at = None
        child.policy.started()
        program.pidfile.write_text(f"{child.proc.pid}\n")
