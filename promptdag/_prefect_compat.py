"""The one door to Prefect's private modules: a Prefect upgrade that moves them touches this file.

Each function says which private name it uses and what for. Everything else in promptdag uses
Prefect's public API only (tests/unit/test_imports.py holds every other module to that). The
imports are lazy: importing this module costs nothing, and only the caller that needs a private
name pays for (or breaks on) it.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any
from uuid import UUID


def cancel_was_intended() -> bool:
    """Whether the SIGTERM being handled is Prefect's cancellation rather than a plain kill.

    Uses `prefect._internal.control_listener.get_intent`: Prefect's runner records the intent
    ("cancel") before it signals the process; `promptdag run` reads it to report a cancelled
    run (exit 1) instead of dying of the signal.
    """
    from prefect._internal import control_listener

    return control_listener.get_intent() == "cancel"


def intend_cancel() -> None:
    """Record "cancel" as the reason for the SIGTERM about to be raised.

    Uses `prefect._internal.control_listener._set_intent`: what a worker's runner does before it
    signals a flow run to stop, so Prefect's engine ends an in-process run as Cancelled (not
    Crashed) when `promptdag cancel` or the UI cancels a run the CLI started in process.
    """
    from prefect._internal import control_listener

    control_listener._set_intent("cancel")


def clear_cancel_intent() -> None:
    """Forget a recorded "cancel" (`intend_cancel`): for a process that runs on after a
    cancelled run (a test session). Uses `prefect._internal.control_listener.clear_intent`."""
    from prefect._internal import control_listener

    control_listener.clear_intent()


def prefect_yaml_deployments(raw: Any) -> list[dict[str, Any]]:
    """The deployments of a parsed prefect.yaml, validated and defaulted as `prefect deploy`
    reads them (pydantic's ValidationError when the file is not valid).

    Uses `prefect.cli.deploy._models.PrefectYamlModel`, the schema `prefect deploy` validates
    the file with, so `promptdag serve` reads prefect.yaml exactly as `prefect deploy` does.
    """
    from prefect.cli.deploy._models import PrefectYamlModel

    model = PrefectYamlModel.model_validate(raw)
    return [d.model_dump(exclude_unset=True, mode="json") for d in model.deployments]


def deployment_schedule(config: dict[str, Any]) -> Any:
    """One `schedules:` entry of prefect.yaml (cron, interval or rrule, with timezone, anchor,
    parameters...) as the schedule `Flow.to_deployment(schedules=...)` takes.

    Uses `prefect.cli.deploy._schedules._schedule_config_to_deployment_schedule`, the function
    `prefect deploy` converts the same entries with, so both read a schedule alike.
    """
    from prefect.cli.deploy._schedules import _schedule_config_to_deployment_schedule

    return _schedule_config_to_deployment_schedule(config)


def forget_task_runs(task_run_ids: Collection[UUID]) -> None:
    """Drop what the current flow run keeps of these task runs, whose results go nowhere more.

    Prefect's `FlowRunContext` keeps two tables for the whole flow run and never prunes them:
    `task_run_assets` (task run id -> the assets it passes downstream; an entry for every task
    run) and `run_results` (id of each object of a result, one level deep -> a copy of the task
    run's final state, so that a result passed to a later task links the two runs). A streamed
    batch makes task runs without end, and those tables grew with its rows done. Uses both
    fields of `prefect.context.FlowRunContext` and the state's `state_details.task_run_id`;
    does nothing where they are missing (a Prefect that no longer keeps them), so an upgrade
    costs memory, never a run.
    """
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    if context is None or not task_run_ids:
        return
    ids = set(task_run_ids)
    assets = getattr(context, "task_run_assets", None)
    if isinstance(assets, dict):
        for task_run_id in ids:
            assets.pop(task_run_id, None)
    results = getattr(context, "run_results", None)
    if isinstance(results, dict):
        for key, entry in list(results.items()):  # a copy: task runs in threads may add entries
            state = entry[0] if isinstance(entry, tuple) and entry else None
            details = getattr(state, "state_details", None)
            if getattr(details, "task_run_id", None) in ids:
                results.pop(key, None)
