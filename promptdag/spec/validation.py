"""Everything checked before a run starts: the graph, every task's model and options, and (for
a run) that each real model has its key and the prices file reads."""

from __future__ import annotations

from typing import Any

from promptdag.errors import SpecError
from promptdag.llm.keys import check_key
from promptdag.llm.options import OPTION_MODELS, check_options, parse_options
from promptdag.llm.pricing import load_prices
from promptdag.llm.registry import check_model, split_model
from promptdag.llm.simulated import parse_options as parse_simulated_options
from promptdag.spec.graph import WorkflowGraph, build_graph
from promptdag.spec.input_limits import check_spec
from promptdag.spec.models import TaskSpec, WorkflowSpec


def task_models(task: TaskSpec, spec: WorkflowSpec) -> list[str]:
    """The model chain for a task: its own `model`, else the workflow's (a list is a fallback
    chain, tried in order)."""
    model = task.model if task.model is not None else spec.config.model
    return [model] if isinstance(model, str) else list(model)


def task_options(task: TaskSpec, spec: WorkflowSpec) -> dict[str, object]:
    """Workflow-wide model options, overridden key by key by the task's own."""
    return {**spec.config.model_options, **task.model_options}


def validate_spec(
    spec: WorkflowSpec, *, check_keys: bool = True, bounded: bool = True
) -> WorkflowGraph:
    """Validate a parsed spec completely; return its graph or raise SpecError.

    With `check_keys` (a run, not `promptdag validate`), also raise ConfigError when a real
    model has no API key or the prices file is unreadable: one line before anything starts.
    Input bounds (depth, size, prompt and context sizes: promptdag/spec/input_limits.py) are checked
    here, so `validate` and `run` accept exactly the same specs.
    """
    if bounded:  # a batch's expansion is bounded by its parts instead (promptdag/engine/batch.py)
        check_spec(spec)
    graph = build_graph(spec)
    real = False
    for task in spec.tasks:
        if isinstance(task.workflow, WorkflowSpec):  # a sub-workflow: its own tasks, its models
            try:
                validate_spec(task.workflow, check_keys=check_keys, bounded=bounded)
            except SpecError as exc:
                raise type(exc)(f"task {task.name!r} (sub-workflow): {exc}") from None
            continue
        models = task_models(task, spec)
        if not models:
            raise SpecError(f"task {task.name!r}: field 'model' is an empty list")
        for model in models:
            try:
                real |= check_model_ready(model, task_options(task, spec), check_keys=check_keys)
            except SpecError as exc:
                raise SpecError(f"task {task.name!r}: {exc}") from None
    if real and check_keys:
        load_prices()
    return graph


def check_model_ready(model: str, options: dict[str, Any], *, check_keys: bool = True) -> bool:
    """Check one model string with the options it gets (SpecError), and its key (ConfigError).

    Returns whether it is a real (paid, keyed) provider. For any caller that runs models outside
    a workflow spec (planner, reflector), so they fail as early and as clearly.
    """
    prefix = split_model(model)[0]
    check_model(model)
    resolved = check_options(model, options)
    if prefix == "simulated":
        parse_simulated_options(resolved)
    if prefix not in OPTION_MODELS:
        return False
    if check_keys:
        check_key(model, prefix, parse_options(prefix, resolved))
    return True


def spec_models(spec: WorkflowSpec) -> set[str]:
    """Every model string a spec may call (its default and each task's own or chain)."""
    models: set[str] = set()
    for ref in [spec.config.model, *(t.model for t in spec.tasks)]:
        if isinstance(ref, str):
            models.add(ref)
        elif isinstance(ref, list):
            models.update(m for m in ref if isinstance(m, str))
    return models
