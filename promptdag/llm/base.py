"""The provider interface: one Protocol every model adapter implements.

Tasks pass model *strings* ("openai:gpt-4o-mini"), never clients: strings serialise, hash into
cache keys and read well in the Prefect UI. The registry turns a string into a `Model`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel, Field, computed_field


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
    max_tokens: int | None = Field(
        None,
        description="Output-token limit for this call, above the model's `max_tokens` option "
        "(structured output doubles it once for an answer cut by the limit).",
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
    finish_reason: str | None = Field(
        None,
        description='Why the model stopped: "stop" (its own end, a stop sequence or a tool '
        'call), "length" (the token limit), or the vendor\'s own word; None when unknown.',
    )

    @computed_field  # type: ignore[prop-decorator]
    @property
    def truncated(self) -> bool:
        """True when the model stopped at its token limit: the answer is cut short."""
        return self.finish_reason == "length"


@runtime_checkable
class Model(Protocol):
    """A model behind a "provider:model" string.

    Implementations translate their vendor's failures into `RetryableProviderError` (rate
    limits, 5xx, timeouts, dropped connections) or `PermanentProviderError` (everything a retry
    cannot fix). They never retry on their own: Prefect's retry budget is the only one.

    Models may also define `async def context_window(self) -> int | None` (the tokens of
    prompt plus answer one call may hold, None when unknown); `context_window_of` reads it from
    any model, so models without it (registered providers, test fakes) keep working.
    """

    name: str

    async def complete(self, request: CompletionRequest) -> Completion: ...


TextSink = Callable[[str], None]
"""Receives each piece of a streamed answer as it arrives."""


@runtime_checkable
class WithStreaming(Protocol):
    """A model that can stream its answer: `on_text` hears each piece as it is generated, and
    the whole completion (usage, finish reason) is returned at the end, as `complete` returns
    it. A request it cannot stream (a server that will not stream a constrained answer) raises
    `StreamUnsupported` before any text: the caller then asks with `complete`."""

    async def stream(self, request: CompletionRequest, on_text: TextSink) -> Completion: ...


class StreamUnsupported(Exception):
    """This model or server does not stream this request; ask with `complete` instead.
    `first` is True the first time this process learns it (say it once in the log)."""

    def __init__(self, message: str, first: bool = True) -> None:
        super().__init__(message)
        self.first = first


@runtime_checkable
class WithContextWindow(Protocol):
    """A model that knows its context window."""

    async def context_window(self) -> int | None: ...


async def context_window_of(model: Model) -> int | None:
    """The model's context window in tokens, None when the model does not say or cannot know."""
    if isinstance(model, WithContextWindow):
        return await model.context_window()
    return None


def estimate_tokens(text: str) -> int:
    """A conservative token count for `text` without a tokenizer (about three characters a
    token: more than real tokenizers count for English, so a prompt estimated to fit does)."""
    return len(text) // 3 + 1
