"""A model whose every call is paced and paid for: the wrapper the one model-call path puts
around the registry's model.

Before each HTTP call (a structured answer may take several), the call's tokens are estimated
(prompt + its `max_tokens`) once, and that estimate is used twice: the budget ledgers admit it or
refuse the call (promptdag/engine/budget.py), and the provider's limits hold it
(tasks/provider_limits.py: Retry-After pauses, tokens and requests per minute, capacity). The
answer's usage then replaces the estimate in both.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from promptdag.engine.budget import Estimate, current_ledger
from promptdag.llm.base import (
    Completion,
    CompletionRequest,
    Model,
    StreamUnsupported,
    TextSink,
    Usage,
    WithStreaming,
    context_window_of,
    estimate_tokens,
)
from promptdag.llm.pricing import cost_usd
from promptdag.settings import get_settings
from promptdag.tasks.provider_limits import pace, settle_usage


class PacedModel:
    """`Model` around another `Model` (see module docstring)."""

    def __init__(self, inner: Model, options: dict[str, Any]) -> None:
        self.inner = inner
        self.name = inner.name
        self.options = options
        base_url: str | None = getattr(inner, "base_url", None)
        self.base_url = base_url
        provider = self.name.split(":", 1)[0]
        self.endpoint: str = getattr(inner, "endpoint", None) or provider

    def estimate(self, request: CompletionRequest) -> tuple[int, int]:
        """(prompt tokens, answer tokens) this request may take."""
        prompt = estimate_tokens((request.system or "") + request.prompt)
        answer = request.max_tokens or int(
            self.options.get("max_tokens") or get_settings().default_max_tokens
        )
        return prompt, answer

    async def complete(self, request: CompletionRequest) -> Completion:
        return await self._paced(request, self.inner.complete)

    async def stream(self, request: CompletionRequest, on_text: TextSink) -> Completion:
        """Streamed, paced and paid for as `complete` is; `StreamUnsupported` when the wrapped
        model cannot stream."""
        inner = self.inner
        if not isinstance(inner, WithStreaming):
            raise StreamUnsupported(f"{self.name} does not stream", first=False)
        return await self._paced(request, lambda r: inner.stream(r, on_text))

    async def _paced(
        self, request: CompletionRequest, send: Callable[[CompletionRequest], Awaitable[Completion]]
    ) -> Completion:
        tokens_in, tokens_out = self.estimate(request)
        estimate = Estimate(tokens_in + tokens_out, cost_usd(self.name, tokens_in, tokens_out))
        ledger = current_ledger()
        if ledger is not None:
            ledger.admit(estimate)  # BudgetExhausted: no call starts
        usage: Usage | None = None
        try:
            async with pace(self.name, self.endpoint, self.base_url, tokens_in, tokens_out) as held:
                try:
                    completion = await send(request)
                except BaseException:
                    await settle_usage(held, None)
                    raise
            if completion.usage.input_tokens or completion.usage.output_tokens:
                usage = completion.usage  # else the answer did not say: keep the estimate
            await settle_usage(held, usage)
            return completion
        finally:
            if ledger is not None:
                ledger.settle(estimate, usage)

    async def context_window(self) -> int | None:
        return await context_window_of(self.inner)
