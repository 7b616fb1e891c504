"""What the planner, reflector, synthesiser and dependency analyser share: the workflow tasks'
model-call path (tasks/model_call.py: provider limits, HTTP timeout below the task timeout,
errors), for a structured or a text answer. Their Prefect options: tasks/task_options.py."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import BaseModel

from promptdag.llm.base import (
    Completion,
    StreamUnsupported,
    TextSink,
    Usage,
    WithStreaming,
)
from promptdag.llm.structured import complete_structured
from promptdag.tasks.model_call import ModelCall

T = TypeVar("T", bound=BaseModel)
Prompt = str | Callable[[int | None], str]
"""A role's prompt, or a function of the characters the model's context leaves for it."""


STRUCTURED_ANSWER_TOKENS = 2048
"""Room a plan or a reflection gets even when `max_tokens` is set low for workflow tasks."""


async def _prompt(call: ModelCall, prompt: Prompt, system: str | None) -> str:
    budget = await call.prompt_budget(system)
    return prompt if isinstance(prompt, str) else prompt(budget)


async def ask_structured(
    model: str,
    options: dict[str, Any],
    prompt: Prompt,
    metadata: dict[str, Any],
    output_type: type[T],
    check: Callable[[T], object] | None = None,
    system: str | None = None,
    schema: dict[str, Any] | None = None,
    answer_tokens: int | None = None,
) -> tuple[T, Usage]:
    """`answer_tokens`: the room the answer gets at least (default STRUCTURED_ANSWER_TOKENS)."""
    call = ModelCall(model, options, str(metadata.get("role", "role")),
                     min_answer_tokens=answer_tokens or STRUCTURED_ANSWER_TOKENS)

    async def ask() -> tuple[T, Usage]:
        request = call.request(await _prompt(call, prompt, system), metadata, system)
        return await complete_structured(call.model, request, output_type, check, schema)

    return await call.run(ask())


async def stream_structured(
    model: str,
    options: dict[str, Any],
    prompt: Prompt,
    metadata: dict[str, Any],
    schema: dict[str, Any],
    on_text: TextSink,
    system: str | None = None,
    answer_tokens: int | None = None,
) -> Completion | StreamUnsupported:
    """A structured answer streamed piece by piece into `on_text` (the same request as
    `ask_structured`'s first call), or why it cannot stream: the model has no `stream`, or its
    server will not stream a constrained answer. No repair round: the caller reads what came."""
    call = ModelCall(model, options, str(metadata.get("role", "role")),
                     min_answer_tokens=answer_tokens or STRUCTURED_ANSWER_TOKENS)
    if not isinstance(call.model, WithStreaming):
        return StreamUnsupported(f"{model} does not stream", first=False)
    streaming = call.model

    async def ask() -> Completion | StreamUnsupported:
        request = call.request(await _prompt(call, prompt, system), metadata, system)
        try:
            return await streaming.stream(
                request.model_copy(update={"response_schema": schema}), on_text)
        except StreamUnsupported as exc:
            return exc

    return await call.run(ask())


async def ask_text(
    model: str,
    options: dict[str, Any],
    prompt: Prompt,
    metadata: dict[str, Any],
    system: str | None = None,
) -> tuple[str, Usage]:
    call = ModelCall(model, options, str(metadata.get("role", "role")))

    async def ask() -> tuple[str, Usage]:
        request = call.request(await _prompt(call, prompt, system), metadata, system)
        completion = await call.model.complete(request)
        return completion.text, completion.usage

    return await call.run(ask())
