"""Structured output: a pydantic model in, a validated instance out, for any provider.

The request carries the model's JSON schema (`response_schema`); each provider asks its API for
it natively (OpenAI JSON-schema response format, Anthropic tool use, the simulated model's own
answers) and returns the JSON as text. If the answer does not validate, the model is shown its
validation error once and asked again; a second bad answer is a permanent error.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from promptdag.errors import PermanentProviderError, SpecError
from promptdag.llm.base import CompletionRequest, Model, Usage

T = TypeVar("T", bound=BaseModel)
V = TypeVar("V")


def _unfence(text: str) -> str:
    cleaned = text.strip()
    if cleaned.startswith("```"):  # tolerate a fenced block from models without native JSON mode
        cleaned = cleaned.strip("`")
        cleaned = cleaned.split("\n", 1)[1] if "\n" in cleaned else cleaned
    return cleaned


def _parse(text: str, output_type: type[T]) -> T:
    return output_type.model_validate_json(_unfence(text))


async def complete_structured(
    model: Model,
    request: CompletionRequest,
    output_type: type[T],
    check: Callable[[T], object] | None = None,
) -> tuple[T, Usage]:
    """Ask `model` for an instance of `output_type`; one repair attempt on invalid output.

    Args:
        check: further validation (a plan's graph, say); raises SpecError or ValueError with a
            message the model can act on. Its failures get the same single repair attempt.
    """
    return await _complete_checked(
        model, request, output_type.model_json_schema(), output_type.__name__,
        lambda text: _accept(text, output_type, check),
    )


async def complete_schema(
    model: Model, request: CompletionRequest, schema: dict[str, Any]
) -> tuple[dict[str, Any], Usage]:
    """Ask `model` for a JSON object matching a JSON schema (a task's `output_schema`)."""
    import jsonschema

    def accept(text: str) -> dict[str, Any]:
        value = json.loads(_unfence(text))
        try:
            jsonschema.validate(value, schema)
        except jsonschema.ValidationError as exc:
            where = ".".join(map(str, exc.absolute_path)) or "answer"
            raise ValueError(f"{where}: {exc.message}") from None
        if not isinstance(value, dict):
            raise ValueError("the answer must be a JSON object")
        return value

    return await _complete_checked(model, request, schema, "output", accept)


async def _complete_checked(
    model: Model,
    request: CompletionRequest,
    schema: dict[str, Any],
    title: str,
    accept: Callable[[str], V],
) -> tuple[V, Usage]:
    ask = request.model_copy(update={"response_schema": schema})
    usage = Usage()
    completion = await model.complete(ask)
    usage = usage + completion.usage
    try:
        return accept(completion.text), usage
    except (ValidationError, ValueError, SpecError) as first_error:
        repair = ask.model_copy(
            update={
                "prompt": (
                    f"{request.prompt}\n\nYour previous answer was not valid:\n"
                    f"{completion.text[:2000]}\n\nValidation error: {_short(first_error)}\n"
                    f"Answer again with JSON matching this schema only:\n{json.dumps(schema)}"
                ),
                "metadata": {**request.metadata, "repair": True, "error": _short(first_error)},
            }
        )
        completion = await model.complete(repair)
        usage = usage + completion.usage
        try:
            return accept(completion.text), usage
        except (ValidationError, ValueError, SpecError) as exc:
            raise PermanentProviderError(
                f"{model.name} returned an invalid {title} twice: {_short(exc)}"
            ) from None


def _accept(text: str, output_type: type[T], check: Callable[[T], object] | None) -> T:
    value = _parse(text, output_type)
    if check is not None:
        check(value)
    return value


def _short(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        where = ".".join(map(str, first["loc"])) or "answer"
        return f"{where}: {first['msg']}"
    return str(exc).splitlines()[0][:300]
