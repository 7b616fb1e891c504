"""A batch: the workflow once per row, all rows in one run, one ready set, one breadth."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

from promptdag.api import arun
from promptdag.flows.run_workflow import batch_window
from promptdag.llm.base import Completion, CompletionRequest, Usage
from promptdag.llm.registry import register_provider
from promptdag.spec.models import WorkflowSpec
from tests.flows.test_cli_run import EXAMPLES, promptdag


def pipeline(**config) -> dict:
    return {
        "name": "pipeline",
        "config": {"breadth": 4, "retry_backoff_seconds": 0, **config},
        "tasks": [
            {"name": "Read", "prompt": "Read {{ doc }}", "model": "probe:x"},
            {"name": "Summarise", "prompt": "Summarise {{ Read }}", "model": "probe:x"},
            {"name": "Title", "prompt": "Title for {{ Summarise }} ({{ doc }})",
             "model": "probe:x"},
        ],
    }


ROWS = [{"id": f"d{i}", "doc": f"document {i}"} for i in range(6)]


async def test_every_row_runs_in_one_run_with_no_barrier_between_rows(probe):
    spec = pipeline(model_options={"latency_s": 0.05})
    result = await arun(spec, data=ROWS)
    assert result.status == "completed" and len(result.tasks) == 18
    assert [(r.id, r.status) for r in result.rows or []] == [(f"d{i}", "completed")
                                                             for i in range(6)]
    assert set(result.rows[0].results) == {"Title"}
    assert "document 3" in (result.task("[d3] Read").prompt or "")
    # later rows' first tasks start before an earlier row's last one ends: no barrier
    assert probe.call("[d3] Read").start < probe.call("[d0] Title").end
    assert probe.max_overlap() <= 4  # one breadth for the whole batch


async def test_a_failed_row_never_stops_the_others(probe):
    spec = pipeline()
    spec["config"]["model_options"] = {"fail_tasks": ["[d2] Summarise"]}
    result = await arun(spec, data=ROWS)
    status = {r.id: r.status for r in result.rows or []}
    assert status.pop("d2") == "failed" and set(status.values()) == {"completed"}
    assert result.task("[d2] Title").status == "skipped"
    assert "[d2] Summarise" in (result.rows[2].error or "")


class ContextProbe:
    """`context:<anything>`: answers at once, noting how many task runs the flow run's Prefect
    context still holds (its `task_run_assets` and `run_results`, which Prefect never prunes)."""

    held: ClassVar[list[int]] = []

    def __init__(self, name: str, options: dict[str, Any]) -> None:
        self.name = f"context:{name}"

    async def complete(self, request: CompletionRequest) -> Completion:
        from prefect.context import FlowRunContext

        context = FlowRunContext.get()
        assert context is not None
        runs = set(context.task_run_assets) | {
            state.state_details.task_run_id for state, _, _ in context.run_results.values()}
        ContextProbe.held.append(len(runs))
        return Completion(text=f"answer {len(runs)}", model=self.name,
                          usage=Usage(input_tokens=1, output_tokens=1))


register_provider("context", ContextProbe)


async def test_a_closed_rows_task_runs_are_let_go():
    """What Prefect keeps of a batch's task runs depends on its window, not on its rows: a
    closed row's are dropped (so a batch's memory does not grow with the rows done)."""
    spec = {"name": "long batch", "config": {"breadth": 2, "model": "context:x"},
            "tasks": [{"name": "Read", "prompt": "Read {{ doc }}"}]}
    ContextProbe.held.clear()
    result = await arun(spec, data=[{"doc": f"document {i}"} for i in range(120)])
    assert result.status == "completed" and len(ContextProbe.held) == 120
    window = batch_window(WorkflowSpec.model_validate(spec))  # 16 rows
    # the open rows' task runs, and at most a window's worth of closed rows' not yet dropped
    assert max(ContextProbe.held) <= 2 * window < 120


def test_the_cli_writes_one_json_line_per_row(prefect_api: str, tmp_path: Path):
    output = tmp_path / "rows.jsonl"
    done = promptdag(prefect_api, tmp_path, "run", str(EXAMPLES / "support_triage.yaml"),
                     "--data", str(EXAMPLES / "data" / "tickets.jsonl"), "--limit", "5",
                     "--output", str(output))
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in output.read_text().splitlines()]
    assert sorted(line["id"] for line in lines) == [f"T-{100 + i}" for i in range(5)]
    assert all(line["status"] == "completed" and line["results"]["Check tone"]
               for line in lines)
    assert "[5/5 rows] ok" in done.stderr
    assert "rows: 5 completed, 0 failed of 5" in done.stdout


def test_a_killed_batch_resumes_calling_no_finished_task_again(prefect_api: str,
                                                                tmp_path: Path):
    import os
    import signal
    import subprocess
    import sys
    import time

    spec = tmp_path / "rows.json"
    spec.write_text(json.dumps({
        "name": "killed batch", "config": {"breadth": 2, "model_options": {"latency_s": 0.4}},
        "tasks": [{"name": "Read", "prompt": "Read {{ doc }}"},
                  {"name": "Title", "prompt": "Title {{ Read }}"}]}))
    data = tmp_path / "rows.jsonl"
    data.write_text("".join(json.dumps({"doc": f"document {i}"}) + "\n" for i in range(6)))
    env = {**os.environ, "PREFECT_API_URL": prefect_api,
           "PREFECT_LOCAL_STORAGE_PATH": str(tmp_path / "storage"),
           "PREFECT_HOME": str(tmp_path / "home")}
    cli = [sys.executable, "-m", "promptdag.cli", "run", str(spec), "--data", str(data)]
    proc = subprocess.Popen(cli, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                            env=env, start_new_session=True)
    assert proc.stderr is not None
    deadline, finished = time.monotonic() + 120, []
    while len(finished) < 3 and time.monotonic() < deadline:  # half-way: 3 of 6 rows written
        line = proc.stderr.readline()
        if " rows] ok " in line:
            finished.append(line.split(" rows] ok ")[1].strip())
        if not line:
            break
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert len(finished) == 3

    done = subprocess.run([*cli, "--json"], capture_output=True, text=True, env=env, timeout=180)
    assert done.returncode == 0, done.stderr
    assert "resuming run " in done.stderr
    result = json.loads(done.stdout)
    # the finished rows are passed on from the row log: none of their tasks runs again
    called = {t["name"].split("]")[0][1:] for t in result["tasks"] if t["attempts"]}
    assert called and not called & set(finished)
    assert result["summary"]["reused_count"] >= 6 and result["summary"]["total_tasks"] == 12
    assert len(result["rows"]) == 6 and {r["status"] for r in result["rows"]} == {"completed"}
