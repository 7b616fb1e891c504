"""`promptdag runs | logs | cancel | watch`, and the hint when nothing polls a pool, against the
real server (and its worker) of this directory's conftest, each command in its own process."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from uuid import UUID

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate

from promptdag.remote.local_server import WORK_POOL
from tests.deployments.conftest import ROOT, Server, pool_ready
from tests.waiting import recorded_task_runs, wait_until

pytestmark = pytest.mark.deployments

SEED = str(ROOT / "examples" / "seed_api_request.json")
SLOW = """name: Slow Steps
config: {breadth: 1, retry_backoff_seconds: 0, model_options: {latency_s: LATENCY}}
tasks:
  - {name: Step 1, prompt: a, model_options: {fail_first: 1, latency_s: LATENCY}}
  - {name: Step 2, prompt: b}
  - {name: Step 3, prompt: c}
  - {name: Step 4, prompt: d}
"""


# Runs the tests cancel: long enough that a busy machine's slow CLI commands (each a Python
# start) still find them running; they end when cancelled, so the length costs nothing
CANCELLED_LATENCY = 30


def slow_spec(tmp_path: Path, latency: float) -> str:
    spec = tmp_path / "slow.yaml"
    spec.write_text(SLOW.replace("LATENCY", str(latency)))
    return str(spec)


def listed(server: Server, *args: str) -> list[dict[str, object]]:
    done = server.promptdag("runs", "--json", *args)
    assert done.returncode == 0, done.stderr
    return list(json.loads(done.stdout))


def test_runs_lists_recent_runs_with_tasks_tokens_and_cost(deployed: Server):
    logging = Server(deployed.info, {**deployed.env, "PREFECT_LOGGING_LEVEL": "INFO"})
    done = logging.promptdag("run", SEED, "--json")  # the fixture's level is WARNING
    assert done.returncode == 0, done.stderr
    run_id = json.loads(done.stdout)["flow_run_id"]
    mine = next(r for r in listed(deployed, "--limit", "50") if r["run_id"] == run_id)
    assert (mine["workflow"], mine["kind"], mine["state"]) == (
        "AI Healthcare Research", "workflow", "Completed")
    assert (mine["tasks_done"], mine["tasks_total"]) == (4, 4)
    assert mine["input_tokens"] and mine["output_tokens"] and mine["cost_usd"] == 0.0
    assert str(mine["url"]).startswith(deployed.info.url)

    table = deployed.promptdag("runs", "--name", "AI Healthcare")
    assert table.returncode == 0, table.stderr
    header, *rows = table.stdout.splitlines()
    assert header.split() == ["workflow", "state", "tasks", "started", "time", "tokens",
                              "cost", "id"]
    row = next(line for line in rows if run_id in line)
    assert row.startswith("AI Healthcare Research") and "Completed" in row and " 4/4 " in row

    # a log line names its task from the server's record of task runs, made from events
    asyncio.run(recorded_task_runs(run_id, lambda runs: len(runs) >= 4))
    logs = deployed.promptdag("logs", run_id)
    assert logs.returncode == 0, logs.stderr
    assert "Finished in state Completed" in logs.stdout
    for task in ("Initial Research", "Synthesize"):  # each task run's lines say whose they are
        assert f"[{task}] Finished in state Completed" in logs.stdout, logs.stdout
    assert "[AI Healthcare Research] " in logs.stdout  # the run's own lines
    assert len(deployed.promptdag("logs", run_id, "--tail", "2").stdout.splitlines()) == 2


def test_runs_leaves_scheduled_runs_out_unless_asked(deployed: Server):
    later = deployed.run(sys.executable, "-m", "prefect", "deployment", "run",
                         "run-workflow/workflow", "--start-in", "2 hours")
    assert later.returncode == 0, later.stdout + later.stderr
    scheduled = listed(deployed, "--scheduled", "--limit", "100")
    ids = {str(r["run_id"]) for r in scheduled}
    try:
        assert scheduled and {r["state"] for r in scheduled} <= {"Scheduled", "Late"}
        started = listed(deployed, "--limit", "100")
        assert not ids & {r["run_id"] for r in started}
        assert all(r["started_at"] for r in started)
        states = [r["state"] for r in started]  # still going first, then finished
        going = [s not in ("Completed", "Failed", "Crashed", "Cancelled") for s in states]
        assert going == sorted(going, reverse=True)
    finally:
        async def delete() -> None:
            async with get_client() as client:
                for run in ids:
                    await client.delete_flow_run(UUID(run))

        asyncio.run(delete())


def test_watch_follows_a_submitted_run_to_its_end(deployed: Server, tmp_path: Path):
    wait_until(lambda: pool_ready(deployed, WORK_POOL), 180, "the worker has said hello")
    submitted = deployed.promptdag("submit", slow_spec(tmp_path, 0.5))
    assert submitted.returncode == 0, submitted.stderr
    run_id = submitted.stdout.strip()
    assert f"promptdag watch {run_id}" in submitted.stderr
    assert "no worker is polling" not in submitted.stderr  # the fixture's worker polls

    watched = deployed.promptdag("watch", run_id, timeout=180)
    assert watched.returncode == 0, watched.stderr
    assert "retry Step 1 (attempt 2)" in watched.stderr  # a retry, seen through the API
    for n in range(1, 5):
        assert f"/4] ok Step {n} (" in watched.stderr
    assert "Slow Steps: COMPLETED" in watched.stdout
    url = f"{deployed.info.url}/runs/flow-run/{run_id}"
    assert watched.stdout.strip().splitlines()[-1] == f"view: {url}"


def test_cancel_stops_a_local_run_in_another_process(deployed: Server, tmp_path: Path):
    running = subprocess.Popen(
        [sys.executable, "-m", "promptdag.cli", "run", slow_spec(tmp_path, CANCELLED_LATENCY)],
        cwd=ROOT, env=deployed.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        def started() -> str | None:
            runs = [r for r in listed(deployed, "--name", "Slow Steps")
                    if r["state"] == "Running"]
            return str(runs[0]["run_id"]) if runs else None

        run_id = wait_until(started, 180, "the run is Running", every=1)
        cancelled = deployed.promptdag("cancel", run_id, "--timeout", "180")
        assert cancelled.returncode == 0, cancelled.stderr
        assert cancelled.stdout.strip() == f"run {run_id} cancelled"
        _, err = running.communicate(timeout=120)
    finally:
        running.kill()
    assert running.returncode == 1, err
    assert "the run was cancelled" in err and "Traceback" not in err
    assert next(r for r in listed(deployed) if r["run_id"] == run_id)["state"] == "Cancelled"
    again = deployed.promptdag("cancel", run_id)
    assert again.returncode == 2 and "already finished (Cancelled)" in again.stderr


def test_a_run_nobody_polls_for_says_what_to_start_and_cancels_at_once(deployed: Server):
    async def deployment_without_worker() -> None:
        async with get_client() as client:
            await client.create_work_pool(WorkPoolCreate(name="nobody-polls", type="process"),
                                          overwrite=True)
            flow = await client.read_flow_by_name("run-workflow")
            await client.create_deployment(
                flow_id=flow.id, name="unpolled", work_pool_name="nobody-polls",
                entrypoint="flows/run_workflow.py:run_workflow")

    asyncio.run(deployment_without_worker())
    submitted = deployed.promptdag("submit", SEED, "--deployment", "run-workflow/unpolled")
    assert submitted.returncode == 0, submitted.stderr
    run_id = submitted.stdout.strip()
    hint = "no worker is polling the work pool 'nobody-polls'"
    assert hint in submitted.stderr and "prefect worker start --pool nobody-polls" in (
        submitted.stderr)
    status = deployed.promptdag("status", run_id)
    assert status.returncode == 0 and "scheduled" in status.stdout and hint in status.stderr
    early = deployed.promptdag("result", run_id, "--no-wait")  # its hint names real commands
    assert early.returncode == 2 and f"`promptdag watch {run_id}`" in early.stderr
    assert "--wait)" not in early.stderr
    cancelled = deployed.promptdag("cancel", run_id)
    assert cancelled.returncode == 0, cancelled.stderr
    assert cancelled.stdout.strip() == f"run {run_id} cancelled"


def test_cancel_stops_a_submitted_run_through_its_worker(deployed: Server, tmp_path: Path):
    submitted = deployed.promptdag("submit", slow_spec(tmp_path, CANCELLED_LATENCY))
    assert submitted.returncode == 0, submitted.stderr
    run_id = submitted.stdout.strip()
    wait_until(lambda: next(r for r in listed(deployed) if r["run_id"] == run_id)["state"]
               == "Running", 240, "the worker's run is Running", every=1)
    cancelled = deployed.promptdag("cancel", run_id, "--timeout", "180")
    assert cancelled.returncode == 0, cancelled.stderr
    assert cancelled.stdout.strip() == f"run {run_id} cancelled"
    watched = deployed.promptdag("watch", run_id, "--quiet")
    assert watched.returncode == 1 and "Slow Steps: CANCELLED" in watched.stdout
