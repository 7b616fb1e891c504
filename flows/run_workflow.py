"""The `run-workflow` flow: validate a spec, schedule its tasks, return the result JSON."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from prefect import flow
from prefect.runtime import flow_run
from prefect.states import Completed, Failed, State
from pydantic import BaseModel, Field

from promptdag.engine.batch import RowPlan, count_rows, iter_rows
from promptdag.engine.events import emit_row
from promptdag.engine.results import (
    RowResult,
    TaskResult,
    WorkflowResult,
)
from promptdag.engine.row_window import RowWindow
from promptdag.flows.artifacts import RunView, workflow_tag
from promptdag.flows.batch_levels import MAX_BATCH_LINES, run_in_batches
from promptdag.flows.lost_api import remember
from promptdag.flows.provider_settings import provider_settings_checked
from promptdag.flows.row_log import INLINE_ROWS, RowLog, log_path
from promptdag.flows.runners import task_placement
from promptdag.flows.scheduler import ReadySetScheduler
from promptdag.llm.base import Usage
from promptdag.llm.registry import preload
from promptdag.spec.dependencies import fill_missing
from promptdag.spec.graph import WorkflowGraph
from promptdag.spec.models import TaskSpec, WorkflowSpec, load_spec, parse_spec
from promptdag.spec.validation import spec_models, validate_spec
from promptdag.tasks.feeds import Feed, find_feed
from promptdag.tasks.infer_dependencies import infer_dependencies


def _flow_run_name() -> str:
    """Flow runs are named after the workflow, so the Prefect UI reads like the spec."""
    spec: Any = flow_run.parameters.get("spec")
    if isinstance(spec, str):  # a spec file: its stem (stored specs are named after the workflow)
        return Path(spec).stem.rsplit("-", 1)[0] or "workflow"
    name = spec.get("name") if isinstance(spec, dict) else getattr(spec, "name", None)
    data = flow_run.parameters.get("data")
    if isinstance(data, list) and data:  # a batch, or a shard of one: its rows in the name
        first = int(flow_run.parameters.get("row_offset") or 0)
        return f"{name or 'workflow'} [rows {first}-{first + len(data) - 1}]"
    if isinstance(data, str):
        return f"{name or 'workflow'} [batch]"
    return str(name or "workflow")


@flow(
    name="run-workflow",
    flow_run_name=_flow_run_name,
    # Prefect's parameter validation reads every `{"$ref": ...}` as a block reference, and
    # JSON schemas (output_schema, options, context) are full of `$ref`: the spec is validated
    # by its own model below instead, so parameters carry any JSON as written.
    validate_parameters=False,
    persist_result=True,  # `promptdag result RUN_ID` reads it back later, from any process
    result_serializer="json",
)
async def run_workflow(
    spec: WorkflowSpec | str,
    resume_scope: str | None = None,
    data: list[dict[str, Any]] | str | None = None,
    row_offset: int = 0,
    row_limit: int | None = None,
    add_from: str | None = None,
) -> State[WorkflowResult]:
    """Run a workflow spec: every task as soon as its dependencies allow, `breadth` at a time.

    The flow run ends Completed when every task completed, Failed otherwise; in both cases its
    result is the `WorkflowResult`.

    Args:
        spec: the workflow: its tasks, their dependencies and the config (a seed API request
            body loads as it is), or the path of a spec file. Prefect caps a flow run's
            parameters at 512 KB, so large specs travel as files (see `promptdag.api`).
        resume_scope: whose finished tasks this run may reuse (tasks/prompt_cache.py): by
            default this flow run's own (so a retry of it resumes it and a new run starts
            afresh); a resume passes the scope of the run it resumes, a parent flow its own.
        data: a batch: rows (mappings of field -> value), or the path of a .jsonl/.csv file;
            the workflow runs once per row, all rows in one run, streamed through a window of
            open rows (promptdag/engine/row_window.py).
        row_offset: the index of the first row (a shard of a larger batch).
        row_limit: a data file's first rows only (`--limit`).
        add_from: the key of a feed (tasks/feeds.py) of `AddedTask`s that join the workflow
            while it runs, until the feed closes: a plan read as it streams. Only from a
            parent flow in the same process, and not with `data`.
    """
    if isinstance(spec, str):
        spec = load_spec(spec)
    elif not isinstance(spec, WorkflowSpec):  # a deployment run's parameters are plain JSON
        spec = parse_spec(spec, source="flow parameter 'spec'")
    if data is not None and add_from is not None:
        raise ValueError("run_workflow: add_from does not take a batch's data")
    with provider_settings_checked():  # keys and base URLs, where the run runs
        graph = validate_spec(spec if data is None else RowPlan(spec).template,
                              bounded=data is None)  # a batch's rows are bounded as read
    started, clock = datetime.now(timezone.utc), time.perf_counter()
    extra_usage = Usage()
    if spec.config.infer_dependencies and any(t.depends_on is None for t in spec.tasks):
        spec, extra_usage = await _infer_dependencies(spec)
        graph = validate_spec(spec if data is None else RowPlan(spec).template,
                              bounded=data is None)
    await asyncio.to_thread(preload, spec_models(spec))  # SDK imports off the event loop
    if data is not None:
        rows = iter_rows(data, row_limit) if isinstance(data, str) else iter(data)
        expected = count_rows(data, row_limit) if isinstance(data, str) else len(data)
        return await _run_batch(spec, graph, rows, expected, row_offset, resume_scope,
                                started, clock, extra_usage)
    view = RunView("workflow", spec.name, total=len(spec.tasks), tags=[workflow_tag(spec.name)])
    async with view:  # tags, live progress (see flows/artifacts.py)
        async with task_placement(spec.config) as invoke:
            scheduler = ReadySetScheduler(spec, graph, invoke, subflow=run_workflow)
            feed = find_feed(add_from)
            if feed is None:
                tasks = await scheduler.run()
            else:  # the adder ends with the feed; a workflow that stops early ends it too
                adder = asyncio.create_task(add_while_running(feed, scheduler, scheduler.hold()))
                try:
                    tasks = await scheduler.run()
                finally:
                    adder.cancel()
    if not spec.config.collect_intermediate:
        tasks = [_without_intermediate(t, keep=not graph.dependents[t.fan_out or t.name])
                 for t in tasks]  # an instance is as final as its fan-out task
    result = WorkflowResult.model_validate({  # status, summary, usage: derived from the tasks
        "name": spec.name,
        "flow_run_id": str(flow_run.id) if flow_run.id else None,
        "started_at": started,
        "finished_at": datetime.now(timezone.utc),
        "elapsed_seconds": round(time.perf_counter() - clock, 4),
        "tasks": tasks,
        "overhead_usage": extra_usage,  # dependency inference: a call beyond the tasks
        "stop_reason": "budget" if scheduler.budget_stop else None,
        "budget": scheduler.budget_stop,
    })
    return await _end(result, view, graph, spec)


async def _run_batch(
    spec: WorkflowSpec, graph: WorkflowGraph, rows: Iterator[dict[str, Any]],
    expected: int | None, row_offset: int, resume_scope: str | None, started: datetime,
    clock: float, extra_usage: Usage,
) -> State[WorkflowResult]:
    """A batch, streamed: rows read as the window has room (promptdag/engine/row_window.py),
    each row's outcome logged (flows/row_log.py) and announced as it ends. `graph`: the
    workflow's own (`RowPlan.template`, validated)."""
    plan = RowPlan(spec)
    log = RowLog(log_path(resume_scope or str(flow_run.id)))
    inline: list[tuple[RowResult, list[TaskResult]]] = []  # a small batch's, in its result
    count = 0

    def on_row(row: RowResult, tasks: list[TaskResult]) -> None:
        nonlocal count
        count += 1
        log.write(row)
        if count <= INLINE_ROWS:
            inline.append((row, tasks))
        elif inline:
            inline.clear()
        emit_row(row)

    window = RowWindow(plan, rows, batch_window(spec), on_row, offset=row_offset,
                       finished=log.finished, expected_rows=expected)
    view = RunView("workflow", spec.name, total=window.total, tags=[workflow_tag(spec.name)])
    try:
        async with view:
            async with task_placement(spec.config) as invoke:
                scheduler = ReadySetScheduler(spec, graph, invoke, subflow=run_workflow,
                                              rows=window)
                if spec.config.batch_api:  # flows/batch_levels.py
                    kept = await run_in_batches(scheduler)
                else:
                    kept = await scheduler.run()
    finally:
        log.close()
    tally = window.tally
    inline.sort(key=lambda done: done[0].index)
    if inline:
        kept = [task for _, tasks in inline for task in tasks]
    if not spec.config.collect_intermediate:
        finals = set(plan.finals)
        kept = [_without_intermediate(
            t, keep=(t.fan_out or t.name).split("] ", 1)[-1] in finals) for t in kept]
    result = WorkflowResult.model_validate({
        "name": spec.name,
        "status": tally.status,
        "flow_run_id": str(flow_run.id) if flow_run.id else None,
        "started_at": started,
        "finished_at": datetime.now(timezone.utc),
        "elapsed_seconds": round(time.perf_counter() - clock, 4),
        "tasks": kept,  # a large batch's: its first failed rows' (see RowWindow)
        "summary": tally.summary,
        "usage": tally.usage + extra_usage,
        "saved_usage": tally.saved_usage,
        "rows": [row for row, _ in inline] if count <= INLINE_ROWS else None,
        "rows_file": str(log.path),
        "warning": log.error,
        "stop_reason": "budget" if scheduler.budget_stop else None,
        "budget": scheduler.budget_stop,
    })
    return await _end(result, view, graph, spec)


