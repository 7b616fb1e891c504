"""prefect.yaml: every entrypoint loads, every parameter validates, `serve` reads the same file."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from prefect.flows import load_flow_from_entrypoint

from promptdag.deployments.serve import PREFECT_YAML, ROOT, load_declarations, runner_deployments
from promptdag.engine.objective import ObjectiveConfig
from promptdag.remote.local_server import WORK_POOL
from promptdag.spec.models import parse_spec
from promptdag.spec.validation import validate_spec

DECLARATIONS = load_declarations()
BY_NAME = {d["name"]: d for d in DECLARATIONS}


def test_the_file_is_valid_for_prefect_and_declares_the_three_deployments():
    raw = yaml.safe_load(PREFECT_YAML.read_text())
    # `prefect deploy` skips an invalid file with a mere warning; load_declarations raises.
    assert len(DECLARATIONS) == len(raw["deployments"])
    assert set(BY_NAME) >= {"objective", "workflow", "daily-briefing"}
    assert len(BY_NAME) == len(DECLARATIONS), "deployment names must be unique"


@pytest.mark.parametrize("declaration", DECLARATIONS, ids=lambda d: d["name"])
def test_every_entrypoint_loads_and_its_parameters_validate(declaration: dict[str, Any]):
    flow = load_flow_from_entrypoint(str(ROOT / declaration["entrypoint"]))
    assert flow.name in {"run-workflow", "plan-execute-reflect"}
    parameters = flow.validate_parameters(declaration.get("parameters") or {})
    if flow.name == "run-workflow":
        validate_spec(parse_spec(declaration["parameters"]["spec"]))
    else:
        assert isinstance(parameters["config"], ObjectiveConfig)
        assert parameters["objective"]
    assert declaration["work_pool"]["name"] == WORK_POOL
    assert declaration.get("description"), "the UI shows it on the deployment page"


def test_the_flows_document_their_parameters_for_the_ui():
    from prefect.utilities.callables import parameter_schema

    for declaration in DECLARATIONS:
        flow = load_flow_from_entrypoint(str(ROOT / declaration["entrypoint"]))
        schema = parameter_schema(flow).model_dump()
        for name, prop in schema["properties"].items():
            assert prop.get("description"), f"{flow.name}: parameter {name!r} has no description"


def test_the_daily_briefing_is_a_cron_schedule():
    (schedule,) = BY_NAME["daily-briefing"]["schedules"]
    assert schedule["cron"] == "0 7 * * *" and schedule["timezone"] == "UTC"


def test_serve_builds_the_same_deployments_as_declared():
    served = {d.name: d for d in runner_deployments()}
    assert set(served) == set(BY_NAME)
    for name, deployment in served.items():
        declared = BY_NAME[name]
        assert deployment.entrypoint == declared["entrypoint"]
        assert deployment.parameters == declared.get("parameters", {})
        assert deployment.tags == declared.get("tags", [])
        assert deployment.description == declared.get("description")
        assert deployment.work_pool_name is None  # serve runs them itself
        crons = [getattr(s.schedule, "cron", None) for s in deployment.schedules or []]
        assert crons == [s["cron"] for s in declared.get("schedules", [])]


def test_serve_names_an_unknown_deployment():
    with pytest.raises(ValueError, match="no deployment named 'nope'.*known: objective"):
        runner_deployments(["nope"])


def test_the_working_directory_of_runs_does_not_come_from_pwd():
    """A stale $PWD at deploy time (a script that changed directory) once gave every run a
    wrong working directory; the build step finds the checkout from the code instead."""
    from promptdag.deployments.steps import checkout_directory

    raw = yaml.safe_load(PREFECT_YAML.read_text())
    assert "$PWD" not in yaml.safe_dump(raw)
    (pull,) = raw["pull"]
    assert pull["prefect.deployments.steps.set_working_directory"]["directory"] == (
        "{{ checkout.directory }}")
    assert raw["build"][0] == {"promptdag.deployments.steps.checkout_directory": {"id": "checkout"}}
    assert checkout_directory() == {"directory": str(ROOT)}
    assert (ROOT / "prefect.yaml").is_file()


def test_deployment_runs_send_heartbeats_that_the_crash_detection_expects():
    from promptdag.deployments.crash_detection import HEARTBEAT_SECONDS, TAG, WITHIN_SECONDS

    raw = yaml.safe_load(PREFECT_YAML.read_text())
    crash_step = {"promptdag.deployments.steps.crash_detection": {"id": "crash_detection"}}
    assert crash_step in raw["build"]
    for declaration in DECLARATIONS:
        env = declaration["work_pool"]["job_variables"]["env"]
        assert int(env["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"]) == HEARTBEAT_SECONDS
        assert TAG in declaration["tags"]  # the automation watches runs with this tag
    assert WITHIN_SECONDS > 2 * HEARTBEAT_SECONDS
