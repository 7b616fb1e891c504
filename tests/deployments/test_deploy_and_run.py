"""prefect.yaml deployed to a real server, a process worker runs what is triggered by name.

What a run leaves behind is checked through the API, as the UI and `promptdag status` see it:
tags, task runs named after workflow tasks, the four artifacts, the persisted result, and the
schedule's runs.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any
from uuid import UUID

import pytest
from prefect.artifacts import Artifact
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    DeploymentFilter,
    DeploymentFilterName,
    FlowRunFilter,
    FlowRunFilterParentTaskRunId,
    FlowRunFilterState,
    FlowRunFilterStateType,
    TaskRunFilter,
    TaskRunFilterFlowRunId,
)
from prefect.client.schemas.objects import StateType
from prefect.deployments import arun_deployment

from promptdag.deployments.serve import load_declarations
from promptdag.engine.objective import ObjectiveResult
from promptdag.engine.results import WorkflowResult
from promptdag.remote import client
from tests.deployments.conftest import Server
from tests.waiting import await_until, recorded_task_runs

pytestmark = pytest.mark.deployments

SPEC = {
    "name": "Deployed Research",
    "config": {"breadth": 2, "retry_backoff_seconds": 0},
    "tasks": [
        {"name": "Gather", "prompt": "Gather facts about tides"},
        {"name": "Explain", "prompt": "Explain {{ Gather }}", "task_type": "parallel"},
        {"name": "Criticise", "prompt": "Criticise the facts", "task_type": "parallel"},
        {"name": "Summarise", "prompt": "Summarise {{ Explain }} and {{ Criticise }}"},
    ],
}


async def artifacts_of(run_id: UUID) -> dict[str, Any]:
    async with get_client() as c:
        found = await c.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run_id]))
        )
    return {a.key: a for a in found if a.key}  # Prefect adds an unkeyed result artifact


async def test_deploy_registers_every_declaration_on_the_process_pool(deployed: Server):
    async with get_client() as c:
        deployments = await c.read_deployments()
    by_name = {d.name: d for d in deployments}
    assert set(by_name) == {d["name"] for d in load_declarations()}
    assert {d.work_pool_name for d in deployments} == {"promptdag-process"}
    assert by_name["objective"].parameter_openapi_schema["properties"]["objective"]["description"]


async def test_runs_start_in_the_checkout_whatever_pwd_said_at_deploy_time(deployed: Server):
    # conftest deploys with a stale PWD; the runs below complete because this holds
    from promptdag.deployments.steps import ROOT

    assert deployed.env["PWD"] != str(ROOT)
    async with get_client() as c:
        deployments = await c.read_deployments()
    for deployment in deployments:
        assert deployment.pull_steps == [{"prefect.deployments.steps.set_working_directory": {
            "directory": str(ROOT)}}], deployment.name


async def test_a_workflow_triggered_by_deployment_name_completes_with_artifacts(deployed: Server):
    started = time.monotonic()
    run_id = await client.asubmit_workflow(SPEC)  # run_deployment("run-workflow/workflow")
    submitted = time.monotonic() - started
    at_submit = await client.aget_status(run_id)
    result = await client.await_result(run_id, timeout=240, poll_seconds=0.25)
    print(f"\nworkflow deployment: submitted in {submitted:.2f} s, "
          f"trigger to Completed {time.monotonic() - started:.1f} s")
    assert not at_submit.finished  # the id comes back at once, not when the run ends
    assert isinstance(result, WorkflowResult) and result.status == "completed"
    assert result.flow_run_id == str(run_id)

    async with get_client() as c:
        flow_run = await c.read_flow_run(run_id)
    task_runs = await recorded_task_runs(run_id, lambda runs: len(runs) >= len(SPEC["tasks"]))
    assert flow_run.name == "Deployed Research" and flow_run.state_type == StateType.COMPLETED
    assert {"promptdag", "workflow:Deployed Research"} <= set(flow_run.tags)
    assert sorted(t.name for t in task_runs) == sorted(t["name"] for t in SPEC["tasks"])

    artifacts = await artifacts_of(run_id)
    # Keys are the deployment's name: the latest report of a deployment is one lookup.
    assert set(artifacts) == {"workflow-report", "workflow-tasks", "workflow-dag",
                              "workflow-progress"}
    report = artifacts["workflow-report"].data
    assert "# Deployed Research: completed" in report and "### Summarise" in report
    assert result.task("Summarise").result in report
    rows = artifacts["workflow-tasks"].data
    assert "Criticise" in rows and "attempts" in rows and "cost_usd" in rows
    assert artifacts["workflow-dag"].data.startswith("```mermaid\ngraph TD")
    progress = artifacts["workflow-progress"]
    assert progress.data == 100.0 and progress.description == "4 of 4 tasks finished"
    assert progress.metadata_ == {"tasks_finished": "4", "tasks_total": "4"}
    latest = await Artifact.aget("workflow-report")
    assert latest is not None and latest.flow_run_id == run_id

    status = await client.aget_status(run_id)
    assert (status.status, status.progress, status.tasks_completed, status.tasks_total) == (
        "completed", 1.0, 4, 4)
    assert status.elapsed_seconds > 0 and status.url and str(run_id) in status.url


async def test_a_spec_over_prefects_parameter_limit_is_submitted_by_reference(
    deployed: Server,
):
    big = {**SPEC, "name": "Big Spec", "description": "x" * 600_000}  # over 512 KB
    run_id = await client.asubmit_workflow(big)
    result = await client.await_result(run_id, timeout=240, poll_seconds=0.25)
    assert isinstance(result, WorkflowResult) and result.status == "completed"
    async with get_client() as c:
        flow_run = await c.read_flow_run(run_id)
    assert isinstance(flow_run.parameters["spec"], str)  # the stored copy's path
    assert result.name == "Big Spec" and len(result.tasks) == len(SPEC["tasks"])


async def test_status_reports_progress_while_the_run_goes(deployed: Server):
    spec = {
        "name": "Slow Steps",
        # 1 s tasks: polls see it midway even when a busy machine makes each poll slow
        "config": {"breadth": 1, "model_options": {"latency_s": 1.0}},
        "tasks": [{"name": f"Step {i}", "prompt": f"step {i}", "task_type": "parallel"}
                  for i in range(8)],
    }
    run_id = await client.asubmit_workflow(spec)
    seen: list[client.RunStatus] = []
    deadline = time.monotonic() + 240  # a wait for the end, not a measure
    while not (seen and seen[-1].finished) and time.monotonic() < deadline:
        seen.append(await client.aget_status(run_id))
        await asyncio.sleep(0.15)
    assert seen[0].status in {"scheduled", "pending"} and seen[0].tasks_total == 8
    assert seen[-1].status == "completed" and seen[-1].tasks_completed == 8
    midway = [s for s in seen if s.status == "running" and 0 < s.tasks_completed < 8]
    assert midway, [(s.status, s.tasks_completed) for s in seen]
    assert all(s.progress == s.tasks_completed / 8 for s in midway)
    counts = [s.tasks_completed for s in seen]
    assert counts == sorted(counts)


async def test_an_objective_deployment_runs_rounds_as_subflows(deployed: Server):
    run_id = await client.asubmit_objective(
        "Assess tidal power for a harbour town", config={"retry_backoff_seconds": 0}
    )
    result = await client.await_result(run_id, timeout=240, poll_seconds=0.25)
    assert isinstance(result, ObjectiveResult) and result.status == "completed"
    assert result.final_answer
    artifacts = await artifacts_of(run_id)
    assert {"objective-report", "objective-tasks", "objective-progress"} <= set(artifacts)
    assert result.final_answer.strip()[:200] in artifacts["objective-report"].data
    progress = artifacts["objective-progress"]
    planned = sum(len(r.plan.tasks) for r in result.rounds)
    assert progress.data == 100.0
    assert progress.metadata_["tasks_total"] == str(planned)
    assert progress.metadata_["max_depth"] == "3"

    async def rounds_as_subflows() -> list[Any]:
        async with get_client() as c:  # task runs: recorded from events, a moment later
            task_runs = await c.read_task_runs(
                task_run_filter=TaskRunFilter(flow_run_id=TaskRunFilterFlowRunId(any_=[run_id]))
            )
            return await c.read_flow_runs(
                flow_run_filter=FlowRunFilter(
                    parent_task_run_id=FlowRunFilterParentTaskRunId(any_=[t.id for t in task_runs])
                )
            )

    rounds = await await_until(rounds_as_subflows, 240, "the rounds' subflows", every=0.5)
    assert len(rounds) == len(result.rounds)
    round_artifacts = await artifacts_of(rounds[0].id)
    assert {"objective-round-report", "objective-round-dag"} <= set(round_artifacts)
    status = await client.aget_status(run_id)
    assert status.status == "completed" and status.tasks_total == planned
    assert status.max_depth == 3 and status.current_depth == len(result.rounds)


async def test_the_daily_schedule_produces_scheduled_runs(deployed: Server):
    async def read() -> list[Any]:
        async with get_client() as c:
            return await c.read_flow_runs(
                deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=[
                    "daily-briefing"])),
                flow_run_filter=FlowRunFilter(state=FlowRunFilterState(
                    type=FlowRunFilterStateType(any_=[StateType.SCHEDULED]))),
            )

    scheduled = await await_until(  # the server's scheduler service runs every few seconds
        read, 240, "the server's scheduler created runs for the cron schedule", every=0.5)
    times = sorted(r.expected_start_time for r in scheduled)
    assert all((t.hour, t.minute) == (7, 0) for t in times)
    assert len({t.date() for t in times}) == len(times)  # one a day
    assert scheduled[0].parameters["objective"].startswith("Write today's briefing")


async def test_a_run_started_with_prefects_own_run_deployment_is_the_same(deployed: Server):
    flow_run = await arun_deployment("run-workflow/workflow", timeout=240, poll_interval=0.5)
    assert flow_run.state_type == StateType.COMPLETED
    result = await client.aget_result(flow_run.id)  # the deployment's default spec
    assert isinstance(result, WorkflowResult) and result.name == "AI Healthcare Research"
