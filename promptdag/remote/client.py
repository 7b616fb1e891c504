"""Programmatic runs on a Prefect server: submit to a deployment, poll its status, fetch its result.

The seed API (000) mapped onto Prefect's, with no HTTP server of our own:

- `POST /workflows/` then `/execute` -> `submit_workflow(spec)`: the run id at once
  (`run_deployment(..., timeout=0)`);
- `POST /workflows/plan-execute` -> `submit_objective(text)`: the same for an objective;
- `GET /workflows/{id}/status` -> `get_status(run_id)`: the flow run's state and its progress
  artifact as `{status, progress, tasks_completed, tasks_total, elapsed_seconds}`;
- `GET /workflows/{id}` -> `get_result(run_id)`: the persisted flow result.

A batch (a workflow over rows of data) goes out as shards: `submit_batch(spec, rows, shards=N)`
makes N runs of the deployment, each with its contiguous part of the rows, tagged with one
batch tag; any number of workers share them. `wait_for_rows(run_ids)` waits for every shard and
gathers their rows into one list in data order (`write_rows` makes it one JSONL file).

A worker (`prefect worker start --pool promptdag-process`) or
`python -m promptdag.deployments.serve`
runs what is submitted; the flows persist their results, so any process on the machine can
fetch them later. Every function has an `a`-prefixed async twin; the plain ones are for
scripts without an event loop. Errors a user can fix raise `ConfigError`/`SpecError` with one
line that says how.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any
from uuid import UUID

from pydantic import BaseModel, Field

from promptdag.engine.objective import ObjectiveRequest, ObjectiveResult
from promptdag.engine.results import RowResult, WorkflowResult
from promptdag.errors import ConfigError, PromptDagError, RunFailedError, SpecError
from promptdag.spec.models import WorkflowSpec

if TYPE_CHECKING:
    from prefect.client.orchestration import PrefectClient
    from prefect.client.schemas.objects import FlowRun

WORKFLOW_DEPLOYMENT = "run-workflow/workflow"
OBJECTIVE_DEPLOYMENT = "plan-execute-reflect/objective"
FINAL = {"completed", "failed", "cancelled", "crashed"}
START_SERVER = "start one with `promptdag server start` and export the PREFECT_API_URL it prints"


class RunStatus(BaseModel):
    """Where a submitted run is: the seed API's status body, plus Prefect's own words."""

    run_id: str
    name: str
    status: str = Field(
        ..., description="Prefect's state type, lower case: scheduled, pending, running, "
        "completed, failed, cancelled, crashed, paused or cancelling."
    )
    state_name: str = Field(..., description="Prefect's state name, e.g. Late, AwaitingRetry.")
    progress: float = Field(..., ge=0, le=1, description="tasks_completed / tasks_total.")
    tasks_completed: int = Field(
        ..., description="Tasks that have finished, whatever their outcome (completed, "
        "failed, skipped or cancelled)."
    )
    tasks_failed: int = Field(0, description="Of those, the tasks that failed.")
    tasks_total: int = Field(
        ..., description="Tasks known so far (an objective's later rounds add theirs)."
    )
    current_depth: int | None = Field(None, description="Objectives: the current round.")
    max_depth: int | None = Field(None, description="Objectives: at most this many rounds.")
    elapsed_seconds: float
    message: str | None = Field(None, description="The state's message, e.g. what failed.")
    url: str | None = Field(None, description="The flow run's page in the Prefect UI.")

    @property
    def finished(self) -> bool:
        return self.status in FINAL


# -- submit --------------------------------------------------------------------------------


async def asubmit_workflow(
    spec: WorkflowSpec | dict[str, Any] | str | Path,
    deployment: str = WORKFLOW_DEPLOYMENT,
    tags: list[str] | None = None,
) -> UUID:
    """Validate `spec` here, then create a run of `deployment` with it; returns the run id at once.

    Raises:
        SpecError: the spec is invalid (nothing was submitted).
        ConfigError: no server, an unreachable server or an unknown deployment.
    """
    from promptdag.api import as_parameter, as_spec
    from promptdag.spec.validation import validate_spec

    workflow = as_spec(spec)
    validate_spec(workflow, check_keys=False)  # provider settings: the worker's (it checks)
    # A spec over Prefect's parameter limit travels as the path of a stored copy (the worker
    # of a process pool shares this machine's PREFECT_HOME).
    stored = as_parameter(workflow)
    parameters = {"spec": stored if isinstance(stored, str)
                  else workflow.model_dump(mode="json", exclude_unset=True)}
    return await _submit(deployment, parameters, workflow.name,
                         ["promptdag", f"workflow:{workflow.name}", *(tags or [])])


async def asubmit_objective(
    objective: ObjectiveRequest | dict[str, Any] | str,
    context: dict[str, Any] | None = None,
    config: dict[str, Any] | None = None,
    deployment: str = OBJECTIVE_DEPLOYMENT,
    tags: list[str] | None = None,
) -> UUID:
    """Create a plan-execute-reflect run of `deployment`; returns the run id at once."""
    from promptdag.api import as_objective_request

    request = as_objective_request(objective, context, config, check_keys=False)
    # Every parameter is sent, so none falls back to the deployment's example defaults.
    parameters = {
        "objective": request.objective,
        "context": request.context,
        "config": request.config.model_dump(mode="json", exclude_unset=True),
    }
    name = request.objective if len(request.objective) <= 60 else request.objective[:57] + "..."
    return await _submit(deployment, parameters, name, ["promptdag", *(tags or [])])


async def _submit(
    deployment: str, parameters: dict[str, Any], name: str, tags: list[str]
) -> UUID:
    from prefect.deployments import arun_deployment
    from prefect.exceptions import ObjectNotFound, PrefectHTTPStatusError

    async with _connect() as client:
        try:
            flow_run = await arun_deployment(
                deployment, client=client, parameters=parameters, flow_run_name=name,
                tags=tags, timeout=0, as_subflow=False,
            )
        except ObjectNotFound:
            raise ConfigError(
                f"no deployment {deployment!r} on {_api_url()}: run `prefect deploy --all` "
                "here (then `prefect worker start --pool promptdag-process`), or serve them "
                "with `python -m promptdag.deployments.serve`"
            ) from None
        except PrefectHTTPStatusError as exc:
            if exc.response.status_code in (409, 422):  # the deployment's schema said no
                raise SpecError(f"{deployment}: parameters rejected: {_detail(exc)}") from None
            raise
    return flow_run.id


class SubmittedBatch(BaseModel):
    """The shards of one batch submission."""

    tag: str = Field(..., description="The tag every shard carries (batch:<hex>).")
    run_ids: list[UUID] = Field(..., description="One flow run per shard, in row order.")
    rows: int = Field(..., description="Rows submitted, over all shards.")


async def asubmit_batch(
    spec: WorkflowSpec | dict[str, Any] | str | Path,
    data: list[dict[str, Any]] | str | Path,
    shards: int = 1,
    limit: int | None = None,
    deployment: str = WORKFLOW_DEPLOYMENT,
    tags: list[str] | None = None,
) -> SubmittedBatch:
    """The workflow over `data` (rows, or a .jsonl/.csv path) as `shards` runs of `deployment`.

    Each run gets a contiguous part of the rows inline (`data`) and the index of its first row
    (`row_offset`), so row ids and indexes are those of the whole batch, and carries the
    batch's tag and `shard:<i>/<n>`. Every row's instance of the workflow is validated here
    first, so bad data submits nothing. A shard whose rows exceed Prefect's parameter limit
    travels as the path of a stored copy, which only workers on this machine can read.

    Raises:
        SpecError: the spec or a row is invalid (nothing was submitted).
        ConfigError: no server, an unreachable server or an unknown deployment.
    """
    from promptdag.api import as_data_parameter, as_parameter, as_spec
    from promptdag.engine.batch import expand, read_rows
    from promptdag.remote.shards import new_batch_tag, split_rows
    from promptdag.spec.validation import validate_spec

    workflow = as_spec(spec)
    rows = read_rows(data, limit) if isinstance(data, (str, Path)) else list(data)[:limit]
    parts = split_rows(rows, shards)
    # every row's instance of the workflow (row fields fill its placeholders), ids unique
    # over the whole batch, not only within a shard
    validate_spec(expand(workflow, rows).spec, check_keys=False)  # the worker checks keys
    stored = as_parameter(workflow)
    spec_parameter = (stored if isinstance(stored, str)
                      else workflow.model_dump(mode="json", exclude_unset=True))
    tag = new_batch_tag()
    run_ids: list[UUID] = []
    for part in parts:
        name = f"{workflow.name} [shard {part.number}/{len(parts)}]"
        parameters = {"spec": spec_parameter, "data": as_data_parameter(part.rows),
                      "row_offset": part.offset}
        try:
            run_ids.append(await _submit(
                deployment, parameters, name,
                ["promptdag", f"workflow:{workflow.name}", tag,
                 f"shard:{part.number}/{len(parts)}", *(tags or [])],
            ))
        except PromptDagError as exc:
            raise type(exc)(_batch_failure(str(exc), run_ids)) from None
    return SubmittedBatch(tag=tag, run_ids=run_ids, rows=len(rows))


def _batch_failure(message: str, submitted: list[UUID]) -> str:
    """What failed, what to do about a deployment from before batches, what was submitted."""
    if "parameters rejected" in message:
        message += (" (a deployment made before batches has no `data` parameter: run "
                    "`prefect deploy --all` again)")
    if submitted:
        message += (f"; shards already submitted: {' '.join(map(str, submitted))} (cancel "
                    "them with `prefect flow-run cancel ID`)")
    return message


# -- status and result ---------------------------------------------------------------------


async def aget_status(run_id: str | UUID) -> RunStatus:
    """The run's state and progress (from its progress artifact, or its result when done)."""
    from promptdag.flows.orphans import crash_orphans

    async with _connect() as client:
        flow_run = await _read_run(client, run_id)
        flow_run = (await crash_orphans(client, [flow_run]))[0]  # its process died: Crashed
        status = flow_run.state_type.value.lower() if flow_run.state_type else "scheduled"
        progress = await _read_progress(client, flow_run.id)
        result = await _read_result(flow_run) if status in FINAL else None
        url = ui_url(flow_run.id)  # while connected: the server found is the one to link
    done, failed, total, depth, max_depth = _counts(flow_run, progress, result)
    return RunStatus(
        run_id=str(flow_run.id),
        name=flow_run.name,
        status=status,
        state_name=flow_run.state_name or status.title(),
        progress=round(done / total, 4) if total else (1.0 if status == "completed" else 0.0),
        tasks_completed=done,
        tasks_failed=failed,
        tasks_total=total,
        current_depth=depth,
        max_depth=max_depth,
        elapsed_seconds=_elapsed(flow_run),
        message=flow_run.state.message if flow_run.state else None,
        url=url,
    )


