"""The scheduler's decisions, pure: what is ready, what is skipped, what a failure does.

`ReadySet` holds one workflow's state between task runs: tasks waiting for inputs, the ready
heap (higher priority first, then declaration order), the text and structured output each
settled task hands its dependents, and the results. It never awaits, sleeps or calls a model:
flows/scheduler.py runs its loop (breadth slots, Prefect task runs, the workflow timeout) and
asks it what to do next, so every rule here is tested without Prefect (tests/unit).

- A task is ready when all its dependencies have settled; then its `when:` condition is
  evaluated; a task whose condition does not hold is skipped (a branch not taken), and so is a
  task all of whose dependencies were skipped; a task with at least one dependency that
  delivered runs (the join after branches), and gets nothing from the skipped ones.
- A failure: `skip_dependents` skips everything downstream; `continue` hands dependents the
  failure text as that dependency's result; `fail_fast` stops starting tasks (what has not
  started is cancelled when the loop ends).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from typing import Any

from promptdag.engine.results import TaskResult
from promptdag.spec.conditions import evaluate, parse_condition, split_reference
from promptdag.spec.graph import WorkflowGraph
from promptdag.spec.models import FailureMode
from promptdag.spec.template import field_value


def failure_text(name: str, error: str) -> str:
    """What a dependent sees in place of a failed task's result (failure_mode `continue`)."""
    return f"[task {name!r} failed: {error}]"


class ReadySet:
    """One workflow's scheduling state (see module docstring)."""

    def __init__(
        self,
        graph: WorkflowGraph,
        failure_mode: FailureMode,
        on_record: Callable[[TaskResult, int], None] = lambda result, count: None,
    ) -> None:
        """`on_record(result, settled)` hears of every result as it is recorded, with how many
        tasks have settled so far (progress events)."""
        self.graph = graph
        self.mode = failure_mode
        self.on_record = on_record
        self.results: dict[str, TaskResult] = {}
        self.stopping = False  # fail_fast hit a failure: start nothing more
        self._index = graph.index
        self._waiting = {name: len(graph.depends_on[name]) for name in graph.names}
        self._live = dict.fromkeys(graph.names, 0)  # dependencies that delivered an input
        self._ready: list[tuple[int, int, str]] = []
        self._text: dict[str, str] = {}  # what dependents receive, by task name
        self._outputs: dict[str, Any] = {}  # structured results, for {{ Task.field }}
        self._conditions = {name: parse_condition(when) for name, when in graph.conditions.items()}
        for name in graph.roots():
            self._become_ready(name)

    # -- what to start --------------------------------------------------------------------

    def has_ready(self) -> bool:
        """A task may start now (one is ready and the workflow is not stopping)."""
        return bool(self._ready) and not self.stopping

    def pop(self) -> str:
        """The next task to start: the ready one of highest priority, then declaration order."""
        return heapq.heappop(self._ready)[2]

    def inputs(self, name: str) -> tuple[dict[str, str], dict[str, Any]]:
        """A starting task's inputs: its dependencies' texts (nothing from skipped ones) and
        their structured outputs."""
        deps = self.graph.depends_on[name]
        upstream = {dep: self._text[dep] for dep in deps}
        outputs = {dep: self._outputs[dep] for dep in deps if dep in self._outputs}
        return upstream, outputs

    # -- what a finished task does ----------------------------------------------------------

    def settle(self, result: TaskResult) -> None:
        """Record a finished task, then apply the failure mode."""
        self.record(result)
        name = result.name
        if result.status == "completed":
            self._release(name, result.result or "", output=result.output)
        elif self.mode == "continue":
            self._release(name, failure_text(name, result.error or "failed"))
        elif self.mode == "fail_fast":
            self.stopping = True
        else:
            for child in self.graph.descendants(name):
                if child not in self.results:
                    self.record(TaskResult(
                        name=child, status="skipped", depends_on=list(self.graph.depends_on[child]),
                        error=f"skipped: upstream task {name!r} failed",
                        skip_reason="upstream_failed",
                    ))

    def finish(self, reason: str) -> list[TaskResult]:
        """Every task's result in declaration order; what never ran is cancelled for `reason`."""
        for name in self.graph.names:
            if name not in self.results:
                self.record(TaskResult(name=name, status="cancelled",
                                       depends_on=list(self.graph.depends_on[name]), error=reason))
        return [self.results[name] for name in self.graph.names]

    def record(self, result: TaskResult) -> None:
        self.results[result.name] = result
        self.on_record(result, len(self.results))

    def _release(self, name: str, text: str, live: bool = True, output: Any = None) -> None:
        """A task is settled: its dependents get its text; those now free become ready. Skips
        cascade through a work list (not recursion)."""
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
                    if self._become_ready(child):  # skipped: a join gets nothing from it
                        pending.append((child, "", False, None))

    def _become_ready(self, name: str) -> str | None:
        """Queue a task whose inputs are all settled, or skip it; return why it was skipped."""
        why: str | None = None
        if self.graph.depends_on[name] and self._live[name] == 0:
            why = "every dependency was skipped"
        elif name in self._conditions and not self._holds(name):
            why = f"condition not met: {self.graph.conditions[name]}"
        if why is None:
            heapq.heappush(self._ready, self.graph.ready_key(name, self._index))
            return None
        self.record(TaskResult(name=name, status="skipped", error=f"skipped: {why}",
                               depends_on=list(self.graph.depends_on[name]),
                               skip_reason="condition"))
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
