"""`promptdag submit | status | result` against the deployed server, from other processes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from promptdag.remote.local_server import free_port
from tests.deployments.conftest import ROOT, Server

pytestmark = pytest.mark.deployments

SEED = str(ROOT / "examples" / "seed_api_request.json")
UNKNOWN_RUN = "6a1f1d2e-7b5a-4a39-9e3a-2a7f9e0c1d11"


def one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


def test_submit_prints_the_run_id_and_result_fetches_it_from_another_process(deployed: Server):
    submitted = deployed.promptdag("submit", SEED, "--breadth", "2")
    assert submitted.returncode == 0, submitted.stderr
    run_id = submitted.stdout.strip()
    assert len(run_id) == 36 and "promptdag status" in submitted.stderr

    result = deployed.promptdag("result", run_id, "--json", "--timeout", "200")
    assert result.returncode == 0, result.stderr
    body = json.loads(result.stdout)
    assert body["status"] == "completed" and body["flow_run_id"] == run_id
    assert body["summary"]["total_tasks"] == 4

    status = deployed.promptdag("status", run_id, "--json")
    assert status.returncode == 0, status.stderr
    assert {k: v for k, v in json.loads(status.stdout).items() if k in
            {"status", "progress", "tasks_completed", "tasks_total"}} == {
        "status": "completed", "progress": 1.0, "tasks_completed": 4, "tasks_total": 4}
    line = deployed.promptdag("status", run_id).stdout.splitlines()[0]
    assert line.startswith("AI Healthcare Research: completed: 4/4 tasks finished (100%)")


def test_a_local_cli_run_shows_up_on_the_server(deployed: Server):
    done = deployed.promptdag("run", SEED, "--json")  # no deployment: runs in this process
    assert done.returncode == 0, done.stderr
    run_id = json.loads(done.stdout)["flow_run_id"]
    status = json.loads(deployed.promptdag("status", run_id, "--json").stdout)
    assert (status["name"], status["status"]) == ("AI Healthcare Research", "completed")
    assert status["url"].startswith(deployed.info.url)


def test_a_failed_workflow_exits_1_and_says_what_failed(deployed: Server, tmp_path: Path):
    spec = tmp_path / "failing.yaml"
    spec.write_text("name: Failing Remote\nconfig: {max_retries: 0}\ntasks:\n"
                    "  - {name: Broken, prompt: x, model_options: {fail_first: 5}}\n")
    done = deployed.promptdag("submit", str(spec), "--wait")
    assert done.returncode == 1, done.stderr
    assert "Failing Remote: FAILED" in done.stdout and "Broken" in done.stdout
    run_id = done.stdout.split("flow run: ")[1].split()[0]
    status = json.loads(deployed.promptdag("status", run_id, "--json").stdout)
    assert (status["status"], status["tasks_failed"]) == ("failed", 1)


def test_an_objective_is_submitted_with_its_options(deployed: Server):
    done = deployed.promptdag("submit", "--objective", "Compare two heat pumps", "--depth", "1",
                              "--wait", "--json", timeout=240)
    assert done.returncode == 0, done.stderr
    body = json.loads(done.stdout)
    assert body["objective"] == "Compare two heat pumps" and len(body["rounds"]) == 1


def test_bad_input_and_missing_servers_exit_2_with_one_line(deployed: Server, tmp_path: Path):
    unknown = deployed.promptdag("submit", SEED, "--deployment", "run-workflow/nope")
    assert unknown.returncode == 2
    assert "no deployment 'run-workflow/nope'" in one_error_line(unknown.stderr)
    assert "prefect deploy --all" in unknown.stderr

    bad = tmp_path / "bad.yaml"
    bad.write_text("name: Bad\ntasks:\n  - {name: A, prompt: x, depends_on: [Nope]}\n")
    invalid = deployed.promptdag("submit", str(bad))
    assert invalid.returncode == 2 and "'Nope'" in one_error_line(invalid.stderr)

    for args in (["status", "not-a-uuid"], ["status", UNKNOWN_RUN]):
        done = deployed.promptdag(*args)
        assert done.returncode == 2, done.stderr
        one_error_line(done.stderr)

    down = Server(deployed.info, {**deployed.env,
                                  "PREFECT_API_URL": f"http://127.0.0.1:{free_port()}/api"})
    unreachable = down.promptdag("submit", SEED)
    assert unreachable.returncode == 2
    assert "is not answering" in one_error_line(unreachable.stderr)
    assert "promptdag server start" in unreachable.stderr

    # No PREFECT_API_URL: the server `promptdag server start` left in PREFECT_HOME is used...
    unset = {k: v for k, v in deployed.env.items() if k != "PREFECT_API_URL"}
    found = Server(deployed.info, unset).promptdag("status", UNKNOWN_RUN)
    assert f"no flow run {UNKNOWN_RUN} on {deployed.info.api_url}" in found.stderr
    # ...and with none there, the error says how to start one.
    nowhere = Server(deployed.info, {**unset, "PREFECT_HOME": str(tmp_path)}).promptdag(
        "status", UNKNOWN_RUN)
    assert nowhere.returncode == 2
    assert "PREFECT_API_URL is not set" in one_error_line(nowhere.stderr)
    assert "promptdag server start" in nowhere.stderr
