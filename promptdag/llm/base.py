"""The provider interface: one Protocol every model adapter implements.

Tasks pass model *strings* ("openai:gpt-4o-mini"), never clients: strings serialise, hash into
cache keys and read well in the Prefect UI. The registry turns a string into a `Model`.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel, Field


class Usage(BaseModel):
    """Tokens and money one or more calls cost."""

    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            cost_usd=round(self.cost_usd + other.cost_usd, 10),
        )


class CompletionRequest(BaseModel):
    """What a task asks of a model."""

    prompt: str
    system: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)
    attempt: int = Field(1, description="1 for the first call of a task run, 2 for its retry...")
    task_name: str | None = None
    response_schema: dict[str, Any] | None = Field(
        None, description="JSON schema the answer must satisfy (structured output)."
    )
    timeout_seconds: float | None = Field(
        None,
        description="HTTP timeout for this call. The engine sets it below the task timeout, so "
        "a stuck socket read fails as a retryable timeout before Prefect's timeout fires.",
    )
    metadata: dict[str, Any] = Field(
        default_factory=dict,
        description="What the call is for (role, round, objective...). Real providers ignore "
        "it; the simulated model answers structured requests from it.",
    )


class Completion(BaseModel):
    """A model's answer."""

    text: str
    model: str
    usage: Usage = Field(default_factory=Usage)


@runtime_checkable
class Model(Protocol):
    """A model behind a "provider:model" string.

    Implementations translate their vendor's failures into `RetryableProviderError` (rate
    limits, 5xx, timeouts, dropped connections) or `PermanentProviderError` (everything a retry
    cannot fix). They never retry on their own: Prefect's retry budget is the only one.
    """

    name: str

    async def complete(self, request: CompletionRequest) -> Completion: ...
