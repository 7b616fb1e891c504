"""Plan review on a real server: an objective deployed with `review: true` suspends after
planning (its worker is free), publishes its plan, and runs, or not, as the answer says; the
answer comes through Prefect's API (`resume_flow_run` with a run input, as the UI's Resume form
sends it) or from `promptdag approve` / `promptdag reject`."""

from __future__ import annotations

import json
import time
from pathlib import Path
from uuid import UUID

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    ArtifactFilterKey,
)
from prefect.client.schemas.objects import FlowRun
from prefect.flow_runs import aresume_flow_run

from promptdag.engine.objective import ObjectiveResult, PlannedTask
from promptdag.remote import client
from tests.deployments.conftest import Server
from tests.waiting import await_until, recorded_task_runs

pytestmark = pytest.mark.deployments

CONFIG = {"review": True, "breadth": 2, "retry_backoff_seconds": 0}
EDITED = [{"name": "Survey tides", "prompt": "Survey tide tables", "depends_on": []},
          {"name": "Tide summary", "prompt": "Summarise the survey",
           "depends_on": ["Survey tides"]}]


async def suspended(run_id: UUID, timeout: float = 180, after: int = 0) -> FlowRun:
    """The run once it is Suspended with a review waiting (`after`: pauses already seen)."""
    deadline = time.monotonic() + timeout
    async with get_client() as c:
        while True:
            run = await c.read_flow_run(run_id)
            keys = run.empirical_policy.pause_keys or set()
            if (run.state and run.state.name == "Suspended" and len(keys) > after
                    and run.state.state_details.run_input_keyset):
                return run
            assert not (run.state and run.state.is_final()), run.state
            assert time.monotonic() < deadline, f"not suspended after {timeout} s: {run.state}"
            time.sleep(0.5)


async def result_of(run_id: UUID | str) -> ObjectiveResult:
    result = await client.await_result(run_id, timeout=240)
    assert isinstance(result, ObjectiveResult)
    return result


async def plan_artifact(run_id: UUID) -> str:
    """The latest version of the run's plan artifact."""
    async with get_client() as c:
        found = await c.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[run_id]),
            key=ArtifactFilterKey(any_=["objective-plan"])))
    assert found, "no plan artifact"
    return str(max(found, key=lambda a: a.created or 0).data)


async def plan_tasks(run_id: UUID) -> list[PlannedTask]:
    """The proposed plan, as the artifact's table lists it."""
    rows = [line for line in (await plan_artifact(run_id)).splitlines()
            if line.startswith("| ") and not line.startswith(("| task ", "| ---"))]
    return [PlannedTask(name=row.split(" | ")[0].removeprefix("| "), prompt="-")
            for row in rows]


async def task_run_names(run_id: UUID) -> set[str]:
    """The run's task runs, once the server has recorded its plan's (it records them from
    events, a moment after the run, or a minute when SQLite is busy)."""
    runs = await recorded_task_runs(run_id, lambda runs: "plan (round 1)" in {
        r.name for r in runs})
    return {r.name for r in runs}


async def test_a_review_suspends_with_its_plan_and_an_edit_through_the_api_runs(
    deployed: Server,
) -> None:
    run_id = await client.asubmit_objective("Explain the tides", config=CONFIG)
    run = await suspended(run_id)
    assert run.state is not None and run.state.state_details.pause_reschedule  # worker freed
    plan = await plan_artifact(run_id)
    assert "```mermaid" in plan and "estimated time:" in plan and "waiting for review" in plan
    # The Resume form the UI draws: the plan above it, four fields, the plan prefilled
    keyset = run.state.state_details.run_input_keyset
    assert keyset is not None
    async with get_client() as c:
        schema = json.loads(await c.read_flow_run_input(run_id, keyset["schema"]))
        description = json.loads(await c.read_flow_run_input(run_id, keyset["description"]))
    fields = schema["properties"]
    assert list(fields) == ["decision", "tasks", "approve_all", "reason"]
    assert fields["decision"]["enum"] == ["approve", "edit", "reject"]
    assert fields["decision"]["default"] == "approve"
    assert [t["name"] for t in json.loads(fields["tasks"]["default"])] == [
        t.name for t in (await plan_tasks(run_id))]
    assert fields["approve_all"]["type"] == "boolean"
    assert description.startswith("# Plan for round 1: waiting for review")
    await aresume_flow_run(run_id, run_input={"decision": "edit", "tasks": json.dumps(EDITED)})
    result = await result_of(run_id)
    assert (result.status, result.stop_reason) == ("completed", "complete")
    assert [t.name for t in result.rounds[0].plan.tasks] == ["Survey tides", "Tide summary"]
    assert [t.name for t in result.rounds[0].result.tasks] == [  # type: ignore[union-attr]
        "Survey tides", "Tide summary"]
    assert result.rounds[0].edited and result.rounds[0].estimate is not None


