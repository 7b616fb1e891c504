"""The one scheduler: a ready set dispatched onto Prefect tasks, exactly as dependencies allow.

A task starts the moment its own dependencies have finished and one of `breadth` slots is free;
a task waiting for inputs holds no slot (it is not submitted until it is ready); among ready
tasks, higher priority first, then declaration order. No stage barriers.

Each started task is an awaited call of the async Prefect task `run_prompt` on the flow's own
event loop: cheaper per task than `.submit()`, and no worker thread blocked resolving
`wait_for` (the figures are in docs/architecture.md). Prefect runs the retries and timeouts.

Tasks can join a running workflow (`add_task`): from inside the loop (a fan-out's instances,
flows/fan_out.py) or from a producer running beside it (a plan read as it streams), which keeps
the loop alive with `hold()` until it is done. Added tasks obey the same breadth, priority,
failure mode, `when:` and resume rules as declared ones and count in results and progress.

A streamed batch hands the scheduler a `RowWindow` (promptdag/engine/row_window.py) in place of
the workflow's ready set: rows are read as the window has room, each row has its own ready set
(a `Part`), and the loop below runs them all as one workflow under one breadth. When a row
closes, what Prefect's flow run context keeps of its task runs is dropped (`forget_task_runs`;
in groups of `forget_group` task runs, each one pass over Prefect's tables, so the passes cost
about as much per task as the tables hold), so a batch's memory does not grow with its rows.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from typing import Any
from uuid import UUID

from prefect import Flow
from prefect.exceptions import TerminationSignal
from prefect.states import State

from promptdag._prefect_compat import cancel_was_intended, forget_task_runs
from promptdag.engine.budget import BudgetExhausted, Ledger, ledger_for, use_ledger
from promptdag.engine.events import TaskEvent, emit
from promptdag.engine.fan_out import FanOutError, instance_spec, items_of, joined
from promptdag.engine.gc_tuning import quiet_collector
from promptdag.engine.ready_set import ReadySet
from promptdag.engine.results import TaskResult
from promptdag.engine.row_window import Part, RowWindow
from promptdag.errors import attempts_of, describe_failure
from promptdag.flows._subworkflow import run_subworkflow
from promptdag.flows.dispatch import Invoke, run_locally, run_with_fallback
from promptdag.llm.base import Usage
from promptdag.spec.conditions import split_reference
from promptdag.spec.graph import WorkflowGraph
from promptdag.spec.models import TaskSpec, WorkflowSpec
from promptdag.spec.template import placeholders
from promptdag.tasks.run_prompt import PromptJob, PromptOutput
from promptdag.tasks.task_options import prompt_task_options

FORGET_AT_MOST = 1024  # task runs of closed rows dropped per pass, at most (a batch-API window)


def _now() -> datetime:
    return datetime.now(timezone.utc)


class ReadySetScheduler:
    """Runs one workflow's tasks to the end under its failure mode; returns per-task results.

    The decisions (what is ready, skipped, what a failure does) are `ReadySet`'s, pure; this
    loop keeps `breadth` task runs going, awaits them and enforces the workflow's timeout.
    """

    def __init__(
        self,
        spec: WorkflowSpec,
        graph: WorkflowGraph,
        invoke: Invoke = run_locally,
        subflow: Flow[..., Any] | None = None,
        rows: RowWindow | None = None,
    ) -> None:
        """`subflow`: the flow that runs a `workflow:` task (the `run-workflow` flow itself,
        passed in by it, so this module never imports it back). `rows`: a streamed batch, whose
        window of rows is the ready set (promptdag/engine/row_window.py); `spec` and `graph`
        are then the workflow's own, and each row has its own budget (`row_max_*`)."""
        self.spec = spec
        self.invoke = invoke  # where task runs execute (flows/runners.py)
        self.subflow = subflow
        self.graph = graph
        self.breadth = spec.config.breadth
        self.rows = rows
        self.state: ReadySet | RowWindow
        if rows is None:
            ready = ReadySet(graph, spec.config.failure_mode, on_record=self._recorded)
            self._whole: Part | None = Part(graph, ready, {t.name: t for t in spec.tasks},
                                            dict(graph.references))
            self.state = ready
        else:
            self._whole = None
            rows.on_record, rows.tag, rows.on_close = self._recorded, self._tagged, self._closed
            self.state = rows
        config = spec.config
        self.ledger = ledger_for(f"workflow {spec.name!r}", config.max_cost_usd,
                                 config.max_total_tokens)
        self._row_ledgers: dict[str, Ledger | None] = {}
        self.budget_stop: str | None = None  # why a budget stopped a call, if one did
        self._holds = 0  # producers that may still add tasks (see `hold`)
        self._expanded: dict[str, list[str]] = {}  # fan-out task -> its instances, in order
        self._instances: dict[str, tuple[str, Any, int]] = {}  # -> (fan-out, item, index)
        self._instance_count = 0  # every instance added so far (closed rows' too)
        self._task_runs: dict[str, list[UUID]] = {}  # open batch row -> its task runs so far
        self._forgettable: list[UUID] = []  # closed rows' task runs, still in Prefect's context
        self._wake = asyncio.Event()

    def _part(self, name: str) -> Part:
        """The workflow instance that holds a task: the whole workflow, or the task's row."""
        return self._part_of((name,))

    def _part_of(self, tasks: tuple[str, ...]) -> Part:
        """The whole workflow, or the open batch row of the first of `tasks`."""
        if self.rows is not None:
            return self.rows.part_for(tasks)
        assert self._whole is not None
        return self._whole

    def _closed(self, rid: str) -> None:
        """A batch row closed: forget its budget, its fan-outs and, once a group of closed
        rows' task runs is due, what Prefect keeps of them (memory stays bounded)."""
        self._row_ledgers.pop(rid, None)
        self._forgettable += self._task_runs.pop(rid, [])
        if len(self._forgettable) >= self.forget_group:
            forget_task_runs(self._forgettable)
            self._forgettable = []
        prefix = f"[{rid}] "
        for name in [n for n in self._expanded if n.startswith(prefix)]:
            for instance in self._expanded.pop(name):
                self._instances.pop(instance, None)

    @property
    def forget_group(self) -> int:
        """Closed rows' task runs dropped from Prefect's context together: as many as the open
        rows can hold (a window of rows, each with the workflow's tasks), at most
        `FORGET_AT_MOST`."""
        window = self.rows.window if self.rows is not None else 1
        return min(window * len(self.graph.names), FORGET_AT_MOST)

    def _settled(self) -> int:
        return self.state.settled if isinstance(self.state, RowWindow) else len(
            self.state.results)

    def _ledger_of(self, name: str) -> Ledger | None:
        """The ledger a task's calls count against: its row's (under the run's), or the run's."""
        row = self.rows.row_of(name) if self.rows is not None else None
        config = self.spec.config
        if row is None or (config.row_max_cost_usd is None and config.row_max_total_tokens is None):
            return self.ledger
        if row not in self._row_ledgers:
            self._row_ledgers[row] = Ledger(
                f"row {row!r}", config.row_max_cost_usd, config.row_max_total_tokens,
                parent=self.ledger,
            )
        return self._row_ledgers[row]

    def add_task(
        self,
        task: TaskSpec,
        depends_on: Iterable[str] = (),
        *,
        before: Iterable[str] = (),
        references: Iterable[str] | None = None,
    ) -> None:
        """Add a prompt task to the running workflow (see `ReadySet.add`).

        Args:
            task: the task, as a spec would declare it (its `depends_on` is not read).
            depends_on: the tasks it waits for, declared or added earlier.
            before: tasks not started yet that also wait for it.
            references: the tasks its prompt names (default: read from the prompt); their
                results fill the placeholders, other dependencies' results are appended.
        """
        depends_on, before = tuple(depends_on), tuple(before)
        part = self._part_of((*before, *depends_on))  # a batch's: the row of what it waits for
        if references is None:
            names = set(part.state.order)
            found = (split_reference(text, names) for text in placeholders(task.prompt))
            references = {ref[0] for ref in found if ref is not None}
        (self.rows or part).add(task, depends_on, frozenset(references), before)  # rows: owned
        self._wake.set()

    def hold(self) -> Callable[[], None]:
        """Keep the loop running, even with nothing ready or running, until the returned
        function is called: for a producer that adds tasks while the workflow runs. Call it
        before `run` starts (or from a running task), and call the release exactly once."""
        self._holds += 1
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self._holds -= 1
                self._wake.set()

        return release

    async def run(self) -> list[TaskResult]:
        """Every task settled (finished, skipped or cancelled), in the collector's quiet mode
        (promptdag/engine/gc_tuning.py)."""
        with quiet_collector():
            return await self._run()

    async def _run(self) -> list[TaskResult]:
        state = self.state
        running: dict[asyncio.Task[TaskResult], str] = {}
        limit = self.spec.config.workflow_timeout_seconds
        deadline = time.monotonic() + limit if limit else None
        stop_reason = "not started: the workflow stopped at a failed task (fail_fast)"
        woken: asyncio.Task[bool] | None = None
        stale_cancel = cancel_was_intended()  # left by an earlier run in this process
        try:
            while state.has_ready() or running or (self._holds and not state.stopping):
                if not stale_cancel and cancel_was_intended():
                    # cancelled (`promptdag cancel`, the UI): nothing more starts, what runs is
                    # cancelled (finally), and the engine ends the run Cancelled, whether or
                    # not the SIGTERM that follows the intent lands where it can be raised
                    raise TerminationSignal(signal.SIGTERM)
                while state.has_ready() and len(running) < self.breadth:
                    name = state.pop()
                    if self._settles_at_once(name):
                        continue
                    running[asyncio.create_task(self._run_one(name), name=name)] = name
                if state.has_ready() and len(running) < self.breadth:
                    continue  # settling at once made more tasks ready
                if not running and not (self._holds and not state.stopping):
                    break
                wait = None if deadline is None else max(0.0, deadline - time.monotonic())
                waiting: set[asyncio.Future[Any]] = set(running)
                if self._holds:  # a producer may add tasks: wake up when it does
                    self._wake.clear()
                    if woken is None or woken.done():
                        woken = asyncio.create_task(self._wake.wait())
                    waiting.add(woken)
                done, _ = await asyncio.wait(
                    waiting, timeout=wait, return_when=asyncio.FIRST_COMPLETED
                )
                finished = [f for f in done if f in running]
                for future in sorted(finished, key=lambda f: self._order(running[f])):
                    state.settle(future.result())
                    running.pop(future)
                if self.ledger is not None and self.ledger.exhausted and not state.stopping:
                    stop_reason = f"not started: budget: {self.ledger.exhausted}"
                    state.stopping = True  # the run's budget: no new task starts
                if deadline is not None and not done and time.monotonic() >= deadline:
                    stop_reason = f"cancelled: the workflow timed out after {limit:g} s"
                    state.stopping = True
                    break
        finally:
            if woken is not None:
                woken.cancel()
            for future in running:
                future.cancel()
            if running:  # let cancelled Prefect task runs finish their bookkeeping
                await asyncio.gather(*running, return_exceptions=True)
        return [self._tagged(result) for result in state.finish(stop_reason)]

    def _order(self, name: str) -> tuple[int, int]:
        """Settling order among tasks that ended together: row, then declaration."""
        if self.rows is not None:
            return self.rows.order(name)
        return 0, self._part(name).state.index[name]

    def _settles_at_once(self, name: str) -> bool:
        """A popped task that needs no task run of its own: a fan-out task, the first time
        to add its instances (or settle, failed or skipped, if it has none to add), the second
        time (all instances settled) to join their results."""
        part = self._part(name)
        source = part.graph.fan_outs.get(name)
        if source is None:
            return False
        state = self.state  # settling goes through it: a batch row closes when it is done
        depends_on = list(part.state.depends_on[name])
        if name in self._expanded:
            instances = [part.state.results[i] for i in self._expanded[name]]
            state.settle(joined(name, depends_on, instances))
            return True
        task = part.specs[name]
        upstream, outputs = state.inputs(name)
        found = split_reference(source, set(upstream))
        assert found is not None  # validation checked it names a dependency
        try:
            items = items_of(name, source, found[1], upstream.get(found[0]),
                             outputs.get(found[0]), task.max_items)
        except FanOutError as exc:
            state.settle(TaskResult(name=name, status="failed", depends_on=depends_on,
                                    error=str(exc)))
            return True
        if not items:
            state.skip(name, f"for_each {{{{ {source} }}}} gave no items")
            return True
        self._expanded[name] = []
        for index, item in enumerate(items):
            instance = instance_spec(task, index, item)
            self._instances[instance.name] = (name, item, index)
            self._instance_count += 1
            self._expanded[name].append(instance.name)
            self.add_task(instance, depends_on, before=[name], references=part.references[name])
        return True

    def _tagged(self, result: TaskResult) -> TaskResult:
        """An instance's result says which fan-out, item and index it is."""
        found = self._instances.get(result.name)
        if found is None:
            return result
        fan_out, item, index = found
        return result.model_copy(update={"fan_out": fan_out, "item": item, "index": index})

    async def _run_one(self, name: str) -> TaskResult:
        use_ledger(self._ledger_of(name))  # this asyncio task's context: its calls count there
        part = self._part(name)
        task_spec = part.specs[name]
        depends_on = list(part.state.depends_on[name])
        upstream, outputs = self.state.inputs(name)
        if isinstance(task_spec.workflow, WorkflowSpec):
            emit(TaskEvent(self.spec.name, name, "started", None, self._settled(),
                           self.state.total))
            if self.subflow is None:
                raise RuntimeError("a workflow task needs the scheduler's subflow")
            return await run_subworkflow(
                self.subflow, task_spec, task_spec.workflow, upstream, depends_on,
            )
        job = PromptJob.from_spec(self.spec, task_spec, part.references[name])
        options = prompt_task_options(self.spec, task_spec)
        started, clock = _now(), time.perf_counter()
        emit(TaskEvent(self.spec.name, name, "started", None, self._settled(), self.state.total))
        try:
            output: PromptOutput = await run_with_fallback(
                job, upstream, options, outputs, self._invoke_for(name)
            )
        except Exception as exc:
            budget = _budget_refusal(exc)
            if budget is not None:
                self.budget_stop = self.budget_stop or str(budget)
            return TaskResult(
                name=name,
                status="cancelled" if budget is not None else "failed",
                depends_on=depends_on,
                attempts=attempts_of(exc, options),
                started_at=started,
                finished_at=_now(),
                duration_seconds=round(time.perf_counter() - clock, 4),
                model=job.models[-1],
                error=f"not started: budget: {budget}" if budget is not None
                else describe_failure(exc, options["timeout_seconds"]),
            )
        return TaskResult(
            name=name,
            status="completed",
            depends_on=depends_on,
            attempts=output.attempts,
            started_at=started,
            finished_at=_now(),
            duration_seconds=round(time.perf_counter() - clock, 4),
            model=output.model,
            prompt=output.prompt,
            result=output.text,
            output=output.output,
            reused=output.reused,
            usage=Usage() if output.reused else output.usage,  # a reused task spent nothing
            saved_usage=output.usage if output.reused else None,
            saved_calls=1 if output.reused else 0,
            warning=output.warning,
            finish_reason=output.finish_reason,
            truncated=output.finish_reason == "length",
            fallback_errors=output.fallback_errors,
        )

    def _invoke_for(self, name: str) -> Invoke:
        """The runner, for a batch row's task noting each task run it makes for the row (whose
        close then drops them from Prefect's context)."""
        row = self.rows.row_of(name) if self.rows is not None else None
        if row is None:
            return self.invoke
        runs = self._task_runs.setdefault(row, [])
        invoke = self.invoke

        async def noted(*args: Any) -> State[Any]:
            state = await invoke(*args)
            if state.state_details.task_run_id is not None:
                runs.append(state.state_details.task_run_id)
            return state

        return noted

    def _recorded(self, result: TaskResult, settled: int) -> None:
        """Every recorded result (finished, skipped, cancelled) is a progress event."""
        result = self._tagged(result)
        emit(
            TaskEvent(
                self.spec.name,
                result.name,
                "finished",
                result.status,
                settled,
                self.state.total,
                result.duration_seconds,
                result.error,
                result=result,
                from_fan_outs=self._instance_count,
            )
        )


def _budget_refusal(exc: BaseException) -> BudgetExhausted | None:
    """The budget refusal behind a task's failure (a fallback chain may wrap it), if any."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, BudgetExhausted):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None
