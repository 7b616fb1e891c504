"""Batches that stop when told, keep their rows when the output disk is full, and stream:
each through the CLI in its own process against the session's Prefect API."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from promptdag.api import arun

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


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_full_output_disk_is_exit_2_and_every_row_is_recovered_unpaid(prefect_api: str,
                                                                         tmp_path: Path):
    spec, data = batch(tmp_path, "full disk", rows=4, latency=0)
    env = env_for(prefect_api, tmp_path)
    full = cli(env, "run", str(spec), "--data", str(data), "--output", "/dev/full")
    assert full.returncode == 2, full.stderr
    last = full.stderr.strip().splitlines()[-1]
    found = re.search(r"`promptdag result (\S+) --output /dev/full` recovers every row", last)
    assert found and last.startswith("promptdag: cannot write rows to /dev/full (No space")
    recovered = tmp_path / "recovered.jsonl"
    got = cli(env, "result", found.group(1), "--output", str(recovered))
    assert got.returncode == 0, got.stderr
    assert sorted(json.loads(line)["id"] for line in recovered.read_text().splitlines()) == [
        f"q{i}" for i in range(4)]
    # not a clean Completed run: running the batch again reuses it, calling no model
    again = cli(env, "run", str(spec), "--data", str(data), "--output",
                str(tmp_path / "again.jsonl"), "--json")
    assert again.returncode == 0, again.stderr
    assert f"resuming run {found.group(1)}" in again.stderr
    result = json.loads(again.stdout)
    assert result["summary"]["reused_count"] == 4 and result["usage"]["output_tokens"] == 0
    assert len((tmp_path / "again.jsonl").read_text().splitlines()) == 4


async def test_a_large_batch_keeps_its_rows_in_the_row_log(monkeypatch: pytest.MonkeyPatch,
                                                          tmp_path: Path):
    import importlib

    flow = importlib.import_module("promptdag.flows.run_workflow")  # the module, not its flow
    monkeypatch.setattr(flow, "INLINE_ROWS", 2)  # "large": more rows than the result holds
    spec, data = batch(tmp_path, "large", rows=5, latency=0)
    kept = await arun(str(spec), data=data, load_rows=False)
    assert kept.rows is None and kept.rows_file is not None and kept.tasks == []
    assert kept.summary.total_tasks == 5 and kept.status == "completed"
    logged = [json.loads(line) for line in Path(kept.rows_file).read_text().splitlines()]
    assert sorted(row["id"] for row in logged) == [f"q{i}" for i in range(5)]
    loaded = await arun(str(spec), data=data, limit=3)
    assert [row.id for row in loaded.rows or []] == ["q0", "q1", "q2"]


def test_a_bad_row_past_the_first_rows_fails_alone(prefect_api: str, tmp_path: Path):
    """A data file is streamed: a row past the rows checked before the run that does not fit
    the workflow fails as that row while the others run (a whole-file check up front would
    have read every row before the first one started)."""
    spec, data = batch(tmp_path, "streamed", rows=40, latency=0)
    with data.open("a") as rows:
        rows.write(json.dumps({"id": "late", "other": "no question"}) + "\n")
    output = tmp_path / "rows.jsonl"
    done = cli(env_for(prefect_api, tmp_path), "run", str(spec), "--data", str(data),
               "--output", str(output))
    assert done.returncode == 1, done.stderr
    lines = [json.loads(line) for line in output.read_text().splitlines()]
    late = [line for line in lines if line["id"] == "late"]
    assert len(lines) == 41 and len(late) == 1 and late[0]["status"] == "failed"
    assert "field 'question' is missing" in late[0]["error"]
    assert "rows: 40 completed, 1 failed of 41" in done.stdout