async def aget_result(run_id: str | UUID) -> WorkflowResult | ObjectiveResult:
    """The finished run's result, read from Prefect's result storage.

    Raises:
        ConfigError: the run has not finished, or completed without a persisted result.
        RunFailedError: it ended failed, crashed or cancelled without a result.
    """
    async with _connect() as client:
        flow_run = await _read_run(client, run_id)
    status = flow_run.state_type.value.lower() if flow_run.state_type else "scheduled"
    if status not in FINAL:
        raise ConfigError(f"run {flow_run.id} has not finished ({flow_run.state_name}): "
                          f"`promptdag result {flow_run.id}` waits for it (without "
                          f"--no-wait), `promptdag watch {flow_run.id}` shows its progress")
    result = await _read_result(flow_run)
    if result is None:
        why = flow_run.state.message if flow_run.state and flow_run.state.message else status
        error = RunFailedError if status != "completed" else ConfigError  # failed: exit 1
        raise error(f"run {flow_run.id} ended {flow_run.state_name} without a result: {why}")
    return result


async def aget_spec(run_id: str | UUID) -> WorkflowSpec | None:
    """The workflow spec a run was started with, as its `spec` parameter holds it (fields as
    the user wrote them); None for an objective or a spec that can no longer be read."""
    from promptdag.spec.models import load_spec, parse_spec

    async with _connect() as client:
        flow_run = await _read_run(client, run_id)
    spec = (flow_run.parameters or {}).get("spec")
    try:
        if isinstance(spec, dict):
            return parse_spec(spec)
        return load_spec(spec) if isinstance(spec, str) and Path(spec).is_file() else None
    except PromptDagError:
        return None