def batch_window(spec: WorkflowSpec) -> int:
    """Rows open at once: enough to keep `breadth` slots busy when each row is a chain; with
    `batch_api`, as many as one provider batch takes, so a level goes out in few batches."""
    if spec.config.batch_api:
        return MAX_BATCH_LINES
    return max(4 * spec.config.breadth, 16)


async def _end(
    result: WorkflowResult, view: RunView, graph: WorkflowGraph, spec: WorkflowSpec
) -> State[WorkflowResult]:
    remember(flow_run.id, result)  # the caller's copy if the API goes away (flows/lost_api.py)
    await view.publish_workflow(result, graph, spec)
    if result.status == "completed":
        return Completed(data=result, message=f"{result.summary.total_tasks} tasks completed")
    s = result.summary
    rows = f" ({sum(r.status != 'completed' for r in result.rows)} rows failed)" if (
        result.rows) else ""
    message = (f"{s.failed_count} failed, {s.cancelled_count} cancelled, {s.skipped_count} "
               f"skipped of {s.total_tasks} tasks{rows}")
    return Failed(data=result, message=message)


async def _infer_dependencies(spec: WorkflowSpec) -> tuple[WorkflowSpec, Usage]:
    """Ask the workflow's model which tasks need which (seed 002); fills only missing ones."""
    model = spec.config.model if isinstance(spec.config.model, str) else spec.config.model[0]
    inferred = await infer_dependencies.with_options(task_run_name="infer dependencies")(
        [(t.name, t.prompt) for t in spec.tasks], model, spec.config.model_options
    )
    tasks = fill_missing(spec.tasks, inferred.depends_on)
    return spec.model_copy(update={"tasks": tasks}), inferred.usage


class AddedTask(BaseModel):
    """A task that joins a running workflow (`add_from`): as a spec declares it, with the
    tasks it waits for (declared or added before it)."""

    task: TaskSpec
    depends_on: list[str] = Field(default_factory=list)


async def add_while_running(
    feed: Feed, scheduler: ReadySetScheduler, release: Callable[[], None]
) -> None:
    """Add each task of `feed` to the running workflow until the feed closes, then `release`
    the scheduler's hold (taken before its loop started, so it waits for the feed's end)."""
    try:
        while (item := await feed.get()) is not None:
            added = AddedTask.model_validate(item)
            scheduler.add_task(added.task, added.depends_on)
    finally:
        release()


def _without_intermediate(task: TaskResult, keep: bool) -> TaskResult:
    """Drop prompts and results of intermediate tasks; final tasks keep their results."""
    return task.model_copy(update={"prompt": None, "result": task.result if keep else None})
