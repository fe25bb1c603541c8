"""`python -m services.ingest [--host H] [--port P]`: the ingest service under uvicorn (port 8001).

A SIGTERM ends with uvicorn's graceful shutdown (requests in flight answered, the relay's batch in hand
published and marked) and exit status 0: uvicorn restores the signal's previous disposition and
re-raises it once it is done, and that disposition is set here to a clean exit.
"""

from __future__ import annotations

import argparse
import signal
from types import FrameType

import uvicorn


def _exit_cleanly(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m services.ingest", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (0.0.0.0 in a pod)")
    parser.add_argument("--port", type=int, default=8001)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _exit_cleanly)
    uvicorn.run("services.ingest.app:create_app", factory=True, host=args.host, port=args.port, access_log=False)


if __name__ == "__main__":
    main()
