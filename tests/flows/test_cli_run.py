"""`promptdag run` end to end: the result JSON alone on stdout, progress and summary otherwise."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).parents[2] / "examples"


def promptdag(api: str, storage: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI against the session's Prefect API (no ephemeral start-up per call)."""
    env = {**os.environ, "PREFECT_API_URL": api, "PREFECT_LOCAL_STORAGE_PATH": str(storage)}
    return subprocess.run(
        [sys.executable, "-m", "promptdag.cli", *args],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
    )


def test_run_json_prints_only_the_result(prefect_api: str, tmp_path: Path):
    done = promptdag(
        prefect_api,
        tmp_path,
        "run",
        str(EXAMPLES / "seed_api_request.json"),
        "--json",
        "--breadth",
        "2",
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["status"] == "completed" and result["summary"]["total_tasks"] == 4
    assert {
        "name",
        "status",
        "depends_on",
        "attempts",
        "started_at",
        "finished_at",
        "model",
        "prompt",
        "result",
        "error",
        "reused",
        "usage",
    } <= set(result["tasks"][0])
    assert "Traceback" not in done.stderr and "ERROR" not in done.stderr


def test_a_failed_workflow_exits_1_with_a_readable_summary(prefect_api: str, tmp_path: Path):
    spec = tmp_path / "failing.yaml"
    spec.write_text(
        "name: failing\nconfig: {max_retries: 0}\ntasks:\n"
        "  - {name: Broken, prompt: x, model_options: {fail_first: 5}}\n"
        "  - {name: After, prompt: y}\n"
    )
    done = promptdag(prefect_api, tmp_path, "run", str(spec))
    assert done.returncode == 1
    assert "failing: FAILED" in done.stdout
    assert "[1/2] FAILED Broken" in done.stderr and "Traceback" not in done.stderr


def test_retries_show_as_they_happen_and_are_counted(prefect_api: str, tmp_path: Path):
    spec = tmp_path / "flaky.json"
    spec.write_text(json.dumps({
        "name": "flaky",
        "config": {"retry_backoff_seconds": 0, "model_options": {"fail_first": 1}},
        "tasks": [{"name": "Wobbly", "prompt": "Try twice"}],
    }))
    done = promptdag(prefect_api, tmp_path, "run", str(spec))
    assert done.returncode == 0, done.stderr
    assert "retry Wobbly (attempt 2): simulated transient failure" in done.stderr
    assert "retries: 1;" in done.stdout


def test_the_summary_names_the_model_and_prints_the_final_answer_in_full(prefect_api: str,
                                                                          tmp_path: Path):
    spec = tmp_path / "essay.yaml"  # no model anywhere: the simulated default answers
    spec.write_text("name: essay\ntasks:\n  - {name: Outline, prompt: Outline an essay}\n"
                    "  - {name: Essay, prompt: 'Write the essay from {{ Outline }}'}\n")
    done = promptdag(prefect_api, tmp_path, "run", str(spec), "--json")
    answers = {t["name"]: t["result"] for t in json.loads(done.stdout)["tasks"]}
    summary = promptdag(prefect_api, tmp_path, "run", str(spec), "--fresh").stdout
    assert "model: simulated" in summary
    assert "note: no model was set, so the offline simulated model answered" in summary
    assert answers["Essay"] in summary  # the final task's answer, whole
    assert answers["Outline"] not in summary or len(answers["Outline"]) <= 90  # others cut

    chosen = promptdag(prefect_api, tmp_path, "run", str(spec), "--model", "simulated").stdout
    assert "model: simulated" in chosen and "no model was set" not in chosen
