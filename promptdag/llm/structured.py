"""Structured output: a pydantic model in, a validated instance out, for any provider.

The request carries the model's JSON schema (`response_schema`); each provider asks its server
for it in the best mode the server takes (JSON-schema response format, JSON mode, Anthropic tool
use, or the schema in the prompt with the JSON taken out of the answer: see `negotiation`) and
returns the JSON as text. An answer cut by the token limit (`finish_reason: length`) and not
valid is asked again once with twice the room (`max_tokens` doubled, capped); still cut, it is a
permanent error that says so. Any other invalid answer is shown to the model once with its
validation error; a second bad answer is a permanent error.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from promptdag.errors import PermanentProviderError, ProviderError, SpecError
from promptdag.llm.base import Completion, CompletionRequest, Model, Usage
from promptdag.llm.negotiation import extract_json
from promptdag.settings import get_settings

T = TypeVar("T", bound=BaseModel)
V = TypeVar("V")

MAX_STRUCTURED_TOKENS = 16_384  # the cap of the one retry with twice the room


def _unfence(text: str) -> str:
    """The answer's JSON: as it is when it parses, else the first JSON value in it (fenced or
    in prose: models without a native JSON mode, registered providers)."""
    cleaned = text.strip()
    try:
        json.loads(cleaned)
    except ValueError:
        return extract_json(cleaned) or cleaned
    return cleaned


def _parse(text: str, output_type: type[T]) -> T:
    return output_type.model_validate_json(_unfence(text))


async def complete_structured(
    model: Model,
    request: CompletionRequest,
    output_type: type[T],
    check: Callable[[T], object] | None = None,
    schema: dict[str, Any] | None = None,
) -> tuple[T, Usage]:
    """Ask `model` for an instance of `output_type`; one repair attempt on invalid output.

    Args:
        check: further validation (a plan's graph, say); raises SpecError or ValueError with a
            message the model can act on. Its failures get the same single repair attempt.
        schema: the schema to ask with, when tighter than the model's own (bounds that keep a
            small model's grammar-constrained answer from running on).
    """
    return await complete_with_schema(
        model,
        request,
        schema or output_type.model_json_schema(),
        output_type.__name__,
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

    return await complete_with_schema(model, request, schema, "output", accept)


async def complete_with_schema(
    model: Model,
    request: CompletionRequest,
    schema: dict[str, Any],
    title: str,
    accept: Callable[[str], V],
) -> tuple[V, Usage]:
    """The one path of every structured request (tasks' `output_schema`, the roles' models).

    The provider asks its server in the best structured mode it takes (`negotiation`); the
    answer goes through `accept`. An answer cut by the token limit is asked again once with
    twice the room; any other invalid answer is shown to the model once with its error.
    """
    ask = request.model_copy(update={"response_schema": schema})
    usage = Usage()

    async def call(req: CompletionRequest) -> Completion:
        nonlocal usage
        completion = await model.complete(req)
        usage = usage + completion.usage
        return completion

    try:
        completion = await call(ask)
        try:
            return accept(completion.text), usage
        except (ValidationError, ValueError, SpecError) as error:
            first_error: Exception = error
        if completion.truncated:
            limit = _limit_of(completion, ask, model)
            ask = ask.model_copy(update={"max_tokens": min(2 * limit, MAX_STRUCTURED_TOKENS)})
            completion = await call(ask)
            try:
                return accept(completion.text), usage
            except (ValidationError, ValueError, SpecError) as error:
                if completion.truncated:
                    raise _truncated(model, title, completion, ask) from None
                first_error = error
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
        completion = await call(repair)
        try:
            return accept(completion.text), usage
        except (ValidationError, ValueError, SpecError) as exc:
            if completion.truncated:
                raise _truncated(model, title, completion, repair) from None
            raise PermanentProviderError(
                f"{model.name} returned an invalid {title} twice: {_short(exc)}"
            ) from None
    except ProviderError as exc:  # what the failed calls cost still counts in usage totals
        exc.usage = usage
        raise


def _limit_of(completion: Completion, request: CompletionRequest, model: Model) -> int:
    """The token limit the answer hit: the request's own, else the model's option (or the
    default setting), else the tokens it came back with."""
    if request.max_tokens:
        return request.max_tokens
    options = getattr(model, "options", None)
    if isinstance(getattr(options, "max_tokens", None), int):
        return int(options.max_tokens)  # type: ignore[union-attr]
    if callable(getattr(options, "max_tokens_for", None)):
        return int(options.max_tokens_for())  # type: ignore[union-attr]
    return completion.usage.output_tokens or get_settings().default_max_tokens


def _truncated(
    model: Model, title: str, completion: Completion, request: CompletionRequest
) -> PermanentProviderError:
    limit = _limit_of(completion, request, model)
    return PermanentProviderError(
        f"{model.name}: the {title} was truncated at {limit} tokens (finish_reason length) and "
        "is not valid JSON; raise the model's max_tokens option"
    )


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
