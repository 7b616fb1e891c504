"""The one scheduler: a ready set dispatched onto Prefect tasks, exactly as dependencies allow.

A task starts the moment its own dependencies have finished and one of `breadth` slots is free;
a task waiting for inputs holds no slot (it is not submitted until it is ready); among ready
tasks, higher priority first, then declaration order. No stage barriers.

Each started task is an awaited call of the async Prefect task `run_prompt` on the flow's own
event loop (measured on prefect 3.8.8: about 4-5 ms per task, against 7-22 ms for `.submit()`,
and no worker thread blocked resolving `wait_for`). Prefect runs the retries and timeouts.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timezone
from typing import Any

from prefect import Flow

from promptdag.engine.events import TaskEvent, emit
from promptdag.engine.gc_tuning import quiet_collector
from promptdag.engine.ready_set import ReadySet
from promptdag.engine.results import TaskResult
from promptdag.engine.row_window import RowWindow
from promptdag.errors import attempts_of, describe_failure
from promptdag.flows.dispatch import Invoke, run_locally, run_with_fallback
from promptdag.flows.subworkflow import run_subworkflow
from promptdag.llm.base import Usage
from promptdag.spec.graph import WorkflowGraph
from promptdag.spec.models import TaskSpec, WorkflowSpec
from promptdag.tasks.run_prompt import PromptJob, PromptOutput
from promptdag.tasks.task_options import prompt_task_options


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
        are then the workflow's own."""
        self.spec = spec
        self.invoke = invoke  # where task runs execute (flows/runners.py)
        self.subflow = subflow
        self.graph = graph
        self.breadth = spec.config.breadth
        self._specs = {t.name: t for t in spec.tasks}
        self._index = graph.index
        self.rows = rows
        self.state: ReadySet | RowWindow
        if rows is None:
            self.state = ReadySet(graph, spec.config.failure_mode, on_record=self._recorded)
        else:
            rows.on_record = self._recorded
            self.state = rows

    def _lookup(self, name: str) -> tuple[TaskSpec, WorkflowGraph]:
        """A task's spec and the graph that holds it (its row's, in a streamed batch)."""
        if self.rows is None:
            return self._specs[name], self.graph
        return self.rows.lookup(name)

    def _order(self, name: str) -> tuple[int, int]:
        return self.rows.order(name) if self.rows is not None else (0, self._index[name])

    def _total(self) -> int:
        return self.rows.total if self.rows is not None else len(self.graph.names)

    def _settled(self) -> int:
        if self.rows is not None:
            return self.rows.settled
        assert isinstance(self.state, ReadySet)
        return len(self.state.results)

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
        try:
            while state.has_ready() or running:
                while state.has_ready() and len(running) < self.breadth:
                    name = state.pop()
                    running[asyncio.create_task(self._run_one(name), name=name)] = name
                if not running:
                    break
                wait = None if deadline is None else max(0.0, deadline - time.monotonic())
                done, _ = await asyncio.wait(
                    running, timeout=wait, return_when=asyncio.FIRST_COMPLETED
                )
                for future in sorted(done, key=lambda f: self._order(running[f])):
                    state.settle(future.result())
                    running.pop(future)
                if deadline is not None and not done and time.monotonic() >= deadline:
                    stop_reason = f"cancelled: the workflow timed out after {limit:g} s"
                    state.stopping = True
                    break
        finally:
            for future in running:
                future.cancel()
            if running:  # let cancelled Prefect task runs finish their bookkeeping
                await asyncio.gather(*running, return_exceptions=True)
        return state.finish(stop_reason)

    async def _run_one(self, name: str) -> TaskResult:
        task_spec, graph = self._lookup(name)
        upstream, outputs = self.state.inputs(name)
        if isinstance(task_spec.workflow, WorkflowSpec):
            emit(TaskEvent(self.spec.name, name, "started", None, self._settled(),
                           self._total()))
            if self.subflow is None:
                raise RuntimeError("a workflow task needs the scheduler's subflow")
            return await run_subworkflow(
                self.subflow, task_spec, task_spec.workflow, upstream,
                list(graph.depends_on[name]),
            )
        job = PromptJob.from_spec(self.spec, task_spec, graph.references[name])
        options = prompt_task_options(self.spec, task_spec)
        started, clock = _now(), time.perf_counter()
        emit(TaskEvent(self.spec.name, name, "started", None, self._settled(), self._total()))
        try:
            output: PromptOutput = await run_with_fallback(
                job, upstream, options, outputs, self.invoke
            )
        except Exception as exc:
            return TaskResult(
                name=name,
                status="failed",
                depends_on=list(graph.depends_on[name]),
                attempts=attempts_of(exc, options),
                started_at=started,
                finished_at=_now(),
                duration_seconds=round(time.perf_counter() - clock, 4),
                model=job.models[-1],
                error=describe_failure(exc, options["timeout_seconds"]),
            )
        return TaskResult(
            name=name,
            status="completed",
            depends_on=list(graph.depends_on[name]),
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

    def _recorded(self, result: TaskResult, settled: int) -> None:
        """Every recorded result (finished, skipped, cancelled) is a progress event."""
        emit(
            TaskEvent(
                self.spec.name,
                result.name,
                "finished",
                result.status,
                settled,
                self._total(),
                result.duration_seconds,
                result.error,
                result=result,
            )
        )
