"""Anthropic's Message Batches on the wire, through the official SDK (see llm/batch_api.py).

Submit: `messages.batches.create(requests=[{"custom_id", "params"}])`, `params` being the body
`messages.create` would send. Poll: `messages.batches.retrieve` (`processing_status`
in_progress, canceling, ended; `request_counts` {processing, succeeded, errored, canceled,
expired}). Results: `messages.batches.results` streams the JSONL at the batch's `results_url`,
one `{"custom_id", "result": {"type": succeeded | errored | canceled | expired, ...}}` a line.
"""

from __future__ import annotations

from typing import Any

import anthropic

from promptdag.errors import PermanentProviderError, ProviderError
from promptdag.llm.base import Completion, CompletionRequest, Model, Usage
from promptdag.llm.batch_api import BatchLine, BatchOutcome, BatchProgress, flat_body
from promptdag.llm.keys import resolve_key
from promptdag.llm.pricing import batch_cost_usd
from promptdag.llm.transport import cached_client, clip, connection_error, status_error

_STOP = {"end_turn": "stop", "stop_sequence": "stop", "tool_use": "stop", "max_tokens": "length"}


def body(model: Model, request: CompletionRequest) -> dict[str, Any]:
    """The messages body the per-call adapter would send for `request` (plain text)."""
    return flat_body(model._body(request, None))  # type: ignore[attr-defined]


async def _client(model: Any) -> anthropic.AsyncAnthropic:
    key = await resolve_key(model.name, "anthropic", model.options)
    return cached_client(
        ("anthropic", model.base_url, key),
        lambda: anthropic.AsyncAnthropic(api_key=key, base_url=model.base_url, max_retries=0),
    )


async def submit(model: Model, lines: list[BatchLine]) -> str:
    client = await _client(model)
    requests: Any = [{"custom_id": line.custom_id, "params": line.body} for line in lines]
    try:
        batch = await client.messages.batches.create(requests=requests)
    except anthropic.APIError as exc:
        raise _translate(model, exc) from None
    return batch.id


async def progress(model: Model, batch_id: str) -> BatchProgress:
    client = await _client(model)
    try:
        batch = await client.messages.batches.retrieve(batch_id)
    except anthropic.APIError as exc:
        raise _translate(model, exc) from None
    counts = batch.request_counts
    failed = counts.errored + counts.canceled + counts.expired
    return BatchProgress(
        status=batch.processing_status,
        ended=batch.processing_status == "ended",
        total=counts.processing + counts.succeeded + failed,
        succeeded=counts.succeeded,
        failed=failed,
    )


async def results(model: Any, batch_id: str, progress: BatchProgress) -> BatchOutcome:
    client = await _client(model)
    outcome = BatchOutcome(status=progress.status)
    try:
        async for line in await client.messages.batches.results(batch_id):
            result = line.result
            if result.type == "succeeded":
                outcome.answers[line.custom_id] = _completion(model, result.message)
            elif result.type == "errored":
                error = result.error.error
                outcome.failures[line.custom_id] = clip(
                    f"{model.label}: batch: {error.message} [{error.type}]")
            else:  # canceled, expired
                outcome.failures[line.custom_id] = f"{model.label}: batch: {result.type}"
    except anthropic.APIError as exc:
        raise _translate(model, exc) from None
    return outcome


def _completion(model: Any, message: Any) -> Completion:
    text = "".join(block.text for block in message.content if getattr(block, "type", "") == "text")
    usage = message.usage
    input_tokens = ((usage.input_tokens or 0) + (usage.cache_creation_input_tokens or 0)
                    + (usage.cache_read_input_tokens or 0))
    output_tokens = usage.output_tokens or 0
    stop = message.stop_reason
    return Completion(
        text=text,
        model=model.name,
        finish_reason=_STOP.get(stop, stop) if stop else None,
        usage=Usage(input_tokens=input_tokens, output_tokens=output_tokens,
                    cost_usd=batch_cost_usd(model.name, input_tokens, output_tokens)),
    )


def _translate(model: Any, exc: anthropic.APIError) -> ProviderError:
    if isinstance(exc, anthropic.APIConnectionError):
        return connection_error(model.label, exc)
    if isinstance(exc, anthropic.APIStatusError):
        body = exc.body if isinstance(exc.body, dict) else {}
        error: dict[str, Any] = body["error"] if isinstance(body.get("error"), dict) else {}
        detail = str(error.get("message") or exc.message)
        return status_error(model.label, exc.status_code, detail, exc.response.headers)
    return PermanentProviderError(clip(f"{model.label}: {type(exc).__name__}: {exc.message}"))
