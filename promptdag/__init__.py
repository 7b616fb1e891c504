"""promptdag: run DAGs of LLM prompts on Prefect 3, as fast as their dependencies allow."""

from promptdag.engine.results import TaskResult, WorkflowResult
from promptdag.errors import PromptDagError, SpecError
from promptdag.spec.builder import WorkflowBuilder
from promptdag.spec.graph import WorkflowGraph, build_graph
from promptdag.spec.models import TaskSpec, WorkflowConfig, WorkflowSpec, load_spec, parse_spec
from promptdag.spec.validation import validate_spec

__all__ = [
    "PromptDagError",
    "SpecError",
    "TaskResult",
    "TaskSpec",
    "WorkflowBuilder",
    "WorkflowConfig",
    "WorkflowGraph",
    "WorkflowResult",
    "WorkflowSpec",
    "arun_workflow",
    "build_graph",
    "load_spec",
    "parse_spec",
    "run_workflow",
    "validate_spec",
]


def run_workflow(spec: object) -> WorkflowResult:
    """Run a workflow (spec model, dict or file path) and return its result. Sync."""
    from promptdag.api import run

    return run(spec)  # type: ignore[arg-type]


async def arun_workflow(spec: object) -> WorkflowResult:
    """Run a workflow from async code."""
    from promptdag.api import arun

    return await arun(spec)  # type: ignore[arg-type]
