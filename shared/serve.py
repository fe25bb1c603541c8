"""`python -m services.<name>`: one way to run any service, under uvicorn, exiting 0 on SIGTERM.

uvicorn re-raises the SIGTERM it handled once its graceful shutdown is over, so under
`uvicorn --factory …` a clean stop still ends as "killed by SIGTERM" (status 143) and an orchestrator
cannot tell it from a crash. Here the signal's disposition before uvicorn starts is an exit with
status 0, which is what uvicorn restores and re-raises: the same graceful shutdown (requests in flight
answered, the relay's or the aggregator's batch in hand finished), reported as the success it is.
"""

from __future__ import annotations

import argparse
import signal
from types import FrameType

import uvicorn


def _exit_cleanly(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def serve(name: str, default_port: int, argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog=f"python -m services.{name}", description=f"the d06 {name} service")
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (0.0.0.0 in a pod)")
    parser.add_argument("--port", type=int, default=default_port)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _exit_cleanly)
    uvicorn.run(
        f"services.{name}.app:create_app", factory=True, host=args.host, port=args.port,
        access_log=False, loop="uvloop", http="httptools", timeout_graceful_shutdown=20,
    )
