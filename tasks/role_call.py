"""What the planner, reflector, synthesiser and dependency analyser share: one model call with
Prefect's retries and timeout, declared once as data."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import BaseModel

from promptdag.llm.base import CompletionRequest, Usage
from promptdag.llm.registry import get_model
from promptdag.llm.structured import complete_structured
from promptdag.objective import ObjectiveConfig
from tasks.run_prompt import retry_options

T = TypeVar("T", bound=BaseModel)


def role_task_options(config: ObjectiveConfig, run_name: str) -> dict[str, Any]:
    """Prefect options for a role task: same retry and timeout policy as workflow tasks."""
    return {
        "task_run_name": run_name,
        **retry_options(config.max_retries, config.retry_backoff_seconds),
        "timeout_seconds": config.timeout_seconds,
    }


async def ask_structured(
    model: str,
    options: dict[str, Any],
    prompt: str,
    metadata: dict[str, Any],
    output_type: type[T],
    check: Callable[[T], object] | None = None,
    system: str | None = None,
) -> tuple[T, Usage]:
    request = CompletionRequest(prompt=prompt, system=system, options=options, metadata=metadata)
    return await complete_structured(get_model(model, options), request, output_type, check)


async def ask_text(
    model: str,
    options: dict[str, Any],
    prompt: str,
    metadata: dict[str, Any],
    system: str | None = None,
) -> tuple[str, Usage]:
    request = CompletionRequest(prompt=prompt, system=system, options=options, metadata=metadata)
    completion = await get_model(model, options).complete(request)
    return completion.text, completion.usage
