"""The command line's small promises: a version, a schema for editors, a reference that matches
the README, a closed pipe that ends quietly, and an objective body that `validate` recognises."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import jsonschema
import yaml

from promptdag.spec.reference import spec_reference, spec_schema

ROOT = Path(__file__).parents[2]


def cli(*args: str, **kwargs) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "promptdag.cli", *args], capture_output=True,
                          text=True, timeout=60, cwd=ROOT, **kwargs)


def test_version_names_promptdag_and_prefect():
    done = cli("--version")
    assert done.returncode == 0
    assert re.match(r"promptdag \d+\.\d+\.\d+ \(prefect 3\.", done.stdout)


def test_every_example_spec_validates_against_the_printed_schema():
    schema = json.loads(cli("schema").stdout)
    for path in sorted((ROOT / "examples").glob("*.yaml")):
        jsonschema.validate(yaml.safe_load(path.read_text()), schema)
    assert schema == json.loads(json.dumps(spec_schema()))


def test_the_docs_hold_the_current_spec_reference():
    readme = (ROOT / "docs" / "spec-reference.md").read_text()
    start, end = "<!-- spec-reference:start -->\n", "<!-- spec-reference:end -->"
    assert start in readme and end in readme
    held = readme.split(start, 1)[1].split(end, 1)[0]
    assert held.strip() == spec_reference().strip(), (
        "docs/spec-reference.md is stale: paste `promptdag schema --reference` between the "
        "spec-reference markers"
    )


def test_a_closed_pipe_ends_quietly():
    read, write = os.pipe()
    os.close(read)  # the reader is gone before anything is written (`| head -0`)
    with os.fdopen(write, "w") as stdout:
        done = subprocess.run([sys.executable, "-m", "promptdag.cli", "schema", "--reference"],
                              stdout=stdout, stderr=subprocess.PIPE, text=True, timeout=60,
                              cwd=ROOT)
    assert done.returncode == 0
    assert done.stderr == ""


def test_validate_recognises_an_objective_request_and_says_how_to_run_it():
    done = cli("validate", "examples/seed_plan_execute_request.json")
    assert done.returncode == 0
    assert "objective request" in done.stdout
    assert "promptdag objective --request examples/seed_plan_execute_request.json" in done.stdout
