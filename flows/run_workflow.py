"""The `run-workflow` flow: validate a spec, schedule its tasks, return the result JSON."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any

from prefect import flow
from prefect.runtime import flow_run
from prefect.states import Completed, Failed, State

from flows.scheduler import ReadySetScheduler
from promptdag.results import TaskResult, WorkflowResult, summarise, total_usage
from promptdag.spec import WorkflowSpec
from promptdag.validation import validate_spec


def _flow_run_name() -> str:
    """Flow runs are named after the workflow, so the Prefect UI reads like the spec."""
    spec: Any = flow_run.parameters.get("spec")
    name = spec.get("name") if isinstance(spec, dict) else getattr(spec, "name", None)
    return str(name or "workflow")


@flow(name="run-workflow", flow_run_name=_flow_run_name, validate_parameters=True)
async def run_workflow(spec: WorkflowSpec) -> State[WorkflowResult]:
    """Run a workflow spec: every task as soon as its dependencies allow, `breadth` at a time.

    The flow run ends Completed when every task completed, Failed otherwise; in both cases its
    result is the `WorkflowResult`.
    """
    graph = validate_spec(spec)
    started, clock = datetime.now(timezone.utc), time.perf_counter()
    tasks = await ReadySetScheduler(spec, graph).run()
    if not spec.config.collect_intermediate:
        tasks = [_without_intermediate(t, keep=not graph.dependents[t.name]) for t in tasks]
    result = WorkflowResult(
        name=spec.name,
        status="completed" if all(t.status == "completed" for t in tasks) else "failed",
        flow_run_id=str(flow_run.id) if flow_run.id else None,
        started_at=started,
        finished_at=datetime.now(timezone.utc),
        elapsed_seconds=round(time.perf_counter() - clock, 4),
        tasks=tasks,
        summary=summarise(tasks),
        usage=total_usage(tasks),
    )
    if result.status == "completed":
        return Completed(data=result, message=f"{len(tasks)} tasks completed")
    failed = [t.name for t in tasks if t.status == "failed"]
    return Failed(data=result, message=f"{len(failed)} task(s) failed: {', '.join(failed[:5])}")


def _without_intermediate(task: TaskResult, keep: bool) -> TaskResult:
    """Drop prompts and results of intermediate tasks; final tasks keep their results."""
    return task.model_copy(update={"prompt": None, "result": task.result if keep else None})
