"""Run identity for local runs: start a new run, resume the latest one that did not complete, or
retry a given run.

- **A new run** (CLI, Python) creates its own flow run, so its tasks' cache keys are scoped to
  its own id (tasks/prompt_cache.py): it calls the models afresh.
- **Resume by default**: the flow run of a spec carries the tag `promptdag-spec:<hash>` (a hash
  of the workflow's name and result storage, see `promptdag.api.spec_fingerprint`, or of an
  objective's text and context). When the latest top-level local
  run with that tag did not complete (still running, failed, crashed, cancelled, killed), the new
  run is started with that run's `resume_scope`, so it reuses exactly that run's finished tasks.
  Two runs started at the same moment therefore share a scope: looking up the latest run and
  creating the new one happen under a lock, and the task locks make each call once.
- **Retry** (`promptdag retry RUN_ID`): Prefect's own retry, as `prefect flow-run retry` does it.
  The flow run is put back to Scheduled; a deployment's worker then runs it again, a local run
  is run again here (`run_flow_async` on the same flow run). Its id, hence its scope, is the
  same, so it reuses its own finished tasks.
- **Undelivered**: a batch whose `--output` could not be written (a full disk) completed, but
  its user has no rows; the CLI tags it `promptdag-undelivered`, and the next run of the same
  work resumes it like an unfinished run, so its rows come back without being paid for again.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from promptdag.errors import ConfigError, SpecError
from promptdag.flows.lost_api import Outcome, run_to_end
from promptdag.flows.orphans import claim, crash_orphans
from promptdag.tasks.result_locks import LOCKS

if TYPE_CHECKING:
    from prefect import Flow
    from prefect.client.orchestration import PrefectClient
    from prefect.client.schemas.objects import FlowRun


SPEC_TAG = "promptdag-spec:"
UNDELIVERED_TAG = "promptdag-undelivered"
START_LOCK_SECONDS = 60  # the lookup and the creation of a flow run take well under a second


def fingerprint(data: Any) -> str:
    """16 hex digits naming the same work (a spec, an objective request) across runs."""
    text = json.dumps(data, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def spec_tag(print_: str) -> str:
    return f"{SPEC_TAG}{print_}"


@dataclass
class Resumed:
    """The run a new run resumes: its id, its scope and its state.

    How much of it will be reused is said after the run (`reused`), from the tasks that were
    in fact reused: the server's record of the old run's finished tasks can lag behind what
    was stored (a killed process's last state reports never arrive), so a count taken before
    the run could say 0 where 20 are reused, or 20 where 60 are."""

    flow_run_id: str
    scope: str
    state_name: str

    def message(self) -> str:
        return (f"resuming run {self.flow_run_id} ({self.state_name.lower()}): the tasks it "
                "finished are reused, not asked again")

    def reused(self, reused: int, total: int) -> str:
        """The line after the run: what was actually reused."""
        return f"resumed run {self.flow_run_id}: {reused}/{total} tasks reused"


def scope_of(flow_run: FlowRun) -> str:
    return str(flow_run.parameters.get("resume_scope") or flow_run.id)


async def _latest(client: PrefectClient, flow_name: str, tag: str, limit: int = 1
                  ) -> list[FlowRun]:
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterDeploymentId,
        FlowRunFilterParentTaskRunId,
        FlowRunFilterTags,
    )
    from prefect.client.schemas.sorting import FlowRunSort

    return await client.read_flow_runs(
        flow_filter=FlowFilter(name=FlowFilterName(any_=[flow_name])),
        flow_run_filter=FlowRunFilter(
            tags=FlowRunFilterTags(all_=[tag]),
            parent_task_run_id=FlowRunFilterParentTaskRunId(is_null_=True),
            deployment_id=FlowRunFilterDeploymentId(is_null_=True),
        ),
        sort=FlowRunSort.EXPECTED_START_TIME_DESC,
        limit=limit,
    )


def serialize_parameters(flow: Flow[Any, Any], parameters: dict[str, Any]) -> dict[str, Any]:
    """The parameters as the flow run stores them (JSON values, pydantic models by alias, as
    Prefect's `serialize_parameters` makes them), in pydantic's compiled serializer: Prefect's
    own walks every node of a spec in Python and imports FastAPI to do it. Prefect's is the
    fallback for a value pydantic cannot serialize."""
    from pydantic_core import PydanticSerializationError, to_jsonable_python

    try:
        return {name: to_jsonable_python(value, by_alias=True)
                for name, value in parameters.items()}
    except PydanticSerializationError:
        return flow.serialize_parameters(parameters)


async def start_run(
    flow: Flow[Any, Any],
    parameters: dict[str, Any],
    print_: str,
    resume: bool,
) -> tuple[FlowRun, Resumed | None]:
    """Create the flow run of a new local run: resuming the latest run of the same work when
    that did not complete and `resume` is on (see module docstring)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.objects import StateType

    tag = spec_tag(print_)
    key, holder = f"promptdag-start-{print_}", str(uuid.uuid4())
    resumed: Resumed | None = None
    async with get_client() as client:
        await LOCKS.aacquire_lock(key, holder, acquire_timeout=START_LOCK_SECONDS,
                                  hold_timeout=START_LOCK_SECONDS)
        try:
            latest = (await _latest(client, flow.name, tag)) if resume else []
            latest = await crash_orphans(client, latest)  # its process died: Crashed, resumed
            if latest and (latest[0].state_type != StateType.COMPLETED
                           or UNDELIVERED_TAG in (latest[0].tags or [])):
                previous = latest[0]
                resumed = Resumed(str(previous.id), scope_of(previous),
                                  previous.state_name or "unfinished")
                parameters = {**parameters, "resume_scope": resumed.scope}
            flow_run = await client.create_flow_run(
                flow, parameters=serialize_parameters(flow, parameters), tags=[tag]
            )
        finally:
            LOCKS.release_lock(key, holder)
        await claim(client, flow_run.id)
    return flow_run, resumed


def mark_undelivered(flow_run_id: str) -> None:
    """Tag a completed run whose results did not reach its user (see module docstring); a
    server that cannot be told is left as it is (the rows are still in the run)."""
    import asyncio

    from prefect.client.orchestration import get_client

    async def mark() -> None:
        async with get_client() as client:
            run = await client.read_flow_run(uuid.UUID(flow_run_id))
            await client.update_flow_run(run.id, tags=[*run.tags, UNDELIVERED_TAG])

    try:
        asyncio.run(mark())
    except Exception:  # the API's problems must not hide the line that says what to do
        pass


@dataclass
class Retried:
    """What `retry` did: rescheduled a deployment run (a worker runs it), or ran it here."""

    flow_run_id: str
    deployment: bool
    previous_state: str
    outcome: Outcome | None = None  # a local run: how it ended


RETRYABLE = {"FAILED", "CRASHED", "CANCELLED", "RUNNING", "PENDING", "SCHEDULED", "CANCELLING"}


async def retry(run_id: str, flows: dict[str, Callable[[], Flow[Any, Any]]],
                on_start: Callable[[str], None] | None = None) -> Retried:
    """Prefect's flow-run retry for `run_id` (see module docstring).

    A run still marked Running may have lost its process (a killed CLI run stays Running on
    the server); it is retried all the same: finished tasks are reused, and a straggler that is
    in fact alive shares the task locks, so no call is made twice.

    Raises:
        SpecError: not a run id, or no such run.
        ConfigError: the run completed (start a new run instead), or its flow is not ours.
    """
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound
    from prefect.states import Scheduled

    try:
        uid = uuid.UUID(str(run_id))
    except ValueError:
        raise SpecError(f"{run_id!r} is not a run id (a UUID, as the run printed)") from None
    async with get_client() as client:
        try:
            flow_run = await client.read_flow_run(uid)
        except ObjectNotFound:
            raise SpecError(f"no flow run {uid} on this Prefect API") from None
        previous = flow_run.state_name or "unknown"
        state_type = flow_run.state_type.value if flow_run.state_type else "SCHEDULED"
        if state_type == "COMPLETED":
            raise ConfigError(f"run {uid} completed: nothing to retry (run the spec again for "
                              "a new run)")
        if state_type not in RETRYABLE:
            raise ConfigError(f"run {uid} is {previous}: it cannot be retried now")
        flow = await client.read_flow(flow_run.flow_id)
        if flow.name not in flows:
            raise ConfigError(f"run {uid} is a run of {flow.name!r}, not a promptdag flow")
        await client.set_flow_run_state(
            uid, Scheduled(message="Retried via promptdag retry"), force=True
        )
        if flow_run.deployment_id is not None:
            return Retried(str(uid), True, previous)
        await claim(client, uid)
        flow_run = await client.read_flow_run(uid)
    if on_start is not None:
        on_start(previous)
    outcome = await run_to_end(flows[flow.name](), flow_run, dict(flow_run.parameters))
    return Retried(str(uid), False, previous, outcome)
