"""`python -m bench.loadgen`: the query scenario's load when `wrk` is not available.

`--connections` keep-alive connections, each sending its next GET as soon as the last is answered (as
wrk does), for `--seconds`; prints requests/s and latency percentiles as JSON. Its own process, so its
CPU is at least not taken from the benchmark driver's event loop.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path

from bench.http import Connection
from bench.report import percentile


async def run(port: int, key: str, paths: list[str], connections: int, seconds: float) -> dict[str, float]:
    latencies: list[float] = []
    non_2xx = errors = 0
    deadline = time.monotonic() + seconds

    async def client(offset: int) -> None:
        nonlocal non_2xx, errors
        conn = Connection(port, {"Authorization": f"Bearer {key}"})
        n = offset
        try:
            while time.monotonic() < deadline:
                n += 1
                started = time.perf_counter()
                try:
                    status, _ = await conn.request("GET", paths[n % len(paths)], within=5)
                except (OSError, TimeoutError):
                    errors += 1
                    continue
                latencies.append(time.perf_counter() - started)
                if status >= 400:
                    non_2xx += 1
        finally:
            conn.close()

    started = time.monotonic()
    await asyncio.gather(*(client(i * 7) for i in range(connections)))
    elapsed = time.monotonic() - started
    return {
        "rps": len(latencies) / elapsed, "requests": float(len(latencies)),
        "p50_ms": 1000 * (percentile(latencies, 50) or 0), "p99_ms": 1000 * (percentile(latencies, 99) or 0),
        "non_2xx": float(non_2xx), "socket_errors": float(errors),
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.loadgen")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--paths", type=Path, required=True, help="a JSON list of paths to GET in turn")
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    paths = json.loads(args.paths.read_text())
    import uvloop  # a dependency of the services already

    print(json.dumps(uvloop.run(run(args.port, args.key, paths, args.connections, args.seconds))))


if __name__ == "__main__":
    main()
