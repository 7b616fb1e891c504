"""A streamed batch's scheduling state: rows read as they are needed, a bounded window open.

The one scheduler (flows/scheduler.py) asks a `RowWindow` what it would ask a `ReadySet`: what
is ready, what a finished task does, what never ran. Behind that, the window keeps at most
`window` rows open, each with its own `ReadySet` over the row's tasks; a row whose every task
has settled is closed: its `RowResult` goes to `on_row` (the row log, `--output`), its counts
to the tally, and it is dropped, so memory depends on the window, not on the row count. The
next row is read from the stream only when a slot opens, so the first row starts as soon as
it is read.

Rows are started in data order; among the open rows' ready tasks, an earlier row's go first,
then priority and declaration order within the row. A row that cannot run (a field missing,
an id seen before) is a failed row with that reason; the others go on. Tasks added while a row
runs (a fan-out's instances, `add`) join that row's ready set and close with it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from promptdag.engine.batch import Row, RowInstance, RowPlan, row_id, row_result
from promptdag.engine.ready_set import ReadySet
from promptdag.engine.results import RowResult, Summary, TaskResult, summarise
from promptdag.errors import SpecError
from promptdag.llm.base import Usage
from promptdag.spec.graph import WorkflowGraph
from promptdag.spec.models import TaskSpec

RowSink = Callable[[RowResult, list[TaskResult]], None]
KEEP_TASKS_OF_ROWS = 50  # tasks of failed rows kept in the result, for diagnosis


@dataclass
class Tally:
    """Totals over closed rows: the batch's summary and usage without keeping its tasks."""

    summary: Summary = field(default_factory=lambda: summarise([]))
    usage: Usage = field(default_factory=Usage)
    saved_usage: Usage = field(default_factory=Usage)
    rows: int = 0
    failed_rows: int = 0
    kept: list[TaskResult] = field(default_factory=list)  # failed rows' tasks, the first few
    kept_rows: int = 0

    def add(self, result: RowResult, tasks: list[TaskResult], reused: int = 0) -> None:
        """A closed row: its tasks, or for a row passed on from an earlier attempt (`reused`
        tasks, none run again) its tasks counted as reused and its usage as saved."""
        self.rows += 1
        if result.status != "completed":
            self.failed_rows += 1
            if tasks and self.kept_rows < KEEP_TASKS_OF_ROWS:
                self.kept_rows += 1
                self.kept += tasks
        if reused:
            self.saved_usage = self.saved_usage + result.usage
            mine = Summary(total_tasks=reused, completed_count=reused, failed_count=0,
                           skipped_count=0, reused_count=reused, success_rate=1.0)
        elif tasks:
            mine = summarise(tasks)
        else:
            return
        total = self.summary.total_tasks + mine.total_tasks
        counts = {name: getattr(self.summary, name) + getattr(mine, name)
                  for name in ("completed_count", "failed_count", "skipped_count",
                               "cancelled_count", "reused_count", "retried_count",
                               "truncated_count", "unsaved_count")}
        self.summary = Summary(total_tasks=total, **counts, success_rate=round(
            counts["completed_count"] / total, 4) if total else 1.0)
        for task in tasks:
            self.usage = self.usage + task.usage
            if task.saved_usage is not None:
                self.saved_usage = self.saved_usage + task.saved_usage

    @property
    def status(self) -> Literal["completed", "failed"]:
        return "failed" if self.failed_rows else "completed"


@dataclass
class Part:
    """What the scheduler keeps of one workflow instance (a plain run's whole workflow, or one
    open row): its graph, ready set, task specs and the tasks each prompt names; added tasks
    go into its ready set, specs and references."""

    graph: WorkflowGraph
    state: ReadySet
    specs: dict[str, TaskSpec]
    references: dict[str, frozenset[str]]

    def add(self, task: TaskSpec, depends_on: tuple[str, ...], references: frozenset[str],
            before: tuple[str, ...] = ()) -> None:
        """Add a task while the workflow runs (`ReadySet.add`)."""
        self.specs[task.name] = task
        self.references[task.name] = references
        self.state.add(task.name, depends_on, priority=task.priority.rank, when=task.when,
                       before=before)


@dataclass
class _Open(Part):
    instance: RowInstance  # the row's outcome is its tasks' (row_result)


