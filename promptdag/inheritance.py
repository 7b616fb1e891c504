"""What a sub-workflow takes from its parent, and what command-line overrides reach.

A `workflow:` task runs a whole spec as a subflow. The parent's `model`, `model_options` and
`breadth` are its defaults: a sub-workflow that sets its own keeps them (options merge key by key,
the sub-workflow's own winning), one that does not takes the parent's. `--model` is stronger:
"this model for every task" reaches every task of every sub-workflow. Both are applied once, when
a spec is loaded or overridden, so the values travel explicitly in the spec (a flow parameter)
and a deployment run sees what a local run sees.
"""

from __future__ import annotations

from typing import Any

from promptdag.spec import WorkflowSpec

INHERITED = ("model", "model_options", "breadth")


def inherit_parent_config(spec: WorkflowSpec) -> WorkflowSpec:
    """The spec with every sub-workflow's unset `INHERITED` fields taken from its parent."""
    if not any(isinstance(t.workflow, WorkflowSpec) for t in spec.tasks):
        return spec
    parent = spec.config
    tasks = []
    for task in spec.tasks:
        if isinstance(task.workflow, WorkflowSpec):
            sub = task.workflow
            update: dict[str, Any] = {}
            for field in INHERITED:
                if field not in parent.model_fields_set:
                    continue
                if field == "model_options":
                    merged = {**parent.model_options, **sub.config.model_options}
                    if merged != sub.config.model_options:
                        update[field] = merged
                elif field not in sub.config.model_fields_set:
                    update[field] = getattr(parent, field)
            if update:
                sub = sub.model_copy(update={"config": sub.config.model_copy(update=update)})
            task = task.model_copy(update={"workflow": inherit_parent_config(sub)})
        tasks.append(task)
    return spec.model_copy(update={"tasks": tasks})


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
