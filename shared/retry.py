"""Waiting without giving up and without ignoring a shutdown: capped exponential back-off.

Every dependency of a service (Postgres, the broker) may be down when it starts or vanish while it runs;
each background task keeps trying at a pace that does not hammer them, and a shutdown cuts any wait short.
One implementation for every such loop, so that all of them jitter and cap alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import random


class Backoff:
    def __init__(self, first: float = 0.25, cap: float = 10.0, jitter: float = 0.2) -> None:
        self.first = first
        self.cap = cap
        self.jitter = jitter
        self._next = first

    def reset(self) -> None:
        self._next = self.first

    def next(self) -> float:
        """The next delay, with jitter so that replicas restarted together do not retry in lockstep."""
        delay = self._next
        self._next = min(self._next * 2, self.cap)
        return delay * random.uniform(1 - self.jitter, 1 + self.jitter) if self.jitter else delay


async def sleep_or_stop(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep `seconds` unless `stop` is set first; True when stopping."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
    return stop.is_set()


def describe(exc: BaseException) -> str:
    """One short line for a log: SQLAlchemy's messages go on to quote the statement and every parameter
    (a batch's worth of figures), which belongs neither in a log nor in a dead letter's reason."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0][:200] if lines else ''}"
