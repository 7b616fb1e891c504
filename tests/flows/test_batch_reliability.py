"""Batches that stop when told, as a plain run does: through the CLI in its own process
against the session's Prefect API."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def env_for(api: str, tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "PREFECT_API_URL": api,
            "PREFECT_LOCAL_STORAGE_PATH": str(tmp_path / "storage"),
            "PREFECT_HOME": str(tmp_path / "home")}


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "promptdag.cli", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=240)


def batch(tmp_path: Path, name: str, rows: int, latency: float) -> tuple[Path, Path]:
    spec = tmp_path / f"{name}.json"
    spec.write_text(json.dumps({
        "name": name, "config": {"breadth": 2, "model_options": {"latency_s": latency}},
        "tasks": [{"name": "Answer", "prompt": "Answer {{ question }}"}]}))
    data = tmp_path / f"{name}.jsonl"
    data.write_text("".join(json.dumps({"id": f"q{i}", "question": f"question {i}"}) + "\n"
                            for i in range(rows)))
    return spec, data


async def flow_run_named(name: str):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName

    async with get_client() as client:
        runs = await client.read_flow_runs(
            flow_run_filter=FlowRunFilter(name=FlowRunFilterName(like_=name)))
        return runs[0] if runs else None


async def task_runs_and_end(run_id: object):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    async with get_client() as client:
        run = await client.read_flow_run(run_id)
        tasks = await client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id])), limit=200)
    return run, tasks


def test_cancel_stops_a_running_batch_keeping_its_finished_rows(prefect_api: str,
                                                                 tmp_path: Path):
    spec, data = batch(tmp_path, "cancel me", rows=200, latency=0.3)
    output = tmp_path / "rows.jsonl"
    env = env_for(prefect_api, tmp_path)
    proc = subprocess.Popen([sys.executable, "-m", "promptdag.cli", "run", str(spec), "--data",
                             str(data), "--output", str(output)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        seen = 0
        while seen < 5:  # a few rows in: the batch is running
            line = proc.stderr.readline()
            assert line, "the batch ended before it was cancelled"
            seen += " rows] ok " in line
        run = asyncio.run(flow_run_named("cancel me%"))
        assert run is not None
        cancelled = cli(env, "cancel", str(run.id))
        assert cancelled.returncode == 0, cancelled.stderr
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 1, err
    assert "the run was cancelled" in err and "Traceback" not in err + out
    run, tasks = asyncio.run(task_runs_and_end(run.id))
    assert run.state_name == "Cancelled"
    lines = [json.loads(line) for line in output.read_text().splitlines()]
    done = [line for line in lines if line["status"] == "completed"]
    assert 5 <= len(done) < 200 and all(line["results"]["Answer"] for line in done)
    # nothing started once the run was stopped: the rows written, and at most the 2 (breadth)
    # that were running when the cancel was seen
    assert len(tasks) <= len(done) + 2
    ended = run.state.timestamp
    assert all(t.start_time is None or t.start_time <= ended for t in tasks)
