"""`make run`'s supervisor with real (tiny) processes and a quick back-off: a killed program comes back under
a new pid, a program that cannot stay up is given up on, and a stop says nothing about what it stopped.
`d06 run` itself under SIGKILLs: tests/e2e/test_run_supervision.py."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest

from shared.devstack.processes import alive
from shared.devstack.supervisor import Clock, CrashLoop, Program, RestartPolicy, Supervisor
from tests.fixtures.waiting import until


def quick(clock: Clock) -> RestartPolicy:
    return RestartPolicy(clock, first=0.05, cap=0.2)


def supervise(tmp_path: Path, name: str, code: str) -> tuple[Supervisor, Program, list[str]]:
    """A supervisor running `python -c code` as `name`, and the list of the lines it says."""
    said: list[str] = []
    supervisor = Supervisor(say=said.append, policy=quick)
    program = Program(name, [sys.executable, "-c", code], dict(os.environ),
                      log=tmp_path / f"{name}.log", pidfile=tmp_path / f"{name}.pid")
    supervisor.start(program)
    return supervisor, program, said


def pid_in(path: Path) -> int | None:
    try:
        return int(path.read_text())
    except (FileNotFoundError, ValueError):
        return None


def test_a_killed_program_is_restarted_and_a_stop_is_not_reported_as_an_exit(tmp_path: Path) -> None:
    supervisor, sleeper, said = supervise(tmp_path, "sleeper", "import time; time.sleep(120)")
    try:
        first = pid_in(sleeper.pidfile)
        assert first is not None and first == supervisor.pid("sleeper") and alive(first)
        os.kill(first, signal.SIGKILL)

        def restarted() -> bool:
            supervisor.poll()
            return pid_in(sleeper.pidfile) not in (None, first)

        until(restarted, what="the sleeper under a new pid")
        second = pid_in(sleeper.pidfile)
        assert second is not None and alive(second)
        assert said == ["!! sleeper exited with -9 (SIGKILL); restarting in 0.05 s (restart 1)"]
    finally:
        supervisor.stop()
    assert not alive(second)
    assert not sleeper.pidfile.exists()
    supervisor.poll()
    assert len(said) == 1


def test_a_program_that_keeps_crashing_is_given_up_on_after_five_exits(tmp_path: Path) -> None:
    supervisor, crasher, said = supervise(tmp_path, "crasher", "import sys; print('cannot start'); sys.exit(3)")

    def polled_forever() -> bool:
        supervisor.poll()
        return False

    try:
        with pytest.raises(CrashLoop) as crash:
            until(polled_forever, what="the crash loop")
    finally:
        supervisor.stop()
    assert str(crash.value) == "crasher exited 5 times within 60 s (restarted 4 times)"
    assert crash.value.log == crasher.log and crasher.log.read_text().count("cannot start") == 5
    assert said == [f"!! crasher exited with 3; restarting in {delay:g} s (restart {n})"
                    for n, delay in enumerate((0.05, 0.1, 0.2, 0.2), start=1)]
    assert not crasher.pidfile.exists()
