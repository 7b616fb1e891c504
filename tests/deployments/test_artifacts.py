"""Artifacts of runs started in this process (no deployment), read back from the real server."""

from __future__ import annotations

import asyncio
import json
from typing import Any
from uuid import UUID

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

from promptdag.api import arun
from promptdag.flows.artifacts import slug
from tests.deployments.conftest import Server

pytestmark = pytest.mark.deployments


async def artifacts_of(run_id: str | None) -> dict[str, Any]:
    assert run_id
    async with get_client() as c:
        found = await c.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[UUID(run_id)])))
    return {a.key: a for a in found if a.key}


def chain(name: str, n: int, latency: float) -> dict[str, Any]:
    return {"name": name, "config": {"breadth": 1, "model_options": {"latency_s": latency}},
            "tasks": [{"name": f"{name} {i}", "prompt": f"step {i}", "task_type": "parallel"}
                      for i in range(n)]}


async def test_concurrent_runs_in_one_process_keep_their_own_progress(prefect_server: Server):
    small, large = await asyncio.gather(arun(chain("Alpha", 2, 0.05)),
                                        arun(chain("Beta", 6, 0.1)))
    for result, n in ((small, 2), (large, 6)):
        artifacts = await artifacts_of(result.flow_run_id)
        progress = artifacts[f"workflow-{slug(result.name)}-progress"]
        assert progress.metadata_ == {"tasks_finished": str(n), "tasks_total": str(n)}
        assert progress.description == f"{n} of {n} tasks finished"


async def test_a_run_outside_a_deployment_is_keyed_by_its_workflow(prefect_server: Server):
    result = await arun({
        "name": "Keyed Run: Ünïcode & Spaces",
        "config": {"max_retries": 0, "failure_mode": "skip_dependents"},
        "tasks": [{"name": "Fine", "prompt": "ok"},
                  {"name": "Broken", "prompt": "x", "model_options": {"fail_first": 3},
                   "depends_on": []},
                  {"name": "After", "prompt": "{{ Broken }}"}],
    })
    assert result.status == "failed"
    artifacts = await artifacts_of(result.flow_run_id)
    stem = "workflow-keyed-run-n-code-spaces"
    assert set(artifacts) == {f"{stem}-{kind}" for kind in ("report", "tasks", "dag", "progress")}
    report = artifacts[f"{stem}-report"].data
    assert "## Not completed" in report and "**Broken** (failed)" in report
    assert "**After** (skipped)" in report
    rows = {row["task"]: row for row in json.loads(artifacts[f"{stem}-tasks"].data)}
    assert {name: row["status"] for name, row in rows.items()} == {
        "Fine": "completed", "Broken": "failed", "After": "skipped"}
    assert rows["Broken"]["attempts"] == 1 and rows["Fine"]["input_tokens"] > 0


async def test_artifacts_can_be_switched_off(prefect_server: Server,
                                             monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("PROMPTDAG_ARTIFACTS", "false")
    result = await arun({"name": "Quiet Run", "tasks": [{"name": "A", "prompt": "x"}]})
    assert result.status == "completed"
    assert await artifacts_of(result.flow_run_id) == {}
    async with get_client() as c:  # the flow run is still tagged with its workflow
        flow_run = await c.read_flow_run(UUID(result.flow_run_id))
    assert {"promptdag", "workflow:Quiet Run"} <= set(flow_run.tags)
