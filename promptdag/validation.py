"""Everything checked before a run starts: the graph and every task's model and options."""

from __future__ import annotations

from promptdag.errors import SpecError
from promptdag.graph import WorkflowGraph, build_graph
from promptdag.llm.registry import check_model, split_model
from promptdag.llm.simulated import parse_options
from promptdag.spec import TaskSpec, WorkflowSpec


def task_models(task: TaskSpec, spec: WorkflowSpec) -> list[str]:
    """The model chain for a task: its own `model`, else the workflow's (a list is a fallback
    chain, tried in order)."""
    model = task.model if task.model is not None else spec.config.model
    return [model] if isinstance(model, str) else list(model)


def task_options(task: TaskSpec, spec: WorkflowSpec) -> dict[str, object]:
    """Workflow-wide model options, overridden key by key by the task's own."""
    return {**spec.config.model_options, **task.model_options}


def validate_spec(spec: WorkflowSpec) -> WorkflowGraph:
    """Validate a parsed spec completely; return its graph or raise SpecError."""
    graph = build_graph(spec)
    for task in spec.tasks:
        models = task_models(task, spec)
        if not models:
            raise SpecError(f"task {task.name!r}: field 'model' is an empty list")
        for model in models:
            try:
                check_model(model)
                if split_model(model)[0] == "simulated":
                    parse_options(task_options(task, spec))
            except SpecError as exc:
                raise SpecError(f"task {task.name!r}: {exc}") from None
    return graph
