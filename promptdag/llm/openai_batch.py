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
from functools import partial
from typing import Any, Final

import openai
from openai.types.chat import ChatCompletion

from promptdag.errors import ProviderError
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
from promptdag.llm.transport import clip, garbled_answer

ENDPOINT: Final = "/v1/chat/completions"
ENDED = frozenset({"completed", "expired", "failed", "cancelled"})


def body(model: Any, request: CompletionRequest) -> dict[str, Any]:
    """The chat-completions body the per-call adapter would send for `request`."""
    return flat_body(model._body(request))


async def submit(model: Any, lines: list[BatchLine]) -> str:
    """Upload the lines and create the batch; its id."""
    client = await client_of(model, openai.AsyncOpenAI)
    data = "".join(
        json.dumps({"custom_id": line.custom_id, "method": "POST", "url": ENDPOINT,
                    "body": line.body}, ensure_ascii=False) + "\n"
        for line in lines
    ).encode()
    file = await sdk_call(model, lambda: client.files.create(
        file=("promptdag-batch.jsonl", data), purpose="batch"))
    batch = await sdk_call(model, lambda: client.batches.create(
        input_file_id=file.id, endpoint=ENDPOINT, completion_window="24h",
        metadata={"created_by": "promptdag"}))
    return str(batch.id)


async def progress(model: Any, batch_id: str) -> BatchProgress:
    client = await client_of(model, openai.AsyncOpenAI)
    batch = await sdk_call(model, lambda: client.batches.retrieve(batch_id))
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


async def results(model: Any, batch_id: str, progress: BatchProgress) -> BatchOutcome:
    """Every line's answer or failure, from the output and error files."""
    client = await client_of(model, openai.AsyncOpenAI)
    outcome = BatchOutcome(status=progress.status)
    for kind in ("output", "error"):
        file_id = progress.files.get(kind)
        if not file_id:
            continue
        content = await sdk_call(model, partial(client.files.content, file_id))
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
            answer = ChatCompletion.model_validate(response.get("body") or {})
        except ValueError as exc:
            outcome.failures[cid] = str(garbled_answer(model.label, exc))
            return
        try:  # read as the per-call adapter reads an answer (refusals, finish reasons)
            outcome.answers[cid] = at_batch_price(model._completion(answer))
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
