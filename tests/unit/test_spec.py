"""Spec files load from YAML and JSON; every bad one is one clear SpecError."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from promptdag import SpecError, load_spec, parse_spec
from promptdag.spec.models import Priority, TaskType

EXAMPLES = Path(__file__).parents[2] / "examples"


def test_the_seed_api_request_body_loads_as_it_is():
    spec = load_spec(EXAMPLES / "seed_api_request.json")
    assert spec.name == "AI Healthcare Research"
    assert [t.name for t in spec.tasks][0] == "Initial Research"
    assert spec.tasks[0].priority is Priority.HIGH
    assert spec.tasks[1].task_type is TaskType.PARALLEL
    assert spec.config.breadth == 3 and spec.config.enable_retry


def test_yaml_and_json_give_the_same_spec(tmp_path: Path):
    data = {"name": "w", "tasks": [{"name": "A", "prompt": "x"}], "config": {"breadth": 2}}
    (tmp_path / "w.json").write_text(json.dumps(data))
    (tmp_path / "w.yaml").write_text(
        "name: w\nconfig: {breadth: 2}\ntasks:\n  - {name: A, prompt: x}\n"
    )
    assert load_spec(tmp_path / "w.json") == load_spec(tmp_path / "w.yaml")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {"name": "w", "tasks": [{"name": "A", "prompt": "x", "priorty": "high"}]},
            "task 'A': field 'priorty': unknown field",
        ),
        ({"name": "w", "tasks": [{"name": "A", "prompt": "  "}]}, "task 'A': field 'prompt'"),
        (
            {"name": "w", "tasks": [{"name": "A", "prompt": "x", "max_retries": "many"}]},
            "task 'A': field 'max_retries'",
        ),
        ({"name": "w", "tasks": [{"name": "A"}]}, "task 'A': field 'prompt' is required"),
        ({"name": "w", "tasks": []}, "field 'tasks'"),
        (
            {"name": "w", "config": {"breadth": 0}, "tasks": [{"name": "A", "prompt": "x"}]},
            "field 'config.breadth'",
        ),
        (
            {
                "name": "w",
                "config": {"failure_mode": "explode"},
                "tasks": [{"name": "A", "prompt": "x"}],
            },
            "field 'config.failure_mode'",
        ),
        ({"tasks": [{"name": "A", "prompt": "x"}]}, "field 'name': required field is missing"),
        (["not", "a", "mapping"], "expected a mapping"),
    ],
)
def test_bad_specs_name_the_task_and_field(data, message):
    with pytest.raises(SpecError) as err:
        parse_spec(data, "spec.json")
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_file_problems_are_spec_errors(tmp_path: Path):
    with pytest.raises(SpecError, match="no such file"):
        load_spec(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("name: [unclosed\n")
    with pytest.raises(SpecError, match=r"invalid YAML at line \d+"):
        load_spec(tmp_path / "bad.yaml")
    (tmp_path / "bad.json").write_text('{"name": ')
    with pytest.raises(SpecError, match="invalid JSON at line 1"):
        load_spec(tmp_path / "bad.json")
    with pytest.raises(SpecError, match="is a directory"):
        load_spec(tmp_path)
