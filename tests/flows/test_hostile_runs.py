"""What `validate` accepts, `run` runs (issue 17): a spec at the depth limit runs to the end on
real Prefect, one past it is the same one line from both; and a run's progress and summary
escape control characters while `--json` stays exact."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.unit.test_hostile_environment import nested


def promptdag(api: str, storage: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PREFECT_API_URL": api, "PREFECT_LOCAL_STORAGE_PATH": str(storage)}
    env.pop("PROMPTDAG_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "promptdag.cli", *args], capture_output=True,
                          text=True, timeout=180, env=env)


def test_a_spec_at_the_depth_limit_validates_and_runs(prefect_api: str, tmp_path: Path):
    at_limit, past = tmp_path / "at.json", tmp_path / "past.json"
    at_limit.write_text(json.dumps(nested(96)))  # spec, tasks, task, context + 96 = 100 deep
    past.write_text(json.dumps(nested(97)))
    assert promptdag(prefect_api, tmp_path, "validate", str(at_limit)).returncode == 0
    done = promptdag(prefect_api, tmp_path, "run", str(at_limit), "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["status"] == "completed"
    lines = set()
    for command in ("validate", "run"):
        done = promptdag(prefect_api, tmp_path, command, str(past))
        assert done.returncode == 2 and done.stdout == ""
        lines.add(done.stderr.strip())
    (line,) = lines
    assert "nested more than 100 deep" in line and "PROMPTDAG_MAX_SPEC_DEPTH" in line


HOSTILE = "Clear\x1b[2J\x1b]0;pwned\x07 abc\u202edef\x9b"


def test_a_run_escapes_control_characters_but_json_stays_exact(prefect_api: str,
                                                                tmp_path: Path):
    spec = tmp_path / "names.json"
    spec.write_text(json.dumps({"name": f"wf {HOSTILE}", "config": {"max_retries": 0}, "tasks": [
        {"name": HOSTILE, "prompt": "x"},
        {"name": "Broken", "prompt": "y", "model_options": {"fail_first": 5}},
    ]}))
    done = promptdag(prefect_api, tmp_path, "run", str(spec))
    assert done.returncode == 1, done.stderr  # Broken fails: its error line is printed too
    for raw in ("\x1b", "\x07", "\u202e", "\x9b"):
        assert raw not in done.stdout and raw not in done.stderr
    assert "Clear\\x1b[2J" in done.stdout and "abc\\u202edef" in done.stderr
    done = promptdag(prefect_api, tmp_path, "run", str(spec), "--json")
    result = json.loads(done.stdout)
    assert result["name"] == f"wf {HOSTILE}" and result["tasks"][0]["name"] == HOSTILE