async def await_result(
    run_id: str | UUID, timeout: float | None = None, poll_seconds: float = 1.0
) -> WorkflowResult | ObjectiveResult:
    """Poll until the run has finished (or `timeout` seconds passed), then fetch its result."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        status = await aget_status(run_id)
        if status.finished:
            return await aget_result(run_id)
        if deadline is not None and time.monotonic() >= deadline:
            raise ConfigError(f"run {run_id} still {status.state_name} after {timeout:g} s "
                              f"({status.tasks_completed}/{status.tasks_total} tasks)")
        await asyncio.sleep(poll_seconds)


async def await_rows(
    run_ids: Sequence[str | UUID], timeout: float | None = None, poll_seconds: float = 1.0
) -> list[RowResult]:
    """Wait for every run of a batch (its shards), then their rows as one list by row index.

    A batch's tag (`batch:<hex>`, as `submit_batch` returns it) stands for all of its runs.

    Raises:
        ConfigError: a run did not finish in `timeout` seconds, ended without a result, or
            is not a batch run (it has no rows).
        SpecError: two runs report the same row (runs of different batches).
    """
    from promptdag.remote.shards import BATCH_TAG_PREFIX, gather_rows

    expanded: list[str] = []
    for run in run_ids:
        if str(run).startswith(BATCH_TAG_PREFIX):  # a batch's tag stands for all its runs
            expanded += [str(r) for r in await abatch_run_ids(str(run))]
        else:
            expanded.append(str(run))
    unique = list(dict.fromkeys(expanded))
    results = await asyncio.gather(*(await_result(r, timeout, poll_seconds) for r in unique))
    parts = []
    for run_id, result in zip(unique, results, strict=True):
        rows = result.rows if isinstance(result, WorkflowResult) else None
        if rows is None and isinstance(result, WorkflowResult) and result.rows_file:
            from promptdag.flows.row_log import read_log  # a large batch: its row log

            rows = _read_log(result.rows_file, run_id, read_log)
        if rows is None:
            raise ConfigError(f"run {run_id} is not a batch run (it has no rows): submit "
                              "with --data, or read it with `promptdag result RUN_ID`")
        parts.append(rows)
    return gather_rows(parts)


def _read_log(path: str, run_id: str, read: Any) -> list[RowResult]:
    try:
        rows: list[RowResult] = read(path)
    except OSError as exc:
        raise ConfigError(f"run {run_id}: its row log {path} cannot be read "
                          f"({exc.strerror or exc}): it lives in the result storage of the "
                          "machine that ran it") from None
    return rows


async def abatch_run_ids(tag: str) -> list[UUID]:
    """The runs of one batch submission (those tagged `tag`), in shard order.

    Raises:
        SpecError: no run carries the tag.
    """
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags

    async with _connect() as client:
        runs = await client.read_flow_runs(
            flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[tag]))
        )
    if not runs:
        raise SpecError(f"no flow run is tagged {tag!r} on {_api_url()} (submit prints the "
                        "tag of a batch on stderr)")

    def shard(run: FlowRun) -> int:
        found = [t for t in run.tags if t.startswith("shard:")]
        return _int(found[0].removeprefix("shard:").split("/")[0]) or 0 if found else 0

    return [run.id for run in sorted(runs, key=shard)]


def write_rows(rows: list[RowResult], path: str | Path) -> Path:
    """One JSON line per row (the lines `promptdag run --data --output` writes)."""
    out = Path(path)
    with out.open("w", encoding="utf-8") as file:
        for row in rows:
            file.write(row.model_dump_json() + "\n")
    return out


def submit_workflow(
    spec: WorkflowSpec | dict[str, Any] | str | Path,
    deployment: str = WORKFLOW_DEPLOYMENT,
    tags: list[str] | None = None,
) -> UUID:
    """Synchronous `asubmit_workflow`."""
    return asyncio.run(asubmit_workflow(spec, deployment, tags))


def submit_objective(
    objective: ObjectiveRequest | dict[str, Any] | str,
    context: dict[str, Any] | None = None,
    config: dict[str, Any] | None = None,
    deployment: str = OBJECTIVE_DEPLOYMENT,
    tags: list[str] | None = None,
) -> UUID:
    """Synchronous `asubmit_objective`."""
    return asyncio.run(asubmit_objective(objective, context, config, deployment, tags))


def submit_batch(
    spec: WorkflowSpec | dict[str, Any] | str | Path,
    data: list[dict[str, Any]] | str | Path,
    shards: int = 1,
    limit: int | None = None,
    deployment: str = WORKFLOW_DEPLOYMENT,
    tags: list[str] | None = None,
) -> SubmittedBatch:
    """Synchronous `asubmit_batch`."""
    return asyncio.run(asubmit_batch(spec, data, shards, limit, deployment, tags))


def wait_for_rows(
    run_ids: Sequence[str | UUID], timeout: float | None = None, poll_seconds: float = 1.0
) -> list[RowResult]:
    """Synchronous `await_rows`."""
    return asyncio.run(await_rows(run_ids, timeout, poll_seconds))


def get_status(run_id: str | UUID) -> RunStatus:
    """Synchronous `aget_status`."""
    return asyncio.run(aget_status(run_id))


def get_result(run_id: str | UUID) -> WorkflowResult | ObjectiveResult:
    """Synchronous `aget_result`."""
    return asyncio.run(aget_result(run_id))


def get_spec(run_id: str | UUID) -> WorkflowSpec | None:
    """Synchronous `aget_spec`."""
    return asyncio.run(aget_spec(run_id))


def wait_for_result(
    run_id: str | UUID, timeout: float | None = None, poll_seconds: float = 1.0
) -> WorkflowResult | ObjectiveResult:
    """Synchronous `await_result`."""
    return asyncio.run(await_result(run_id, timeout, poll_seconds))


# -- reading the API -----------------------------------------------------------------------


def _api_url() -> str:
    from prefect.settings import get_current_settings

    url = get_current_settings().api.url
    if not url:
        raise ConfigError(f"no Prefect server configured (PREFECT_API_URL is not set): "
                          f"{START_SERVER}")
    return str(url)


def ui_url(run_id: UUID) -> str | None:
    """The flow run's page in the Prefect UI (None without a configured server)."""
    from prefect.settings import get_current_settings

    base = get_current_settings().ui_url
    return f"{base}/runs/flow-run/{run_id}" if base else None


