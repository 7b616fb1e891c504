"""OpenAI's Batch API on the wire, through the official SDK (see llm/batch_api.py).

Submit: the lines as a JSONL file (`{"custom_id", "method": "POST", "url":
"/v1/chat/completions", "body"}` each) uploaded with `files.create(purpose="batch")`, then
`batches.create(input_file_id, endpoint="/v1/chat/completions", completion_window="24h")`.
Poll: `batches.retrieve` (status validating, in_progress, finalizing, then completed, expired,
failed or cancelled; `request_counts` {total, completed, failed}). Results: the output file
(`response.status_code` 200 and the chat completion as `response.body`) and the error file
(failed lines, and for an expired batch every unfinished line with code `batch_expired`).
A batch that failed validation answers nothing: every line goes the per-call path.
"""

from __future__ import annotations

import json
from typing import Any, Final

import openai

from promptdag.errors import PermanentProviderError, ProviderError
from promptdag.llm.base import Completion, CompletionRequest, Model, Usage
from promptdag.llm.batch_api import BatchLine, BatchOutcome, BatchProgress, flat_body
from promptdag.llm.keys import resolve_key
from promptdag.llm.pricing import batch_cost_usd
from promptdag.llm.transport import (
    cached_client,
    clip,
    connection_error,
    garbled_answer,
    status_error,
)

ENDPOINT: Final = "/v1/chat/completions"
ENDED = frozenset({"completed", "expired", "failed", "cancelled"})


def body(model: Model, request: CompletionRequest) -> dict[str, Any]:
    """The chat-completions body the per-call adapter would send for `request`."""
    return flat_body(model._body(request))  # type: ignore[attr-defined]


async def _client(model: Any) -> openai.AsyncOpenAI:
    key = await resolve_key(model.name, "openai", model.options)
    return cached_client(
        ("openai", model.base_url, key),
        lambda: openai.AsyncOpenAI(api_key=key, base_url=model.base_url, max_retries=0),
    )


async def submit(model: Model, lines: list[BatchLine]) -> str:
    """Upload the lines and create the batch; its id."""
    client = await _client(model)
    data = "".join(
        json.dumps({"custom_id": line.custom_id, "method": "POST", "url": ENDPOINT,
                    "body": line.body}, ensure_ascii=False) + "\n"
        for line in lines
    ).encode()
    try:
        file = await client.files.create(file=("promptdag-batch.jsonl", data), purpose="batch")
        batch = await client.batches.create(
            input_file_id=file.id, endpoint=ENDPOINT, completion_window="24h",
            metadata={"created_by": "promptdag"},
        )
    except openai.APIError as exc:
        raise _translate(model, exc) from None
    return batch.id


async def progress(model: Model, batch_id: str) -> BatchProgress:
    client = await _client(model)
    try:
        batch = await client.batches.retrieve(batch_id)
    except openai.APIError as exc:
        raise _translate(model, exc) from None
    counts = batch.request_counts
    files = {name: value for name, value in (("output", batch.output_file_id),
                                             ("error", batch.error_file_id)) if value}
    return BatchProgress(
        status=batch.status,
        ended=batch.status in ENDED,
        total=counts.total if counts else 0,
        succeeded=counts.completed if counts else 0,
        failed=counts.failed if counts else 0,
        files=files,
    )


async def results(model: Model, batch_id: str, progress: BatchProgress) -> BatchOutcome:
    """Every line's answer or failure, from the output and error files."""
    client = await _client(model)
    outcome = BatchOutcome(status=progress.status)
    for kind in ("output", "error"):
        file_id = progress.files.get(kind)
        if not file_id:
            continue
        try:
            content = await client.files.content(file_id)
        except openai.APIError as exc:
            raise _translate(model, exc) from None
        for text in content.text.splitlines():
            if text.strip():
                _read_line(model, json.loads(text), outcome)
    return outcome


def _read_line(model: Any, line: dict[str, Any], outcome: BatchOutcome) -> None:
    cid = str(line.get("custom_id"))
    response = line.get("response") or {}
    error = line.get("error")
    if error is None and response.get("status_code") == 200:
        try:
            outcome.answers[cid] = _completion(model, response.get("body") or {})
        except ProviderError as exc:
            outcome.failures[cid] = str(exc)
        return
    if isinstance(error, dict):
        why = f"{error.get('message') or 'failed'} [{error.get('code') or 'error'}]"
    else:
        body = response.get("body") or {}
        found = body.get("error")
        detail = found if isinstance(found, dict) else {}
        why = (f"HTTP {response.get('status_code')}: "
               f"{detail.get('message') or 'failed'} [{detail.get('type') or 'error'}]")
    outcome.failures[cid] = clip(f"{model.label}: batch: {why}")


def _completion(model: Any, body: dict[str, Any]) -> Completion:
    """A chat completion (as the output file holds it) at the batch price."""
    choices = body.get("choices")
    if not isinstance(choices, list) or not choices:
        raise garbled_answer(model.label, ValueError("the batch answer has no choices"))
    message = choices[0].get("message") or {}
    if message.get("content") is None:
        raise PermanentProviderError(f"{model.label}: the batch answer has no text")
    usage = body.get("usage") or {}
    input_tokens = int(usage.get("prompt_tokens") or 0)
    output_tokens = int(usage.get("completion_tokens") or 0)
    reason = choices[0].get("finish_reason")
    return Completion(
        text=message["content"],
        model=model.name,
        finish_reason="stop" if reason in ("tool_calls", "function_call") else reason,
        usage=Usage(input_tokens=input_tokens, output_tokens=output_tokens,
                    cost_usd=batch_cost_usd(model.name, input_tokens, output_tokens)),
    )


def _translate(model: Any, exc: openai.APIError) -> ProviderError:
    if isinstance(exc, openai.APIConnectionError):  # a timeout too: the next poll may do
        return connection_error(model.label, exc)
    if isinstance(exc, openai.APIStatusError):
        body = exc.body if isinstance(exc.body, dict) else {}
        detail = str(body.get("message") or exc.message)
        return status_error(model.label, exc.status_code, detail, exc.response.headers)
    return PermanentProviderError(clip(f"{model.label}: {type(exc).__name__}: {exc.message}"))
