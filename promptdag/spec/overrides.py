"""Command-line overrides: `--model` reaches every task at every level (it means "this model
for every task"); `--breadth` the workflow, and its sub-workflows that set none of their own. A
sub-workflow's defaults from its parent are applied when a spec is parsed
(`promptdag.spec.models.inherit_parent_config`); overrides re-apply them, so the values travel
explicitly in the spec (a flow parameter) and a deployment run sees what a local run sees.
"""

from __future__ import annotations

from typing import Any

from promptdag.spec.models import WorkflowSpec, inherit_parent_config


def override(
    spec: WorkflowSpec,
    model: str | None = None,
    breadth: int | None = None,
    default_model: str | None = None,
) -> WorkflowSpec:
    """Command-line overrides: `model` for every task at every level; `breadth` for the
    workflow (and sub-workflows without their own); `default_model` where no model is set."""
    config: dict[str, Any] = {}
    if breadth is not None:
        config["breadth"] = breadth
    if model is not None:
        config["model"] = model
    elif default_model and "model" not in spec.config.model_fields_set:
        config["model"] = default_model
    if not config:
        return spec
    spec = _force_model(spec, model) if model is not None else spec
    spec = spec.model_copy(update={"config": spec.config.model_copy(update=config)})
    return inherit_parent_config(spec)


def _force_model(spec: WorkflowSpec, model: str) -> WorkflowSpec:
    tasks = []
    for task in spec.tasks:
        if isinstance(task.workflow, WorkflowSpec):
            sub = _force_model(task.workflow, model)
            sub = sub.model_copy(update={"config": sub.config.model_copy(update={"model": model})})
            task = task.model_copy(update={"workflow": sub})
        elif task.model is not None:
            task = task.model_copy(update={"model": None})
        tasks.append(task)
    return spec.model_copy(update={"tasks": tasks})
