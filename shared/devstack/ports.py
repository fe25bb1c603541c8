"""TCP ports on the loopback interface: picking a free one, and waiting for something to listen."""

from __future__ import annotations

import random
import socket
import time
from pathlib import Path
from typing import Final

LOCALHOST: Final = "127.0.0.1"


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
            if can_bind(host, port):
                return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def can_bind(host: str, port: int) -> bool:
    """True when nothing holds host:port."""
    # No SO_REUSEADDR: stricter than the servers (which set it), so a port we return is really unused.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def port_accepts(host: str, port: int) -> bool:
    """True when something accepts a TCP connection on host:port within half a second."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


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