@asynccontextmanager
async def _connect() -> AsyncIterator[PrefectClient]:
    """A Prefect client for a configured, reachable server (never an ephemeral one): with no
    PREFECT_API_URL, the local server running in PREFECT_HOME, as the CLI finds it."""
    from promptdag.remote.autoserver import reach_prefect

    with reach_prefect(start=False, say=lambda line: None):  # before Prefect is imported
        from prefect.client.orchestration import get_client

        url = _api_url()
        async with get_client() as client:
            if (problem := await client.api_healthcheck()) is not None:
                raise ConfigError(f"cannot reach the Prefect API at {url} "
                                  f"({type(problem).__name__}): is the server running? "
                                  f"{START_SERVER}")
            yield client


async def _read_run(client: PrefectClient, run_id: str | UUID) -> FlowRun:
    from prefect.exceptions import ObjectNotFound

    try:
        uuid = run_id if isinstance(run_id, UUID) else UUID(str(run_id))
    except ValueError:
        raise SpecError(f"{run_id!r} is not a run id (a UUID, as submit prints)") from None
    try:
        return await client.read_flow_run(uuid)
    except ObjectNotFound:
        raise SpecError(f"no flow run {uuid} on {_api_url()}") from None


async def _read_progress(client: PrefectClient, run_id: UUID) -> dict[str, str]:
    """The metadata of the run's own progress artifact ({} before the run has started)."""
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        ArtifactFilterType,
    )
    from prefect.client.schemas.sorting import ArtifactSort

    found = await client.read_artifacts(
        artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[run_id]),
            type=ArtifactFilterType(any_=["progress"]),
        ),
        sort=ArtifactSort.CREATED_DESC,
        limit=1,
    )
    return dict(found[0].metadata_ or {}) if found else {}


