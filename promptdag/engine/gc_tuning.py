"""Python's garbage collector, quieter while a workflow runs.

A running workflow allocates many small objects per task run (Prefect states, events, pydantic
models), and the collector's default thresholds make it rescan the whole heap, hundreds of
thousands of objects of Prefect, pydantic and the modules loaded before the run, again and
again on the flow's event loop. Freezing the heap that existed before the run (`gc.freeze`:
never scanned) and collecting less often brings a large batch's makespan close to the ideal
list schedule (the figures are in docs/architecture.md).

Scoped: the outermost run applies it and puts the thresholds back and unfreezes when it ends,
so a program that calls promptdag keeps its own settings. Cyclic garbage is still collected.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

RUN_THRESHOLDS = (10_000, 50, 50)  # allocations before a young collection; then as gc's own
_depth = 0
_before = gc.get_threshold()  # the thresholds to put back
_lock = threading.Lock()  # runs in several threads of one process share the one collector


@contextmanager
def quiet_collector() -> Iterator[None]:
    """Freeze the heap as it is and collect less often until the outermost run ends."""
    global _depth, _before
    with _lock:
        _depth += 1
        if _depth == 1:
            _before = gc.get_threshold()
            gc.freeze()
            gc.set_threshold(*RUN_THRESHOLDS)
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                gc.set_threshold(*_before)
                gc.unfreeze()
