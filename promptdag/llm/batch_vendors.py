"""Which module speaks a provider's batch API (see llm/batch_api.py): one per vendor."""

from __future__ import annotations

from typing import Any, Protocol

from promptdag.llm.base import CompletionRequest
from promptdag.llm.batch_api import BATCH_PROVIDERS, BatchLine, BatchOutcome, BatchProgress


class BatchVendor(Protocol):
    """One vendor's batch wire (see openai_batch.py, anthropic_batch.py)."""

    def body(self, model: Any, request: CompletionRequest) -> dict[str, Any]: ...

    async def submit(self, model: Any, lines: list[BatchLine]) -> str: ...

    async def progress(self, model: Any, batch_id: str) -> BatchProgress: ...

    async def results(self, model: Any, batch_id: str, progress: BatchProgress) -> BatchOutcome:
        ...


def vendor(provider: str) -> BatchVendor:
    """The batch wire of a provider in BATCH_PROVIDERS (imported on first use)."""
    if provider == "openai":
        from promptdag.llm import openai_batch

        return openai_batch
    if provider == "anthropic":
        from promptdag.llm import anthropic_batch

        return anthropic_batch
    raise ValueError(f"provider {provider!r} has no batch API (only {', '.join(BATCH_PROVIDERS)})")
