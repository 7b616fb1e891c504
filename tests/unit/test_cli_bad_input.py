"""Bad input: one line on stderr naming the problem, exit 2, no traceback, well under a second
of work (Prefect is never started)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

GOOD = {
    "name": "w",
    "tasks": [{"name": "Research", "prompt": "x"}, {"name": "Write", "prompt": "y"}],
}


def with_task(**fields) -> dict:
    return {
        "name": "w",
        "tasks": [{"name": "Research", "prompt": "x"}, {"name": "Write", "prompt": "y", **fields}],
    }


CASES = {
    "missing file": (None, "no such file"),
    "invalid yaml": ("name: [oops\n", "invalid YAML"),
    "invalid json": ('{"name": }', "invalid JSON"),
    "unknown field": (with_task(dependson=["Research"]), "task 'Write': field 'dependson'"),
    "wrong type": (with_task(max_retries="lots"), "task 'Write': field 'max_retries'"),
    "cycle": (
        {
            "name": "w",
            "tasks": [
                {"name": "A", "prompt": "x", "depends_on": ["B"]},
                {"name": "B", "prompt": "y", "depends_on": ["A"]},
            ],
        },
        "dependency cycle",
    ),
    "unknown dependency": (with_task(depends_on=["Reserch"]), "did you mean 'Research'"),
    "duplicate task": (
        {"name": "w", "tasks": [{"name": "A", "prompt": "x"}, {"name": "A", "prompt": "y"}]},
        "declared twice",
    ),
    "unknown model": (with_task(model="gpt4"), "unknown model 'gpt4'"),
    "empty prompt": (with_task(prompt=""), "task 'Write': field 'prompt'"),
    "out of range config": ({**GOOD, "config": {"breadth": 0}}, "field 'config.breadth'"),
}


def promptdag(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "promptdag.cli", *args], capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("command", ["run", "validate", "graph"])
def test_bad_spec_exits_2_with_one_line(tmp_path: Path, case: str, command: str):
    content, expected = CASES[case]
    path = tmp_path / ("spec.yaml" if case == "invalid yaml" else "spec.json")
    if content is not None:
        path.write_text(content if isinstance(content, str) else json.dumps(content))
    done = promptdag(command, str(path))
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr
    assert expected in lines[0]


def test_usage_errors_exit_2_without_traceback():
    done = promptdag("run")
    assert done.returncode == 2 and "Traceback" not in done.stderr


def test_validate_prints_stages_and_graph_prints_mermaid(tmp_path: Path):
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(GOOD))
    done = promptdag("validate", str(path))
    assert done.returncode == 0
    assert "stage 1: Research" in done.stdout and "stage 2: Write" in done.stdout
    done = promptdag("graph", str(path))
    assert done.returncode == 0 and done.stdout.startswith("graph TD")
    assert "t0 --> t1" in done.stdout


@pytest.mark.parametrize(("flag", "value", "field"), [("--max-tokens", "0", "max_tokens"),
                                                      ("--temperature", "3", "temperature")])
def test_objective_limits_out_of_range_exit_2_naming_the_field(flag: str, value: str, field: str):
    done = promptdag("objective", "Plan a trip", flag, value)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and field in lines[0] and "Traceback" not in done.stderr
