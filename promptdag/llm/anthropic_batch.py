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

from promptdag.llm.base import CompletionRequest
from promptdag.llm.batch_api import (
    BatchLine,
    BatchOutcome,
    BatchProgress,
    at_batch_price,
    client_of,
    flat_body,
    sdk_call,
)
from promptdag.llm.transport import clip


def body(model: Any, request: CompletionRequest) -> dict[str, Any]:
    """The messages body the per-call adapter would send for `request` (plain text)."""
    return flat_body(model._body(request, None))


async def submit(model: Any, lines: list[BatchLine]) -> str:
    client = await client_of(model, anthropic.AsyncAnthropic)
    requests: Any = [{"custom_id": line.custom_id, "params": line.body} for line in lines]
    batch = await sdk_call(model, lambda: client.messages.batches.create(requests=requests))
    return str(batch.id)


async def progress(model: Any, batch_id: str) -> BatchProgress:
    client = await client_of(model, anthropic.AsyncAnthropic)
    batch = await sdk_call(model, lambda: client.messages.batches.retrieve(batch_id))
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
    client = await client_of(model, anthropic.AsyncAnthropic)
    outcome = BatchOutcome(status=progress.status)

    async def read() -> None:
        async for line in await client.messages.batches.results(batch_id):
            result = line.result
            if result.type == "succeeded":  # read as the per-call adapter reads an answer
                message = result.message
                outcome.answers[line.custom_id] = at_batch_price(
                    model._completion(message, model._text(message)))
            elif result.type == "errored":
                error = result.error.error
                outcome.failures[line.custom_id] = clip(
                    f"{model.label}: batch: {error.message} [{error.type}]")
            else:  # canceled, expired
                outcome.failures[line.custom_id] = f"{model.label}: batch: {result.type}"

    await sdk_call(model, read)
    return outcome
