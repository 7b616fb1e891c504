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
import heapq
import time
from datetime import datetime, timezone
from typing import Any

from prefect import Flow

from promptdag.conditions import evaluate, parse_condition, split_reference
from promptdag.errors import attempts_of, describe_failure
from promptdag.events import TaskEvent, emit
from promptdag.flows.dispatch import Invoke, run_locally, run_with_fallback
from promptdag.flows.subworkflow import run_subworkflow
from promptdag.graph import WorkflowGraph
from promptdag.llm.base import Usage
from promptdag.results import TaskResult
from promptdag.spec import WorkflowSpec
from promptdag.tasks.run_prompt import PromptJob, PromptOutput
from promptdag.tasks.task_options import prompt_task_options
from promptdag.template import field_value


def _now() -> datetime:
    return datetime.now(timezone.utc)


def failure_text(name: str, error: str) -> str:
    """What a dependent sees in place of a failed task's result (failure_mode `continue`)."""
    return f"[task {name!r} failed: {error}]"


class ReadySetScheduler:
    """Runs one workflow's tasks to the end under its failure mode; returns per-task results."""

    def __init__(
        self,
        spec: WorkflowSpec,
        graph: WorkflowGraph,
        invoke: Invoke = run_locally,
        subflow: Flow[..., Any] | None = None,
    ) -> None:
        """`subflow`: the flow that runs a `workflow:` task (the `run-workflow` flow itself,
        passed in by it, so this module never imports it back)."""
        self.spec = spec
        self.invoke = invoke  # where task runs execute (flows/runners.py)
        self.subflow = subflow
        self.graph = graph
        self.breadth = spec.config.breadth
        self.mode = spec.config.failure_mode
        self._specs = {t.name: t for t in spec.tasks}
        self._index = graph.index
        self._waiting = {name: len(graph.depends_on[name]) for name in graph.names}
        self._ready: list[tuple[int, int, str]] = []
        self._text: dict[str, str] = {}  # what dependents receive, by task name
        self._outputs: dict[str, Any] = {}  # structured results, for {{ Task.field }}
        self._live = dict.fromkeys(graph.names, 0)  # dependencies that delivered an input
        self._conditions = {name: parse_condition(when) for name, when in graph.conditions.items()}
        self.results: dict[str, TaskResult] = {}
        self._stopping = False

    def _push(self, name: str) -> None:
        heapq.heappush(self._ready, (-self.graph.priority[name], self._index[name], name))

    async def run(self) -> list[TaskResult]:
        for name in self.graph.roots():
            self._become_ready(name)
        running: dict[asyncio.Task[TaskResult], str] = {}
        limit = self.spec.config.workflow_timeout_seconds
        deadline = time.monotonic() + limit if limit else None
        stop_reason = "not started: the workflow stopped at a failed task (fail_fast)"
        try:
            while self._ready or running:
                while self._ready and len(running) < self.breadth and not self._stopping:
                    name = heapq.heappop(self._ready)[2]
                    running[asyncio.create_task(self._run_one(name), name=name)] = name
                if not running:
                    break
                wait = None if deadline is None else max(0.0, deadline - time.monotonic())
                done, _ = await asyncio.wait(
                    running, timeout=wait, return_when=asyncio.FIRST_COMPLETED
                )
                for future in sorted(done, key=lambda f: self._index[running[f]]):
                    self._settle(future.result())
                    running.pop(future)
                if deadline is not None and not done and time.monotonic() >= deadline:
                    stop_reason = f"cancelled: the workflow timed out after {limit:g} s"
                    self._stopping = True
                    break
        finally:
            for future in running:
                future.cancel()
            if running:  # let cancelled Prefect task runs finish their bookkeeping
                await asyncio.gather(*running, return_exceptions=True)
        for name in self.graph.names:
            if name not in self.results:
                self._record(
                    TaskResult(
                        name=name,
                        status="cancelled",
                        depends_on=list(self.graph.depends_on[name]),
                        error=stop_reason,
                    )
                )
        return [self.results[name] for name in self.graph.names]

    async def _run_one(self, name: str) -> TaskResult:
        task_spec = self._specs[name]
        upstream = {dep: self._text[dep] for dep in self.graph.depends_on[name]}
        if isinstance(task_spec.workflow, WorkflowSpec):
            emit(
                TaskEvent(
                    self.spec.name, name, "started", None, len(self.results), len(self.graph.names)
                )
            )
            if self.subflow is None:
                raise RuntimeError("a workflow task needs the scheduler's subflow")
            return await run_subworkflow(
                self.subflow, task_spec, task_spec.workflow, upstream,
                list(self.graph.depends_on[name]),
            )
        job = PromptJob.from_spec(self.spec, task_spec, self.graph.references[name])
        outputs = {
            dep: self._outputs[dep] for dep in self.graph.depends_on[name] if dep in self._outputs
        }
        options = prompt_task_options(self.spec, task_spec)
        started, clock = _now(), time.perf_counter()
        emit(
            TaskEvent(
                self.spec.name, name, "started", None, len(self.results), len(self.graph.names)
            )
        )
        try:
            output: PromptOutput = await run_with_fallback(
                job, upstream, options, outputs, self.invoke
            )
        except Exception as exc:
            return TaskResult(
                name=name,
                status="failed",
                depends_on=list(self.graph.depends_on[name]),
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
            depends_on=list(self.graph.depends_on[name]),
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

    def _settle(self, result: TaskResult) -> None:
        """Record a finished task, tell listeners, then apply the failure mode."""
        self._record(result)
        name = result.name
        if result.status == "completed":
            self._release(name, result.result or "", output=result.output)
        elif self.mode == "continue":
            self._release(name, failure_text(name, result.error or "failed"))
        elif self.mode == "fail_fast":
            self._stopping = True
        else:
            for child in self.graph.descendants(name):
                if child not in self.results:
                    self._record(
                        TaskResult(
                            name=child,
                            status="skipped",
                            depends_on=list(self.graph.depends_on[child]),
                            error=f"skipped: upstream task {name!r} failed",
                            skip_reason="upstream_failed",
                        )
                    )

    def _record(self, result: TaskResult) -> None:
        self.results[result.name] = result
        emit(
            TaskEvent(
                self.spec.name,
                result.name,
                "finished",
                result.status,
                len(self.results),
                len(self.graph.names),
                result.duration_seconds,
                result.error,
                result=result,
            )
        )

    def _release(self, name: str, text: str, live: bool = True, output: Any = None) -> None:
        """A task is settled: its dependents get its text; those now free become ready.

        Skips cascade through a work list (not recursion): a task whose condition does not hold
        is skipped, and so is a task all of whose dependencies were skipped (nothing to work
        on); a task with at least one dependency that delivered runs (the join after branches).
        """
        pending = [(name, text, live, output)]
        while pending:
            name, text, live, output = pending.pop()
            self._text[name] = text
            if output is not None:
                self._outputs[name] = output
            for child in self.graph.dependents[name]:
                self._waiting[child] -= 1
                self._live[child] += live
                if self._waiting[child] == 0 and child not in self.results:
                    skipped = self._become_ready(child)
                    if skipped:  # a join after branches gets nothing from it, no placeholder
                        pending.append((child, "", False, None))

    def _become_ready(self, name: str) -> str | None:
        """Queue a task whose inputs are all settled, or skip it; return why it was skipped."""
        why: str | None = None
        if self.graph.depends_on[name] and self._live[name] == 0:
            why = "every dependency was skipped"
        elif name in self._conditions and not self._holds(name):
            why = f"condition not met: {self.graph.conditions[name]}"
        if why is None:
            self._push(name)
            return None
        self._record(
            TaskResult(
                name=name,
                status="skipped",
                error=f"skipped: {why}",
                depends_on=list(self.graph.depends_on[name]),
                skip_reason="condition",
            )
        )
        return why

    def _holds(self, name: str) -> bool:
        names = set(self.graph.names)

        def resolve(text: str) -> Any:
            found = split_reference(text, names)
            if found is None:
                return None
            task, path = found
            return field_value(self._outputs.get(task), path) if path else self._text.get(task)

        try:
            return bool(evaluate(self._conditions[name], resolve))
        except (TypeError, ValueError):  # e.g. `in` over a value of the wrong kind: not met
            return False
