"""Live progress of a run for a person: a rich display on a terminal, plain lines elsewhere.

The scheduler emits `TaskEvent`s (promptdag/engine/events.py); `show_progress` picks the listener:

- on a terminal (stderr is a TTY): a progress bar (finished / total, elapsed, estimate), the
  tasks running now with their elapsed time and attempt, and, printed above it as they happen,
  retries with their reason and failures with theirs; reused tasks are counted in the bar;
- otherwise (CI logs, pipes): one line per event, the formats scripts grep:
  `  [3/4] ok Task (0.12s)`, `  [2/2] FAILED Task (0.01s): why`, `  retry Task (attempt 2): why`;
  a reused task's line ends with `reused`;
- quiet (`--quiet`, `--json`): nothing.

Everything printed from a spec or a model goes through `terminal.safe` and into rich as `Text`
(never as markup), so a task name cannot style, move or clear the terminal. Events come from
the flow's event loop and from Prefect's task threads; the display keeps its state under a
lock and rich redraws it from its own thread.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, ClassVar, Literal

from promptdag.cli._terminal import safe
from promptdag.engine.events import TaskEvent, subscribe

if TYPE_CHECKING:
    from rich.console import Console, RenderableType

Mode = Literal["live", "plain", "quiet"]
MARKS = {"completed": "ok", "failed": "FAILED", "skipped": "skipped", "cancelled": "cancelled"}
RUNNING_SHOWN = 8  # running tasks listed under the bar; the rest are counted


def choose_mode(quiet: bool = False) -> Mode:
    """`quiet` when asked, `live` when stderr is a terminal that can redraw, else `plain`."""
    if quiet:
        return "quiet"
    return "live" if _stderr_console().is_terminal and not _is_dumb() else "plain"


@contextmanager
def show_progress(mode: Mode, title: str = "tasks", total: int | None = None,
                  extra: Callable[[], str | None] | None = None) -> Iterator[None]:
    """Show the run's events in `mode` while the block runs (see the module docstring).

    Args:
        mode: from `choose_mode`.
        title: the bar's label (live mode).
        total: tasks expected, if known before the first one finishes.
        extra: a line under the bar, asked at each redraw (a batch's rows so far).
    """
    if mode == "quiet":
        yield
        return
    listener: PlainProgress | LiveProgress = (
        PlainProgress() if mode == "plain" else LiveProgress(title, total=total, extra=extra)
    )
    unsubscribe = subscribe(listener)
    try:
        with listener:
            yield
    finally:
        unsubscribe()


class PlainProgress:
    """One stderr line per retry and per finished task (logs and pipes)."""

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(self, *exc_info: object) -> None:
        return None

    def __call__(self, event: TaskEvent) -> None:
        line = plain_line(event)
        if line is not None:
            print(line, file=sys.stderr, flush=True)


def plain_line(event: TaskEvent) -> str | None:
    """The plain line for an event, or None for events plain mode does not show (starts)."""
    if event.kind == "retrying":
        return f"  retry {safe(event.task)} (attempt {event.attempt}): {safe(event.error)}"
    if event.kind != "finished":
        return None
    took = f" ({event.duration_seconds:.2f}s)" if event.duration_seconds is not None else ""
    why = f": {safe(event.error)}" if event.error and event.status == "failed" else ""
    reused = " reused" if event.result is not None and event.result.reused else ""
    return (f"  [{event.finished_count}/{event.total}] {MARKS.get(event.status or '', '?')}"
            f" {safe(event.task)}{took}{why}{reused}")


class LiveProgress:
    """The terminal display: a bar, the running tasks, retries and failures as they happen."""

    refresh_per_second: ClassVar[float] = 8

    def __init__(self, title: str = "tasks", console: Console | None = None,
                 total: int | None = None, extra: Callable[[], str | None] | None = None
                 ) -> None:
        from rich.live import Live
        from rich.markup import escape
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.console = console or _stderr_console()
        self._lock = threading.Lock()
        self._running: dict[tuple[str, str], tuple[float, int]] = {}  # -> (since, attempt)
        self._totals: dict[str, int] = {}
        self._finished: dict[str, int] = {}
        self._fanned: dict[str, int] = {}  # tasks of the total that fan-outs added
        self._reused = self._failed = self._retries = 0
        self._extra = extra
        self._bar = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("tasks"), TimeElapsedColumn(), TextColumn("left"),
            TimeRemainingColumn(), console=self.console,
        )
        self._bar_id = self._bar.add_task(escape(safe(title)[:40]), total=total)
        self._live = Live(console=self.console, get_renderable=self._render,
                          refresh_per_second=self.refresh_per_second, transient=False)

    def __enter__(self) -> LiveProgress:
        self._live.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._live.refresh()
        self._live.stop()

    def __call__(self, event: TaskEvent) -> None:
        key = (event.workflow, event.task)
        note: tuple[str, str] | None = None
        with self._lock:
            if event.kind == "started":
                self._running[key] = (time.monotonic(), 1)
            elif event.kind == "retrying":
                self._retries += 1
                since = self._running.get(key, (time.monotonic(), 1))[0]
                self._running[key] = (since, event.attempt or 2)
                note = (f"retry {safe(event.task)} (attempt {event.attempt}): "
                        f"{safe(event.error)}", "yellow")
            else:
                self._running.pop(key, None)
                self._totals[event.workflow] = event.total
                self._fanned[event.workflow] = event.from_fan_outs
                self._finished[event.workflow] = event.finished_count
                if event.result is not None and event.result.reused:
                    self._reused += 1
                if event.status == "failed":
                    self._failed += 1
                    note = (f"FAILED {safe(event.task)}: {safe(event.error)}", "red")
                elif event.status in ("skipped", "cancelled"):
                    note = (f"{event.status} {safe(event.task)}", "dim")
            finished, total = sum(self._finished.values()), sum(self._totals.values())
        if event.kind == "finished":
            self._bar.update(self._bar_id, completed=finished, total=max(total, finished))
        if note is not None:
            from rich.text import Text

            self._live.console.print(Text(note[0], style=note[1]))

    def _render(self) -> RenderableType:
        from rich.console import Group
        from rich.text import Text

        now = time.monotonic()
        with self._lock:
            running = sorted(self._running.items(), key=lambda item: item[1][0])
            counts = [f"{what} {n}" for n, what in ((self._reused, "reused"),
                      (self._retries, "retries"), (self._failed, "failed")) if n]
            if fanned := sum(self._fanned.values()):
                counts.insert(0, f"{fanned} of the tasks from fan-outs")
        lines: list[RenderableType] = [self._bar]
        if counts:
            lines.append(Text("  " + ", ".join(counts), style="dim"))
        if self._extra is not None and (extra := self._extra()):
            lines.append(Text(f"  {extra}"))
        for (_, task), (since, attempt) in running[:RUNNING_SHOWN]:
            again = f"  attempt {attempt}" if attempt > 1 else ""
            lines.append(Text(f"  running {safe(task)[:60]}  {now - since:5.1f}s{again}"))
        if len(running) > RUNNING_SHOWN:
            lines.append(Text(f"  ... and {len(running) - RUNNING_SHOWN} more running",
                              style="dim"))
        return Group(*lines)


def _stderr_console() -> Console:
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def _is_dumb() -> bool:
    import os

    return os.environ.get("TERM", "") in ("dumb", "unknown")


def run_url(flow_run_id: str | None) -> str | None:
    """The run's page in the Prefect UI when a server is in use (None on Prefect's temporary
    local API, which has no UI)."""
    if not flow_run_id:
        return None
    from uuid import UUID

    from promptdag.remote.client import ui_url

    try:
        return ui_url(UUID(flow_run_id))
    except ValueError:
        return None
