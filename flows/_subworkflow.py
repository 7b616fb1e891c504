"""A task that is a whole workflow: run as a `run-workflow` subflow with its own breadth.

The parent's scheduler counts it as one slot. Results of the task's own dependencies reach the
sub-workflow's first tasks as context values, appended to their prompts.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any

from prefect import Flow

from promptdag.engine.results import TaskResult, WorkflowResult
from promptdag.spec.graph import build_graph
from promptdag.spec.models import TaskSpec, WorkflowSpec
from promptdag.spec.template import carry_inputs
from promptdag.tasks.prompt_cache import child_scope, current_scope


def with_inputs(sub: WorkflowSpec, upstream: dict[str, str]) -> WorkflowSpec:
    """The sub-workflow with the parent's inputs added to the context of its root tasks."""
    if not upstream:
        return sub
    names = {t.name for t in sub.tasks}
    roots = set(build_graph(sub).roots())
    tasks = []
    for task in sub.tasks:
        if task.name not in roots or task.workflow is not None:
            tasks.append(task)
            continue
        prompt, context = carry_inputs(task.prompt, task.context, upstream,
                                       "Inputs from the parent workflow", names)
        tasks.append(task.model_copy(update={"context": context, "prompt": prompt}))
    return sub.model_copy(update={"tasks": tasks})


def _final_text(result: WorkflowResult) -> str:
    """The sub-workflow's answer: the results of its final tasks (those nothing depends on)."""
    needed = {dep for t in result.tasks for dep in t.depends_on}
    finals = [t for t in result.tasks if t.name not in needed and t.status == "completed"]
    if len(finals) == 1:
        return finals[0].result or ""
    return "\n\n".join(f"### {t.name}\n{t.result}" for t in finals)


def _failure(name: str, failed: list[str]) -> str:
    return f"sub-workflow {name!r}: {len(failed)} task(s) not completed: {', '.join(failed[:5])}"


async def run_subworkflow(
    flow: Flow[..., Any],
    task: TaskSpec,
    sub: WorkflowSpec,
    upstream: dict[str, str],
    depends_on: list[str],
) -> TaskResult:
    """Run `sub` as a subflow of `flow` (the `run-workflow` flow, passed in by the scheduler
    that `flow` runs: this module does not import it back)."""
    started, clock = datetime.now(timezone.utc), time.perf_counter()
    # The sub-workflow resumes with its parent: it reuses what it finished in the same run.
    scope = child_scope(current_scope(), task.name)
    state = await flow(  # type: ignore[misc]  # an async flow: a coroutine of its state
        with_inputs(sub, upstream), resume_scope=scope, return_state=True
    )
    outcome = WorkflowResult.model_validate(await state.aresult(raise_on_failure=False))
    failed = [t.name for t in outcome.tasks if t.status != "completed"]
    return TaskResult(
        name=task.name,
        status=outcome.status,
        depends_on=depends_on,
        attempts=1,
        started_at=started,
        finished_at=datetime.now(timezone.utc),
        duration_seconds=round(time.perf_counter() - clock, 4),
        model=None,
        result=_final_text(outcome),
        error=None if outcome.status == "completed" else _failure(sub.name, failed),
        usage=outcome.usage,
        workflow=outcome,
    )