async def test_rejecting_through_the_api_ends_the_run_with_no_task_run(deployed: Server) -> None:
    run_id = await client.asubmit_objective("Explain the moon", config=CONFIG)
    await suspended(run_id)
    await aresume_flow_run(run_id, run_input={"decision": "reject", "reason": "off topic"})
    result = await result_of(run_id)
    assert (result.status, result.stop_reason, result.rounds) == ("failed", "rejected", [])
    assert result.error == "the plan of round 1 was rejected at review: off topic"
    assert await task_run_names(run_id) == {"plan (round 1)"}  # no prompt task, no subflow


async def test_the_cli_approves_an_edited_plan_after_refusing_an_invalid_one(
    deployed: Server, tmp_path: Path,
) -> None:
    submitted = deployed.promptdag("submit", "--objective", "Explain the sea", "--review",
                                   "--breadth", "2")
    assert submitted.returncode == 0, submitted.stderr
    run_id = UUID(submitted.stdout.strip())
    await suspended(run_id)
    status = deployed.promptdag("status", str(run_id))
    assert "suspended: " in status.stdout and f"promptdag approve {run_id}" in status.stdout
    bad, good = tmp_path / "bad.yaml", tmp_path / "good.json"
    bad.write_text("tasks:\n  - {name: Alone, prompt: x, depends_on: [Missing]}\n")
    good.write_text(json.dumps({"tasks": EDITED}))
    answered = deployed.promptdag("approve", str(run_id), "--plan", str(bad))
    assert answered.returncode == 0, answered.stderr  # the graph is the run's to check
    await suspended(run_id, after=1)  # refused: waiting again, the error published
    plan = await plan_artifact(run_id)
    assert "task 'Alone' depends on 'Missing', which does not exist" in plan
    answered = deployed.promptdag("approve", str(run_id), "--plan", str(good), "--all")
    assert answered.returncode == 0, answered.stderr
    assert "approved your plan" in answered.stderr
    result = await result_of(run_id)
    assert result.status == "completed"
    assert [t.name for t in result.rounds[0].plan.tasks] == ["Survey tides", "Tide summary"]
    again = deployed.promptdag("approve", str(run_id))  # nothing is waiting any more
    assert again.returncode == 2 and "is not waiting for a review" in again.stderr


async def test_the_cli_rejects(deployed: Server) -> None:
    run_id = await client.asubmit_objective("Explain the wind", config=CONFIG)
    await suspended(run_id)
    answered = deployed.promptdag("reject", str(run_id), "--reason", "not now")
    assert answered.returncode == 0, answered.stderr
    result = await result_of(run_id)
    assert (result.stop_reason, result.error) == (
        "rejected", "the plan of round 1 was rejected at review: not now")
    assert await task_run_names(run_id) == {"plan (round 1)"}


async def test_a_suspended_review_nobody_answers_ends_failed_and_refuses_late_answers(
    deployed: Server,
) -> None:
    run_id = await client.asubmit_objective(
        "Explain the rain", config={**CONFIG, "review_timeout_seconds": 2})
    await suspended(run_id)

    async def ended() -> FlowRun | None:  # Prefect's server looks for expired pauses every 5 s
        async with get_client() as c:
            run = await c.read_flow_run(run_id)
        return run if run.state and run.state.is_final() else None

    run = await await_until(ended, 240, "the expired review ended the run", every=0.5)
    assert run.state is not None and run.state.is_failed()
    assert run.state.message == "The flow was paused and never resumed."
    late = deployed.promptdag("approve", str(run_id))
    assert late.returncode == 2 and "is not waiting for a review (it is Failed)" in late.stderr
    assert await task_run_names(run_id) == {"plan (round 1)"}
