"""Structured output: a pydantic model in, a validated instance out, for any provider.

The request carries the model's JSON schema (`response_schema`); each provider asks its API for
it natively (OpenAI JSON-schema response format, Anthropic tool use, the simulated model's own
answers) and returns the JSON as text. If the answer does not validate, the model is shown its
validation error once and asked again; a second bad answer is a permanent error.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from promptdag.errors import PermanentProviderError, SpecError
from promptdag.llm.base import CompletionRequest, Model, Usage

T = TypeVar("T", bound=BaseModel)


def _parse(text: str, output_type: type[T]) -> T:
    cleaned = text.strip()
    if cleaned.startswith("```"):  # tolerate a fenced block from models without native JSON mode
        cleaned = cleaned.strip("`")
        cleaned = cleaned.split("\n", 1)[1] if "\n" in cleaned else cleaned
    return output_type.model_validate_json(cleaned)


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
    schema = output_type.model_json_schema()
    ask = request.model_copy(update={"response_schema": schema})
    usage = Usage()
    completion = await model.complete(ask)
    usage = usage + completion.usage
    try:
        return _accept(completion.text, output_type, check), usage
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
            return _accept(completion.text, output_type, check), usage
        except (ValidationError, ValueError, SpecError) as exc:
            error = PermanentProviderError(
                f"{model.name} returned an invalid {output_type.__name__} twice: {_short(exc)}"
            )
            raise error from None


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
