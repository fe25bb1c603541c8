"""One garbage-collection policy for every service.

A batch of events allocates hundreds of thousands of short-lived, acyclic objects (parsed JSON, figures,
rows) that reference counting frees. With Python's default thresholds the cyclic collector would run many
times per batch and rescan the long-lived heap (the hierarchy, the libraries) each time. So collections
are rare while a service runs, and whatever lives as long as the process is frozen out of their sight.
Measurements: docs/performance.md ("garbage collector").
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

YOUNG_THRESHOLD = 50_000  # allocations between young collections (Python's default: 700)


@contextlib.contextmanager
def rare_collections() -> Iterator[None]:
    """For a service's lifespan: collect rarely; on exit, restore the defaults and unfreeze the heap."""
    before = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, 50, 100)
    try:
        yield
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()


def freeze_long_lived() -> None:
    """Leave everything alive now out of every later collection (after a hierarchy load, say).

    Collect first, so that no garbage is frozen with it; a frozen object replaced later is still freed
    by its reference count.
    """
    gc.collect()
    gc.freeze()
