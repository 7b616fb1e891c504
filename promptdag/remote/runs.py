"""Runs you can find and steer, through Prefect's API: list, logs, cancel, watch, and whether
anything will pick a submitted run up.

Every run of a promptdag flow (`run-workflow`, `plan-execute-reflect`) is a Prefect flow run:
started here by `promptdag run`, by a worker for `promptdag submit`, or by `prefect deployment
run`. This module reads them back with Prefect's client: `list_runs` (state, tasks done,
tokens, cost), `read_logs`, `cancel` (Prefect's Cancelling state; a worker stops a deployment's
run, and `honour_cancellation` stops a run in this process) and `watch` (a run's task runs
turned back into the scheduler's `TaskEvent`s, so the live display of promptdag/cli/_progress.py
shows any run, local or submitted, the way `run` shows its own).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar
from uuid import UUID

from pydantic import BaseModel, Field

from promptdag.engine.events import TaskEvent
from promptdag.engine.objective import ObjectiveResult
from promptdag.engine.results import WorkflowResult
from promptdag.errors import SpecError
from promptdag.remote.client import (
    FINAL,
    _connect,
    _counts,
    _read_progress,
    _read_result,
    _read_run,
)

if TYPE_CHECKING:
    from prefect.client.orchestration import PrefectClient
    from prefect.client.schemas.objects import FlowRun, TaskRun

FLOWS = ["run-workflow", "plan-execute-reflect"]
WORK_POOL = "promptdag-process"


class RunSummary(BaseModel):
    """One line of `promptdag runs`."""

    run_id: str
    workflow: str = Field(..., description="The flow run's name: the workflow or objective.")
    kind: str = Field(..., description="workflow | objective")
    state: str = Field(..., description="Prefect's state name, e.g. Completed, Late, Running.")
    tasks_done: int
    tasks_total: int
    started_at: datetime | None
    scheduled_for: datetime | None = Field(None, description="When a scheduled run is due.")
    duration_seconds: float | None
    input_tokens: int | None = Field(None, description="Known once the run has finished.")
    output_tokens: int | None = None
    cost_usd: float | None = None
    deployment: bool = Field(False, description="Run by a worker of a deployment.")
    url: str | None = None


# -- list ----------------------------------------------------------------------------------


STARTED = ["RUNNING", "PENDING", "PAUSED", "CANCELLING"]
FINISHED = ["COMPLETED", "FAILED", "CRASHED", "CANCELLED"]


async def alist_runs(limit: int = 20, name: str | None = None,
                     scheduled: bool = False) -> list[RunSummary]:
    """Top-level runs of promptdag's flows (subflows left out): the started ones, those still
    going first, then the finished, newest first; with `scheduled`, the runs not started yet
    (an interval schedule makes many), next due first."""
    from prefect.client.schemas.sorting import FlowRunSort

    from promptdag.flows.orphans import crash_orphans

    async with _connect() as client:
        flows = {f.id: f.name for f in await client.read_flows(
            flow_filter=_flows_filter())}
        if not flows:
            return []
        if scheduled:
            runs = await _read_runs(client, ["SCHEDULED"], name, limit,
                                    FlowRunSort.EXPECTED_START_TIME_ASC)
        else:
            runs = await _read_runs(client, STARTED, name, limit, FlowRunSort.START_TIME_DESC)
            runs = await crash_orphans(client, runs)  # a run whose process died: Crashed
            runs += await _read_runs(client, FINISHED, name, limit - len(runs),
                                     FlowRunSort.START_TIME_DESC) if len(runs) < limit else []
        details = await asyncio.gather(*(_details(client, run) for run in runs))
        return [_summary(run, flows, progress, result)
                for run, (progress, result) in zip(runs, details, strict=True)]


def _flows_filter() -> Any:
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    return FlowFilter(name=FlowFilterName(any_=FLOWS))


async def _read_runs(client: PrefectClient, states: list[str], name: str | None, limit: int,
                     sort: Any) -> list[FlowRun]:
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterName,
        FlowRunFilterParentTaskRunId,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType

    return await client.read_flow_runs(
        flow_filter=_flows_filter(),
        flow_run_filter=FlowRunFilter(
            parent_task_run_id=FlowRunFilterParentTaskRunId(is_null_=True),
            name=FlowRunFilterName(like_=name) if name else None,
            state=FlowRunFilterState(type=FlowRunFilterStateType(
                any_=[StateType[state] for state in states])),
        ),
        sort=sort,
        limit=limit,
    )


def _summary(run: FlowRun, flows: dict[UUID, str], progress: dict[str, str],
             result: WorkflowResult | ObjectiveResult | None) -> RunSummary:
    from promptdag.remote.client import ui_url

    done, _, total, _, _ = _counts(run, progress, result)
    usage = result.usage if result is not None else None
    return RunSummary(
        run_id=str(run.id),
        workflow=run.name,
        kind="objective" if flows.get(run.flow_id) == "plan-execute-reflect" else "workflow",
        state=run.state_name or "Scheduled",
        tasks_done=done,
        tasks_total=total,
        started_at=run.start_time,
        scheduled_for=run.expected_start_time,
        duration_seconds=_duration(run),
        input_tokens=usage.input_tokens if usage else None,
        output_tokens=usage.output_tokens if usage else None,
        cost_usd=usage.cost_usd if usage else None,
        deployment=run.deployment_id is not None,
        url=ui_url(run.id),
    )


async def _details(client: PrefectClient, run: FlowRun
                   ) -> tuple[dict[str, str], WorkflowResult | ObjectiveResult | None]:
    final = run.state_type is not None and run.state_type.value.lower() in FINAL
    progress = await _read_progress(client, run.id)
    return progress, (await _read_result(run) if final else None)


def _duration(run: FlowRun) -> float | None:
    if run.start_time is None:
        return None
    if run.end_time is not None:
        return round((run.end_time - run.start_time).total_seconds(), 2)
    return round(run.estimated_run_time.total_seconds(), 2)


# -- logs ----------------------------------------------------------------------------------


class LogLine(BaseModel):
    """One log line of a run: from one of its tasks (`task` names it), else from the run
    itself or one of its subflows (`run` names that)."""

    timestamp: datetime
    level: str
    message: str
    task_run_id: str | None = None
    task: str | None = Field(None, description="The task run's name: the workflow's task.")
    run: str | None = Field(None, description="The flow run the line belongs to.")


async def aread_logs(run_id: str | UUID, limit: int | None = None) -> list[LogLine]:
    """The run's log lines (its own and its task runs'), oldest first; the last `limit`."""
    import logging

    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.client.schemas.sorting import LogSort

    async with _connect() as client:
        run = await _read_run(client, run_id)
        runs = {run.id: run.name, **{r.id: r.name for r in await _subflows(client, run.id)}}
        ids = list(runs)
        logs: list[Any] = []
        offset = 0
        while True:  # the server pages its answers (200 a page)
            page = await client.read_logs(
                log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=ids)),
                sort=LogSort.TIMESTAMP_DESC if limit else LogSort.TIMESTAMP_ASC,
                offset=offset, limit=min(limit - len(logs), 200) if limit else 200)
            logs += page
            offset += len(page)
            if len(page) < 200 or (limit and len(logs) >= limit):
                break
        tasks = await _task_names(client, {log.task_run_id for log in logs if log.task_run_id})
    if limit:
        logs.reverse()
    return [LogLine(timestamp=log.timestamp, level=logging.getLevelName(log.level),
                    message=log.message,
                    task_run_id=str(log.task_run_id) if log.task_run_id else None,
                    task=tasks.get(log.task_run_id) if log.task_run_id else None,
                    run=runs.get(log.flow_run_id))
            for log in logs]


async def _task_names(client: PrefectClient, ids: set[UUID]) -> dict[UUID, str]:
    """Task run id -> its name (promptdag names each task run after its workflow task)."""
    from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterId

    names: dict[UUID, str] = {}
    wanted = list(ids)
    for start in range(0, len(wanted), 200):  # the server pages its answers (200 a page)
        found = await client.read_task_runs(task_run_filter=TaskRunFilter(
            id=TaskRunFilterId(any_=wanted[start:start + 200])), limit=200)
        names.update({t.id: t.name for t in found})
    return names


async def _subflows(client: PrefectClient, run_id: UUID) -> list[FlowRun]:
    """An objective's rounds (and a workflow's sub-workflow tasks): runs inside this one."""
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId

    return await client.read_flow_runs(flow_run_filter=FlowRunFilter(
        parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[run_id])))


# -- cancel --------------------------------------------------------------------------------


async def acancel(run_id: str | UUID, wait_seconds: float = 30.0) -> str:
    """Ask the run to stop (Prefect's Cancelling state) and wait for it to end; returns the
    state name it ended in (or is in after `wait_seconds`).

    A run with no process (Scheduled, Suspended) is Cancelled at once: there is nothing to
    stop. A running one is stopped by whoever runs it: a worker for a deployment's
    run, the `promptdag run` process for a local one (see `honour_cancellation`).

    Raises:
        SpecError: no such run, or it has already finished.
    """
    from prefect.client.schemas.objects import State, StateType
    from prefect.states import Cancelled, Cancelling

    async with _connect() as client:
        run = await _read_run(client, run_id)
        state = run.state_type.value.lower() if run.state_type else "scheduled"
        if state in FINAL:
            raise SpecError(f"run {run.id} has already finished ({run.state_name}): nothing "
                            "to cancel")
        # no process: waiting for a worker, or suspended (a deployment's run waiting for a
        # review); a run pending (a worker is starting it) or paused in its own process is
        # stopped by that worker or process, like a running one
        no_process = run.state_type == StateType.SCHEDULED or (
            run.state_type == StateType.PAUSED and run.state_name == "Suspended")
        new: State[Any] = (Cancelled(message="cancelled with promptdag cancel before it ran")
                           if no_process
                           else Cancelling(message="cancelled with promptdag cancel"))
        await client.set_flow_run_state(run.id, new, force=True)
        deadline = time.monotonic() + wait_seconds
        while True:
            run = await client.read_flow_run(run.id)
            if ((run.state_type and run.state_type.value.lower() in FINAL)
                    or time.monotonic() >= deadline):
                return run.state_name or "Cancelling"
            await asyncio.sleep(0.5)


RESIGNAL_SECONDS = 10.0  # a run still Cancelling this long after its SIGTERM is signalled again


@contextmanager
def honour_cancellation(poll_seconds: float = 1.0) -> Iterator[None]:
    """While a run goes in this process, stop it when `promptdag cancel` (or the UI's Cancel)
    puts it in Cancelling: Prefect's engine then ends it Cancelled, as it does for a worker's
    cancel, and the run raises `TerminationSignal`.

    The flow run's id is learnt from the first task event (the scheduler emits inside the
    flow run's context); the state is polled from a daemon thread, which only needs a server
    (Prefect's temporary local API cannot be reached from another process anyway). A run still
    Cancelling `RESIGNAL_SECONDS` after its signal is signalled again: the signal's exception
    can land in an event-loop callback, which asyncio logs and drops (a busy batch, seen in
    benchmarks/streaming.py), and the run would then go on to its end.
    """
    import os
    import signal

    from promptdag.engine.events import subscribe

    if not os.environ.get("PREFECT_API_URL") or threading.current_thread() is not (
            threading.main_thread()):
        yield
        return
    seen: list[UUID] = []

    def learn(event: TaskEvent) -> None:
        from prefect.context import FlowRunContext

        context = FlowRunContext.get()
        if not seen and context is not None and context.flow_run is not None:
            seen.append(context.flow_run.id)

    stop = threading.Event()

    def poll() -> None:
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.objects import StateType

        root: UUID | None = None
        signalled: float | None = None
        with get_client(sync_client=True) as client:
            while not stop.wait(poll_seconds):
                if not seen:
                    continue
                try:
                    if root is None:  # an objective's events come from its rounds' subflows
                        run = client.read_flow_run(seen[0])
                        while run.parent_task_run_id is not None:
                            parent = client.read_task_run(run.parent_task_run_id)
                            assert parent.flow_run_id is not None
                            run = client.read_flow_run(parent.flow_run_id)
                        root = run.id
                    state = client.read_flow_run(root).state_type
                except Exception:  # the API's problems are the run's to report, not ours
                    continue
                if state != StateType.CANCELLING:
                    if signalled is not None:  # Cancelled: the signal was heard
                        return
                    continue
                if signalled is None or time.monotonic() - signalled >= RESIGNAL_SECONDS:
                    from promptdag._prefect_compat import intend_cancel

                    # what a worker's runner does: say "cancel", then SIGTERM
                    intend_cancel()
                    signal.raise_signal(signal.SIGTERM)
                    signalled = time.monotonic()

    unsubscribe = subscribe(learn)
    watcher = threading.Thread(target=poll, name="promptdag-cancel-watch", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        stop.set()
        unsubscribe()


# -- who runs it ---------------------------------------------------------------------------


async def anobody_polling(run_id: str | UUID) -> str | None:
    """For a deployment's run that waits to start: a line saying nothing polls for it (no
    worker on its work pool, no `serve` process) and what to start; None otherwise."""
    from prefect.client.schemas.objects import DeploymentStatus, StateType, WorkPoolStatus

    async with _connect() as client:
        run = await _read_run(client, run_id)
        if run.deployment_id is None or run.state_type not in (StateType.SCHEDULED,
                                                                StateType.PENDING):
            return None
        deployment = await client.read_deployment(run.deployment_id)
        pool = (await client.read_work_pool(deployment.work_pool_name)
                if deployment.work_pool_name else None)
    if pool is not None and pool.status == WorkPoolStatus.READY:  # a worker's heartbeat
        return None
    if pool is None and deployment.status == DeploymentStatus.READY:  # `serve` polled it
        return None
    if deployment.work_pool_name:
        return (f"no worker is polling the work pool {deployment.work_pool_name!r}, so the run "
                f"waits: start one from the repository root with `prefect worker start --pool "
                f"{deployment.work_pool_name}` (or serve the deployments: "
                "`python -m promptdag.deployments.serve`)")
    return ("nothing is serving this deployment, so the run waits: start "
            "`python -m promptdag.deployments.serve` from the repository root")


def nobody_polling(run_id: str | UUID) -> str | None:
    """Synchronous `anobody_polling`."""
    return asyncio.run(anobody_polling(run_id))


# -- watch ---------------------------------------------------------------------------------


async def awatch(run_id: str | UUID, on_event: Callable[[TaskEvent], None],
                 poll_seconds: float = 1.0) -> FlowRun:
    """Follow a run until it ends: each new start, retry and end of its task runs (and its
    subflows') goes to `on_event` as a `TaskEvent`; returns the finished flow run."""
    async with _connect() as client:
        run = await _read_run(client, run_id)
        tracker = _Tracker(run.name, on_event)
        while True:
            run = await client.read_flow_run(run.id)
            progress = await _read_progress(client, run.id)
            tracker.total = max(tracker.total, _counts(run, progress, None)[2])
            await tracker.update(client, await _task_runs(client, run.id))
            if run.state_type and run.state_type.value.lower() in FINAL:
                await _settle(client, run, tracker, poll_seconds)
                return run
            await asyncio.sleep(poll_seconds)


SETTLE_SECONDS = 120.0  # after a run's end, for task runs the server has yet to record


async def _settle(client: PrefectClient, run: FlowRun, tracker: _Tracker,
                  poll_seconds: float) -> None:
    """Look again until every task run the finished run's result says ran has been seen to
    end. The server records task runs from their events, a moment after the run's own end (a
    minute when its database was busy and it retried); a run without a readable result gets
    one last look."""
    ran = _ran(await _read_result(run))
    deadline = time.monotonic() + SETTLE_SECONDS
    while True:
        await asyncio.sleep(poll_seconds)
        await tracker.update(client, await _task_runs(client, run.id))
        if ran <= tracker.finished_names or time.monotonic() >= deadline:
            return


def _ran(result: WorkflowResult | ObjectiveResult | None) -> set[str]:
    """Tasks that were Prefect task runs named after them: those that called their model
    (not reused, skipped or joined, nor a sub-workflow, whose subflow is not named so)."""
    if isinstance(result, WorkflowResult):
        tasks = result.tasks
    elif isinstance(result, ObjectiveResult):
        tasks = [t for r in result.rounds if r.result for t in r.result.tasks]
    else:
        return set()
    return {t.name for t in tasks
            if t.attempts > 0 and t.model is not None and t.status in ("completed", "failed")}


async def _task_runs(client: PrefectClient, run_id: UUID) -> list[TaskRun]:
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.client.schemas.sorting import TaskRunSort

    ids = [run_id, *[r.id for r in await _subflows(client, run_id)]]
    return await client.read_task_runs(
        flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=ids)),
        sort=TaskRunSort.EXPECTED_START_TIME_ASC)


class _Tracker:
    """Turns successive views of task runs into start / retry / finish events."""

    ended: ClassVar[dict[str, str]] = {"COMPLETED": "completed", "FAILED": "failed",
                                       "CRASHED": "failed", "CANCELLED": "cancelled"}

    def __init__(self, workflow: str, on_event: Callable[[TaskEvent], None]) -> None:
        self.workflow, self.on_event = workflow, on_event
        self.total = 0
        self._known: set[UUID] = set()
        self._started: set[UUID] = set()
        self._retried: set[tuple[UUID, int]] = set()
        self._finished: set[UUID] = set()
        self.finished_names: set[str] = set()

    async def update(self, client: PrefectClient, task_runs: list[TaskRun]) -> None:
        for task_run in task_runs:
            if task_run.state_type is None or task_run.id in self._finished:
                continue
            self._known.add(task_run.id)
            self.total = max(self.total, len(self._known))
            kind = task_run.state_type.value
            # attempts after the first are retries (between two looks, a retry can come and go)
            retried = task_run.run_count + (task_run.state_name == "AwaitingRetry")
            if any((task_run.id, n) not in self._retried for n in range(2, retried + 1)):
                reasons = await _retry_reasons(client, task_run.id)
                for attempt in range(2, retried + 1):
                    if (task_run.id, attempt) not in self._retried:
                        self._retried.add((task_run.id, attempt))
                        why = reasons[attempt - 2] if attempt - 2 < len(reasons) else "failed"
                        self.on_event(TaskEvent(self.workflow, task_run.name, "retrying",
                                                None, 0, 0, error=why, attempt=attempt))
            self._emit(task_run, kind)

    def _emit(self, task_run: TaskRun, kind: str) -> None:
        name, message = task_run.name, task_run.state.message if task_run.state else None
        if kind in self.ended:
            self._finished.add(task_run.id)
            self.finished_names.add(name)
            took = task_run.total_run_time.total_seconds() if task_run.total_run_time else None
            error = message if kind != "COMPLETED" else None
            self.on_event(TaskEvent(self.workflow, name, "finished", self.ended[kind],
                                    len(self._finished), self.total, took, error))
        elif kind == "RUNNING" and task_run.id not in self._started:
            self._started.add(task_run.id)
            self.on_event(TaskEvent(self.workflow, name, "started", None,
                                    len(self._finished), self.total))


async def _retry_reasons(client: PrefectClient, task_run_id: UUID) -> list[str]:
    """Why each attempt of a task run failed, in order, from the line Prefect's task engine
    logs before a retry ("Task run failed with exception: Error('why') - Retry 1/3 ...")."""
    import re

    from prefect.client.schemas.filters import LogFilter, LogFilterTaskRunId
    from prefect.client.schemas.sorting import LogSort

    logs = await client.read_logs(
        log_filter=LogFilter(task_run_id=LogFilterTaskRunId(any_=[task_run_id])),
        sort=LogSort.TIMESTAMP_ASC, limit=200)
    reasons = []
    for log in logs:
        found = re.match(r"Task run failed with \w+: (.*) - Retry \d+/\d+", log.message,
                         re.DOTALL)
        if found:
            text = re.sub(r"^\w+\((['\"])(.*)\1\)$", r"\2", found.group(1), flags=re.DOTALL)
            reasons.append(text)
    return reasons


def result_of(run: FlowRun) -> WorkflowResult | ObjectiveResult | None:
    """A finished run's persisted result (None when it has none)."""
    return asyncio.run(_read_result(run))


def list_runs(limit: int = 20, name: str | None = None,
              scheduled: bool = False) -> list[RunSummary]:
    """Synchronous `alist_runs`."""
    return asyncio.run(alist_runs(limit, name, scheduled))


def read_logs(run_id: str | UUID, limit: int | None = None) -> list[LogLine]:
    """Synchronous `aread_logs`."""
    return asyncio.run(aread_logs(run_id, limit))


def cancel(run_id: str | UUID, wait_seconds: float = 30.0) -> str:
    """Synchronous `acancel`."""
    return asyncio.run(acancel(run_id, wait_seconds))


def watch(run_id: str | UUID, on_event: Callable[[TaskEvent], None],
          poll_seconds: float = 1.0) -> FlowRun:
    """Synchronous `awatch`."""
    return asyncio.run(awatch(run_id, on_event, poll_seconds))


__all__ = ["LogLine", "RunSummary", "acancel", "alist_runs", "anobody_polling", "aread_logs",
           "awatch", "cancel", "honour_cancellation", "list_runs", "nobody_polling", "read_logs",
           "result_of", "watch"]
