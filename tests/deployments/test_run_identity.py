"""Run identity on a real server and worker: every deployment run calls the models afresh; a
deployment run that did not complete is retried by the worker, reusing its own finished tasks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.deployments.conftest import Server

pytestmark = pytest.mark.deployments


def test_two_runs_of_one_deployment_both_call_the_model(deployed: Server, tmp_path: Path):
    spec = tmp_path / "daily.yaml"
    spec.write_text("name: Same Every Day\ntasks:\n  - {name: Headlines, prompt: today}\n"
                    "  - {name: Summary, prompt: 'Summarise {{ Headlines }}'}\n")
    runs = []
    for _ in range(2):
        done = deployed.promptdag("submit", str(spec), "--wait", "--json", timeout=240)
        assert done.returncode == 0, done.stderr
        runs.append(json.loads(done.stdout))
    assert runs[0]["flow_run_id"] != runs[1]["flow_run_id"]
    for run in runs:
        assert [(t["reused"], t["attempts"]) for t in run["tasks"]] == [(False, 1), (False, 1)]


def test_promptdag_retry_reschedules_a_deployment_run_that_reuses_its_finished_tasks(
    deployed: Server, tmp_path: Path
):
    # The 15 s workflow timeout stops the run during the third task (4 + 4 + 8 s): it fails;
    # its retry reuses the first two and has time for the third. Each side has 7 s to spare
    # for a busy machine's overhead.
    spec = tmp_path / "bounded.yaml"
    spec.write_text(
        "name: Bounded Remote\nconfig: {breadth: 1, workflow_timeout_seconds: 15, "
        "model_options: {latency_s: 4}}\ntasks:\n"
        "  - {name: step 1, prompt: step 1}\n  - {name: step 2, prompt: step 2}\n"
        "  - {name: step 3, prompt: step 3, model_options: {latency_s: 8}}\n"
    )
    first = deployed.promptdag("submit", str(spec), "--wait", "--json", timeout=240)
    assert first.returncode == 1, first.stderr
    failed = json.loads(first.stdout)
    assert [t["status"] for t in failed["tasks"]] == ["completed", "completed", "cancelled"]

    retried = deployed.promptdag("retry", failed["flow_run_id"], "--wait", "--json",
                                 timeout=240)
    assert retried.returncode == 0, retried.stderr
    result = json.loads(retried.stdout)
    assert result["flow_run_id"] == failed["flow_run_id"]
    assert [t["reused"] for t in result["tasks"]] == [True, True, False]
