"""Provider batch APIs: many calls sent as one job, answered within hours at half the price.

OpenAI's Batch API (a JSONL file uploaded to `/v1/files` with purpose `batch`, a job created at
`/v1/batches`, an output file and an error file when it ends) and Anthropic's Message Batches
(`/v1/messages/batches`, results as JSONL at the batch's `results_url`) differ on the wire and
agree on the idea; this module holds the idea, one module per vendor the wire
(`openai_batch`, `anthropic_batch`, found by `batch_vendors.vendor`):

- `BatchLine`: one call, the request body exactly as the vendor's per-call endpoint takes it
  (built by the model's own adapter, so a batched call asks what a direct call would ask);
- `BatchHandle`: what identifies a submitted batch (persisted, so a killed run re-attaches);
- `BatchProgress`: the batch's state as the vendor reports it, for progress and for the poll;
- `BatchOutcome`: per line, an answer (a `Completion` at the discounted price) or why not
  (errored, expired, cancelled): those calls go through the normal per-call path.

Vendor errors become ours in the vendor modules, as the per-call adapters do.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from pydantic import BaseModel, Field

from promptdag.llm.base import Completion
from promptdag.llm.keys import mask_keys, resolve_key
from promptdag.llm.pricing import batch_cost_usd
from promptdag.llm.transport import cached_client
from promptdag.settings import get_settings

BATCH_PROVIDERS = ("openai", "anthropic")
T = TypeVar("T")


class BatchLine(BaseModel):
    """One call of a batch: the vendor's request body, under an id unique in the batch."""

    custom_id: str = Field(..., description="Matches the answer to its call ([A-Za-z0-9_-]).")
    body: dict[str, Any] = Field(..., description="The per-call endpoint's request body.")


class BatchHandle(BaseModel):
    """A submitted batch: enough to find it again from another process."""

    provider: str
    model: str = Field(..., description='The "provider:model" string every line asks.')
    batch_id: str
    requests: int


class BatchProgress(BaseModel):
    """A batch's state as its vendor reports it."""

    status: str = Field(..., description="The vendor's word: in_progress, finalizing, ended...")
    ended: bool = Field(..., description="No line will change any more: fetch the results.")
    total: int
    succeeded: int = 0
    failed: int = Field(0, description="Errored, expired or cancelled lines so far.")
    files: dict[str, str] = Field(
        default_factory=dict, description="Where the results are (OpenAI: output/error file ids)."
    )

    def line(self, handle: BatchHandle) -> str:
        """One line for progress: `batch_abc (openai:gpt-4o-mini): in_progress, 3 of 8 done`."""
        done = self.succeeded + self.failed
        failed = f", {self.failed} failed" if self.failed else ""
        return (f"batch {handle.batch_id} ({handle.model}): {self.status}, "
                f"{done} of {self.total} done{failed}")


class BatchOutcome(BaseModel):
    """What an ended batch answered, line by line."""

    status: str
    answers: dict[str, Completion] = Field(default_factory=dict)
    failures: dict[str, str] = Field(
        default_factory=dict, description="custom_id -> why the batch did not answer it."
    )


async def client_of(model: Any, sdk_client: Callable[..., T]) -> T:
    """An SDK client for the model's batches: its key and base URL as the per-call adapter
    resolves them, retries off, and no `max_answer_bytes` bound (llm/answer_size.py): a batch's
    results file holds every line's answer and is as large as the batch is."""
    key = await resolve_key(model.name, model.provider, model.options)
    return cached_client((f"{model.provider}-batch", model.base_url, key),
                         lambda: sdk_client(api_key=key, base_url=model.base_url, max_retries=0))


async def sdk_call(model: Any, create: Callable[[], Awaitable[T]]) -> T:
    """`create()` with the SDK's errors translated as the per-call adapter translates them."""
    try:
        return await create()
    except model.sdk.APIError as exc:
        raise model._translate(exc, get_settings().http_timeout_seconds) from None


def at_batch_price(completion: Completion) -> Completion:
    """A completion read by the per-call adapter, priced as a batch answer, with every
    configured key it echoes masked (as the one model-call path masks answers)."""
    usage = completion.usage.model_copy(update={"cost_usd": batch_cost_usd(
        completion.model, completion.usage.input_tokens, completion.usage.output_tokens)})
    return completion.model_copy(update={"usage": usage, "text": mask_keys(completion.text)})


def custom_id(name: str) -> str:
    """A line's id from its task's name: stable across runs (a resumed run rebuilds the same
    batch, so its cache key finds the batch already submitted) and within Anthropic's alphabet."""
    return "t-" + hashlib.sha256(name.encode()).hexdigest()[:40]


def flat_body(body: dict[str, Any]) -> dict[str, Any]:
    """A per-call body as a batch line carries it: the SDK's `extra_body` merged into the JSON,
    as the SDK itself would send it."""
    extra = body.pop("extra_body", None) or {}
    return {**body, **extra}


def next_poll(wait: float, limit: float) -> float:
    """The wait before the next poll: 1.5 times the last, at most `limit`."""
    return min(limit, wait * 1.5)


# Progress of the batches a run waits for, for whoever shows it (the CLI); in-process, as
# engine/events.py is for tasks. A listener must be quick and must not raise.
_watchers: list[Callable[[str], None]] = []


def watch(listener: Callable[[str], None]) -> Callable[[], None]:
    """Send every batch state line to `listener`; returns the function that stops it."""
    _watchers.append(listener)
    return lambda: _watchers.remove(listener) if listener in _watchers else None


def report(line: str) -> None:
    for listener in list(_watchers):
        try:
            listener(line)
        except Exception:  # a display problem must never break a run
            pass
