"""`python -m services.aggregate [--host H] [--port P]`: the aggregator under uvicorn, exiting 0 on SIGTERM.

uvicorn re-raises the SIGTERM it handled once its graceful shutdown is over, so under
`uvicorn --factory services.aggregate.app:create_app` a clean stop still ends as "killed by SIGTERM"
(status 143). Here the signal's disposition before uvicorn starts is an exit with status 0, which is
what uvicorn restores and re-raises: the same graceful shutdown (the batch in hand commits, the consumer
leaves its group), reported as the success it is. A SIGTERM before uvicorn is up exits 0 at once:
nothing has been consumed yet.
"""

from __future__ import annotations

import argparse
import signal
from types import FrameType

import uvicorn


def _exit_cleanly(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m services.aggregate", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (0.0.0.0 in a pod)")
    parser.add_argument("--port", type=int, default=8002)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _exit_cleanly)
    uvicorn.run(
        "services.aggregate.app:create_app", factory=True, host=args.host, port=args.port, access_log=False
    )


if __name__ == "__main__":
    main()
