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
- Dynamic tasks: `add` puts a task into the running workflow, with dependencies on tasks
  declared or added before it (settled or not) and optionally as a new dependency of tasks that
  have not started (`before`). The same rules then apply to it: it is ready when its
  dependencies have settled, skipped by its `when:` or by skipped or failed dependencies, and
  counted in the results. Fan-out instances and streamed plans both arrive this way.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from typing import Any

from promptdag.engine.results import TaskResult
from promptdag.spec.conditions import evaluate, parse_condition, split_reference
from promptdag.spec.graph import WorkflowGraph, downstream
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
        # The graph grows while the workflow runs (`add`): mutable copies of its parts.
        self.order: list[str] = list(graph.names)  # declaration order, added tasks inserted
        self.depends_on: dict[str, tuple[str, ...]] = dict(graph.depends_on)
        self.dependents: dict[str, list[str]] = {n: list(graph.dependents[n]) for n in graph.names}
        self.added: set[str] = set()  # tasks added while running
        self._priority = dict(graph.priority)
        self._when = dict(graph.conditions)
        self.index = graph.index  # tie-break among equal priorities (added: in order of adding)
        self._waiting = {name: len(graph.depends_on[name]) for name in graph.names}
        self._live = dict.fromkeys(graph.names, 0)  # dependencies that delivered an input
        self._ready: list[tuple[int, int, str]] = []
        self._popped: set[str] = set()  # handed to the scheduler, not settled
        self._text: dict[str, str] = {}  # what dependents receive, by task name
        self._delivered: dict[str, bool] = {}  # released tasks: did they deliver an input?
        self._outputs: dict[str, Any] = {}  # structured results, for {{ Task.field }}
        self._conditions = {name: parse_condition(when) for name, when in graph.conditions.items()}
        for name in graph.roots():
            self._become_ready(name)

    @property
    def total(self) -> int:
        """Tasks in the workflow so far: declared and added."""
        return len(self.order)

    # -- what to start --------------------------------------------------------------------

    def has_ready(self) -> bool:
        """A task may start now (one is ready and the workflow is not stopping)."""
        return bool(self._ready) and not self.stopping

    def pop(self) -> str:
        """The next task to start: the ready one of highest priority, then declaration order."""
        name = heapq.heappop(self._ready)[2]
        self._popped.add(name)
        return name

    def inputs(self, name: str) -> tuple[dict[str, str], dict[str, Any]]:
        """A starting task's inputs: its dependencies' texts (nothing from skipped ones) and
        their structured outputs."""
        deps = self.depends_on[name]
        upstream = {dep: self._text[dep] for dep in deps}
        outputs = {dep: self._outputs[dep] for dep in deps if dep in self._outputs}
        return upstream, outputs

    # -- what a finished task does ----------------------------------------------------------

    def settle(self, result: TaskResult) -> None:
        """Record a finished task, then apply the failure mode."""
        self.record(result)
        name = result.name
        self._popped.discard(name)
        if result.status == "completed":
            self._release(name, result.result or "", output=result.output)
        elif self.mode == "continue":
            self._release(name, failure_text(name, result.error or "failed"))
        elif self.mode == "fail_fast":
            self.stopping = True
        else:
            self._skip_downstream(name, name)

    def skip(self, name: str, why: str) -> None:
        """Settle a popped task as a branch not taken (e.g. a fan-out over no items): its
        dependents get nothing from it, as from a task whose `when:` did not hold."""
        self._popped.discard(name)
        self.record(TaskResult(name=name, status="skipped", error=f"skipped: {why}",
                               depends_on=list(self.depends_on[name]), skip_reason="condition"))
        self._release(name, "", live=False)

    def add(
        self,
        name: str,
        depends_on: tuple[str, ...] | list[str] = (),
        *,
        priority: int = 1,
        when: str | None = None,
        before: tuple[str, ...] | list[str] = (),
    ) -> None:
        """Add a task to the running workflow (see module docstring).

        Args:
            name: a name not used yet.
            depends_on: tasks it waits for: declared or added earlier, settled or not.
            priority: its rank among ready tasks (`Priority.rank`; higher first).
            when: a condition on upstream results, as in a spec.
            before: tasks that also wait for this one; none of them may have started (a task
                the scheduler popped and holds back, like a fan-out task, is allowed).
        """
        if name in self._waiting:
            raise ValueError(f"task {name!r} exists already")
        unknown = [d for d in (*depends_on, *before) if d not in self._waiting]
        if unknown:
            raise ValueError(f"task {name!r}: no task {unknown[0]!r} to depend on")
        for later in before:
            if later in self.results or (self._waiting[later] == 0 and later not in self._popped):
                raise ValueError(f"task {name!r}: {later!r} is already ready or settled")
        self.depends_on[name] = tuple(dict.fromkeys(depends_on))
        self.dependents[name] = []
        self.added.add(name)
        self._priority[name] = priority
        if when:
            self._when[name] = when
            self._conditions[name] = parse_condition(when)
        self.index[name] = len(self.index)
        self._waiting[name] = self._live[name] = 0
        at = min((self.order.index(t) for t in before), default=len(self.order))
        self.order.insert(at, name)
        for later in before:
            self.depends_on[later] = (*self.depends_on[later], name)
            self.dependents[name].append(later)
            self._waiting[later] += 1
            self._popped.discard(later)  # back to waiting
        failed = None
        for dep in self.depends_on[name]:
            if dep in self._delivered:  # settled and released
                self._live[name] += self._delivered[dep]
            elif dep in self.results:  # settled without releasing: a failure stopped it
                failed = failed or dep
            else:
                self._waiting[name] += 1
                self.dependents[dep].append(name)
        if failed is not None:
            self.record(TaskResult(
                name=name, status="skipped", depends_on=list(self.depends_on[name]),
                error=f"skipped: upstream task {failed!r} failed", skip_reason="upstream_failed"))
            self._skip_downstream(name, failed)
        elif self._waiting[name] == 0 and self._become_ready(name):
            self._release(name, "", live=False)

    def finish(self, reason: str) -> list[TaskResult]:
        """Every task's result in declaration order (added tasks where they were inserted);
        what never ran is cancelled for `reason`."""
        for name in self.order:
            if name not in self.results:
                self.record(TaskResult(name=name, status="cancelled",
                                       depends_on=list(self.depends_on[name]), error=reason))
        return [self.results[name] for name in self.order]

    def descendants(self, name: str) -> list[str]:
        """Every task downstream of `name` (added ones included), in declaration order."""
        return downstream(name, self.dependents, self.order)

    def _skip_downstream(self, name: str, failed: str) -> None:
        for child in self.descendants(name):
            if child not in self.results:
                self._popped.discard(child)
                self.record(TaskResult(
                    name=child, status="skipped", depends_on=list(self.depends_on[child]),
                    error=f"skipped: upstream task {failed!r} failed",
                    skip_reason="upstream_failed",
                ))

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
            self._delivered[name] = live
            if output is not None:
                self._outputs[name] = output
            for child in self.dependents[name]:
                self._waiting[child] -= 1
                self._live[child] += live
                if self._waiting[child] == 0 and child not in self.results:
                    if self._become_ready(child):  # skipped: a join gets nothing from it
                        pending.append((child, "", False, None))

    def _become_ready(self, name: str) -> str | None:
        """Queue a task whose inputs are all settled, or skip it; return why it was skipped."""
        why: str | None = None
        if self.depends_on[name] and self._live[name] == 0:
            why = "every dependency was skipped"
        elif name in self._conditions and not self._holds(name):
            why = f"condition not met: {self._when[name]}"
        if why is None:
            heapq.heappush(self._ready, (-self._priority[name], self.index[name], name))
            return None
        self._popped.discard(name)
        self.record(TaskResult(name=name, status="skipped", error=f"skipped: {why}",
                               depends_on=list(self.depends_on[name]),
                               skip_reason="condition"))
        return why

    def _holds(self, name: str) -> bool:
        names = set(self.order)

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
