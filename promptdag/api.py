"""Run workflows from Python: `run(spec)` and `await arun(spec)`.

An entry point like the CLI (it sits on top of flows/ and imports Prefect lazily).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from promptdag.results import WorkflowResult
from promptdag.spec import WorkflowSpec, load_spec, parse_spec
from promptdag.validation import validate_spec


def as_spec(spec: WorkflowSpec | dict[str, Any] | str | Path) -> WorkflowSpec:
    """Accept a spec model, a parsed dict (e.g. a seed API body) or a path to a spec file."""
    if isinstance(spec, WorkflowSpec):
        return spec
    if isinstance(spec, (str, Path)):
        return load_spec(spec)
    return parse_spec(spec)


async def arun(spec: WorkflowSpec | dict[str, Any] | str | Path) -> WorkflowResult:
    """Validate, then run the spec as a Prefect flow; the result whether it completed or not."""
    workflow = as_spec(spec)
    validate_spec(workflow)  # bad input fails here, before Prefect starts
    from flows.run_workflow import run_workflow

    state = await run_workflow(workflow, return_state=True)
    result = await state.aresult(raise_on_failure=False)
    if isinstance(result, BaseException):
        raise result
    return WorkflowResult.model_validate(result)


def run(spec: WorkflowSpec | dict[str, Any] | str | Path) -> WorkflowResult:
    """Synchronous `arun`, for scripts and notebooks without an event loop."""
    return asyncio.run(arun(spec))
