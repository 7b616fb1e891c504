"""Progress events from the scheduler, for whoever shows progress (the CLI, artifacts).

A tiny in-process publish/subscribe: the flow emits, listeners render. Listeners must be quick
and must not raise; a failing listener is dropped from that event, never from the run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from promptdag.engine.results import RowResult, TaskResult


@dataclass(frozen=True)
class TaskEvent:
    """A workflow task started, is being retried (`error` says why, `attempt` is the next
    one), or ended."""

    workflow: str
    task: str
    kind: Literal["started", "retrying", "finished"]
    status: str | None
    finished_count: int
    total: int
    duration_seconds: float | None = None
    error: str | None = None
    attempt: int | None = None
    result: TaskResult | None = None  # a finished task's whole result (batch rows, --output)


Listener = Callable[[TaskEvent], None]
_listeners: list[Listener] = []


def subscribe(listener: Listener) -> Callable[[], None]:
    """Start sending events to `listener`; returns the function that stops it."""
    _listeners.append(listener)
    return lambda: _listeners.remove(listener) if listener in _listeners else None


def emit(event: TaskEvent) -> None:
    for listener in list(_listeners):
        try:
            listener(event)
        except Exception:  # a display problem must never break a run
            pass


# -- rows of a batch -----------------------------------------------------------------------

RowListener = Callable[["RowResult"], None]
_row_listeners: list[RowListener] = []


def subscribe_rows(listener: RowListener) -> Callable[[], None]:
    """Hear of each batch row as it ends (its `RowResult`); returns the function that stops it."""
    _row_listeners.append(listener)
    return lambda: _row_listeners.remove(listener) if listener in _row_listeners else None


def emit_row(row: RowResult) -> None:
    """A batch row ended (engine/row_window.py). A listener that fails (a full `--output`
    disk) records its own failure: the run goes on."""
    for listener in list(_row_listeners):
        try:
            listener(row)
        except Exception:
            pass