async def _read_result(flow_run: FlowRun) -> WorkflowResult | ObjectiveResult | None:
    """The persisted result, or None when the run has none (crashed, not persisted)."""
    state = flow_run.state
    if state is None or state.data is None:
        return None
    try:
        data = await state.aresult(raise_on_failure=False)
    except Exception:
        return None
    if isinstance(data, (WorkflowResult, ObjectiveResult)):
        return data
    if isinstance(data, dict):  # the JSON serializer hands pydantic results back as dicts
        model: type[WorkflowResult] | type[ObjectiveResult] = (
            ObjectiveResult if "objective" in data else WorkflowResult
        )
        try:
            return model.model_validate(data)
        except ValueError:
            return None
    return None


def _counts(
    flow_run: FlowRun,
    progress: dict[str, str],
    result: WorkflowResult | ObjectiveResult | None,
) -> tuple[int, int, int, int | None, int | None]:
    """(finished, failed, total, round, max rounds): from the result when there is one."""
    if isinstance(result, WorkflowResult):
        s = result.summary
        return s.total_tasks, s.failed_count, s.total_tasks, None, None
    if isinstance(result, ObjectiveResult):
        tasks = [t for r in result.rounds if r.result for t in r.result.tasks]
        failed = sum(t.status == "failed" for t in tasks)
        depth = _int(progress.get("max_depth"))
        return len(tasks), failed, len(tasks), len(result.rounds), depth
    total = _int(progress.get("tasks_total"))
    if total is None:  # not started: the spec says how many (unknown for a stored spec)
        spec = flow_run.parameters.get("spec")
        total = len(spec.get("tasks", [])) if isinstance(spec, dict) else 0
    return (_int(progress.get("tasks_finished")) or 0, 0, total,
            _int(progress.get("current_depth")), _int(progress.get("max_depth")))


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _elapsed(flow_run: FlowRun) -> float:
    if flow_run.start_time is None:
        return 0.0
    end = flow_run.end_time or datetime.now(timezone.utc)
    return round(max(0.0, (end - flow_run.start_time).total_seconds()), 3)


def _detail(exc: Any) -> str:
    try:
        body = exc.response.json()
    except ValueError:
        return str(exc.response.text)[:300]
    detail = body.get("detail") or body.get("exception_detail") or body
    return str(detail)[:300]


__all__ = [
    "OBJECTIVE_DEPLOYMENT",
    "WORKFLOW_DEPLOYMENT",
    "PromptDagError",
    "RunStatus",
    "SubmittedBatch",
    "abatch_run_ids",
    "aget_result",
    "aget_status",
    "asubmit_batch",
    "asubmit_objective",
    "asubmit_workflow",
    "await_result",
    "await_rows",
    "get_result",
    "get_status",
    "submit_batch",
    "submit_objective",
    "submit_workflow",
    "ui_url",
    "wait_for_result",
    "wait_for_rows",
    "write_rows",
]