class RowWindow:
    """The ready set of a streamed batch (see module docstring)."""

    def __init__(
        self,
        plan: RowPlan,
        rows: Iterator[Row],
        window: int,
        on_row: RowSink,
        offset: int = 0,
        finished: Callable[[str], RowResult | None] = lambda rid: None,
        expected_rows: int | None = None,
    ) -> None:
        """`finished(row id)`: the row's completed outcome from an earlier attempt of this run
        (a resume), which is then passed on as it is instead of running again.
        `expected_rows`: about how many rows the stream holds, for progress totals."""
        self.expected_rows = expected_rows or 0
        self.plan = plan
        self.window = max(1, window)
        self.on_row = on_row
        self.on_record: Callable[[TaskResult, int], None] = lambda result, count: None
        self.tag: Callable[[TaskResult], TaskResult] = lambda result: result  # fan-out instances
        self.on_close: Callable[[str], None] = lambda rid: None  # a row closed: forget it
        self.finished = finished
        self.tally = Tally()
        self.stopping = False
        self.settled = 0
        self.added = 0  # tasks added to rows while running
        self._rows = enumerate(rows, offset)
        self._exhausted = False
        self._open: dict[str, _Open] = {}  # in data order
        self._owner: dict[str, str] = {}  # task run name -> row id
        self._seen: set[str] = set()  # every row id so far: two rows may not share one
        self._fill()

    # -- what the scheduler asks ------------------------------------------------------------

    def has_ready(self) -> bool:
        if self.stopping:
            return False
        self._fill()
        return any(row.state.has_ready() for row in self._open.values())

    def pop(self) -> str:
        for row in self._open.values():
            if row.state.has_ready():
                return row.state.pop()
        raise IndexError("no task is ready")

    def row_of(self, name: str) -> str | None:
        """The id of the open row that holds a task."""
        return self._owner.get(name)

    def inputs(self, name: str) -> tuple[dict[str, str], dict[str, Any]]:
        return self._open[self._owner[name]].state.inputs(name)

    def order(self, name: str) -> tuple[int, int]:
        row = self._open[self._owner[name]]
        return row.instance.row.index, row.state.index[name]

    def part_for(self, tasks: tuple[str, ...]) -> Part:
        """The open row that holds the first of `tasks` (a task, or what an added task waits
        for)."""
        rid = next((self._owner[t] for t in tasks if t in self._owner), None)
        if rid is None:
            raise ValueError("a task added to a batch must wait for a task of an open row")
        return self._open[rid]

    def add(self, task: TaskSpec, depends_on: tuple[str, ...], references: frozenset[str],
            before: tuple[str, ...] = ()) -> None:
        """Add a task to the row of the tasks it waits for (`Part.add`)."""
        part = self.part_for((*before, *depends_on))
        assert isinstance(part, _Open)
        self._owner[task.name] = part.instance.row.id
        self.added += 1
        part.add(task, depends_on, references, before)

    def skip(self, name: str, why: str) -> None:
        rid = self._owner[name]
        self._open[rid].state.skip(name, why)
        self._close_if_done(rid)

    @property
    def total(self) -> int:
        """Tasks of the batch for progress: rows expected (or read so far, if more) times the
        tasks of a row, and the tasks added while running (fan-out instances)."""
        rows = max(self.expected_rows, self.tally.rows + len(self._open))
        return rows * len(self.plan.graph.names) + self.added

    def settle(self, result: TaskResult) -> None:
        rid = self._owner[result.name]
        row = self._open[rid]
        row.state.settle(result)
        if row.state.stopping:  # fail_fast: the batch starts nothing more
            self.stopping = True
        self._close_if_done(rid)

    def finish(self, reason: str) -> list[TaskResult]:
        """Close every open row, what never ran cancelled for `reason`; rows never read are
        failed rows for the same reason. Returns the tasks kept for the result."""
        for rid in list(self._open):
            self._open[rid].state.finish(reason)
            self._close_if_done(rid)
        for index, row in self._rows:
            rid = row_id(row, index)
            self._emit(RowResult(id=rid, index=index, status="failed", error=reason), [])
        return self.tally.kept

    # -- rows in and out --------------------------------------------------------------------

    def _fill(self) -> None:
        while not self._exhausted and not self.stopping and len(self._open) < self.window:
            try:
                index, row = next(self._rows)
            except StopIteration:
                self._exhausted = True
                return
            self._admit(index, row)

    def _admit(self, index: int, row: Row) -> None:
        rid = row_id(row, index)
        try:
            if rid in self._seen:
                raise SpecError(f"row {index}: id {rid!r} is used by an earlier row")
            self._seen.add(rid)
            instance = self.plan.instance(row, index)
        except SpecError as exc:
            self._emit(RowResult(id=rid, index=index, status="failed", error=str(exc)), [])
            return
        earlier = self.finished(rid)
        if earlier is not None and earlier.status == "completed":
            self._emit(earlier.model_copy(update={"index": index}), [],
                       reused=len(instance.tasks))
            return
        state = ReadySet(instance.graph, self.plan.spec.config.failure_mode,
                         on_record=self._recorded)
        self._open[rid] = _Open(instance.graph, state, {t.name: t for t in instance.tasks},
                                dict(instance.graph.references), instance)
        for name in instance.graph.names:
            self._owner[name] = rid
        self._close_if_done(rid)  # every task skipped by its condition: nothing to run

    def _recorded(self, result: TaskResult, count: int) -> None:
        self.settled += 1
        self.on_record(result, self.settled)

    def _close_if_done(self, rid: str) -> None:
        row = self._open[rid]
        if len(row.state.results) < row.state.total:
            return
        tasks = [self.tag(row.state.results[name]) for name in row.state.order]
        del self._open[rid]
        for name in row.state.order:
            self._owner.pop(name, None)
        self.on_close(rid)
        instances: dict[str, list[TaskResult]] = {}
        for task in tasks:
            if task.fan_out is not None:
                instances.setdefault(task.fan_out, []).append(task)
        self._emit(row_result(row.instance.row, {t.name: t for t in tasks}, instances), tasks)

    def _emit(self, result: RowResult, tasks: list[TaskResult], reused: int = 0) -> None:
        self.tally.add(result, tasks, reused)
        self.on_row(result, tasks)
