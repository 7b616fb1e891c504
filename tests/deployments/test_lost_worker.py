"""A killed worker: its run stops sending heartbeats, the crash-detection automation that
`prefect deploy` set up marks it Crashed, `promptdag result` stops waiting at once, and
`promptdag retry` has a new worker finish it, reusing the tasks it had finished.

The run goes to a work pool of its own, so killing its worker leaves the package's worker
alone."""

from __future__ import annotations

import json
import time
from pathlib import Path

import psutil
import pytest

from promptdag.remote import client
from tests.deployments.conftest import PREFECT, ROOT, Server

# a minute and more to be Crashed, then a retry: more than the suite's 300 s on a busy machine
pytestmark = [pytest.mark.deployments, pytest.mark.timeout(900)]

POOL = "promptdag-crash-test"
SPEC = {"name": "Worker Dies", "config": {"breadth": 1, "model_options": {"latency_s": 1.5}},
        "tasks": [{"name": f"step {i}", "prompt": f"step {i}"} for i in range(1, 9)]}


async def test_a_killed_workers_run_is_crashed_then_retried_reusing_its_tasks(
    deployed: Server, tmp_path: Path
):
    from promptdag.deployments.crash_detection import HEARTBEAT_SECONDS
    from promptdag.flows.run_workflow import run_workflow

    created = deployed.run(*PREFECT, "work-pool", "create", POOL, "--type", "process")
    assert created.returncode == 0, created.stderr
    deployment = await run_workflow.to_deployment(
        name="crash-test", tags=["promptdag"], work_pool_name=POOL,
        job_variables={"env": {"PREFECT_FLOWS_HEARTBEAT_FREQUENCY": str(HEARTBEAT_SECONDS)},
                       "working_dir": str(ROOT)},
    )
    deployment.entrypoint = "flows/run_workflow.py:run_workflow"
    await deployment.apply(work_pool_name=POOL)
    worker = deployed.start(*PREFECT, "worker", "start", "--pool", POOL,
                            log=tmp_path / "worker.log")
    run_id = await client.asubmit_workflow(SPEC, deployment="run-workflow/crash-test")
    deadline = time.monotonic() + 240  # a wait for the worker's run, not a measure
    while (status := await client.aget_status(run_id)).tasks_completed < 3:
        assert time.monotonic() < deadline, status
        time.sleep(0.5)
    processes = [psutil.Process(worker.pid), *psutil.Process(worker.pid).children(True)]
    for process in processes:  # the worker and the flow run's process die at once
        process.kill()
    killed = time.monotonic()
    worker.wait(timeout=10)

    # Crashed within 30 s (a heartbeat) + 75 s of the kill when the server's automations keep
    # up; a busy server is later: the deadline is a wait, the figure is printed below
    while (status := await client.aget_status(run_id)).status != "crashed":
        assert status.status == "running", status
        assert time.monotonic() - killed < 240, "not marked Crashed within 240 s"
        time.sleep(2)
    crashed_after = time.monotonic() - killed
    done = status.tasks_completed

    # a crashed run is final: result does not wait for it (it was allowed an hour)
    result = deployed.promptdag("result", str(run_id), "--timeout", "3600", timeout=120)
    assert result.returncode == 1 and "Crashed without a result" in result.stderr  # a failed run

    worker = deployed.start(*PREFECT, "worker", "start", "--pool", POOL,
                            log=tmp_path / "worker2.log")
    try:
        retried = deployed.promptdag("retry", str(run_id), "--wait", "--json", timeout=240)
    finally:
        for process in [psutil.Process(worker.pid), *psutil.Process(worker.pid).children(True)]:
            process.kill()
    assert retried.returncode == 0, retried.stderr
    body = json.loads(retried.stdout)
    assert body["flow_run_id"] == str(run_id) and body["status"] == "completed"
    assert body["summary"]["reused_count"] >= done >= 3
    print(f"crashed {crashed_after:.0f} s after the kill; {done} tasks reused by the retry")
