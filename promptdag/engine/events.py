"""Progress events from the scheduler, for whoever shows progress (the CLI, artifacts).

A tiny in-process publish/subscribe (`Channel`, also what engine/review.py announces plans
on): the flow emits, listeners render. Listeners must be quick and must not raise; a failing
listener is dropped from that event, never from the run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, Literal, TypeVar

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
    from_fan_outs: int = 0  # of `total`: instances fan-outs added while running


T = TypeVar("T")


class Channel(Generic[T]):
    """An in-process publish/subscribe list: `emit` calls every listener in turn. Listeners
    must be quick and must not raise; a failing listener misses that item, the emitter never
    sees the failure. The one mechanism for the scheduler's events and the review requests."""

    def __init__(self) -> None:
        self._listeners: list[Callable[[T], None]] = []

    def subscribe(self, listener: Callable[[T], None]) -> Callable[[], None]:
        """Start sending items to `listener`; returns the function that stops it."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def emit(self, item: T) -> None:
        for listener in list(self._listeners):
            try:
                listener(item)
            except Exception:  # a display problem must never break a run
                pass


Listener = Callable[[TaskEvent], None]
_task_events: Channel[TaskEvent] = Channel()


def subscribe(listener: Listener) -> Callable[[], None]:
    """Start sending task events to `listener`; returns the function that stops it."""
    return _task_events.subscribe(listener)


def emit(event: TaskEvent) -> None:
    _task_events.emit(event)


# -- rows of a batch -----------------------------------------------------------------------

_row_events: Channel[RowResult] = Channel()


def subscribe_rows(listener: Callable[[RowResult], None]) -> Callable[[], None]:
    """Hear of each batch row as it ends (its `RowResult`); returns the function that stops it."""
    return _row_events.subscribe(listener)


def emit_row(row: RowResult) -> None:
    """A batch row ended (engine/row_window.py). A listener that fails (a full `--output`
    disk) records its own failure: the run goes on."""
    _row_events.emit(row)
