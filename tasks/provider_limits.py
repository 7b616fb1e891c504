"""Optional per-provider limits that hold across concurrent flow runs: Prefect global
concurrency limits, off by default.

With `PROMPTDAG_PROVIDER_LIMITS='{"openai": {"max_in_flight": 8, "requests_per_second": 5}}'`,
each call to that provider first takes a token of the rate limit `promptdag:openai:rate` (slots
decay at `requests_per_second`), then holds a slot of `promptdag:openai` (at most `max_in_flight`)
for the call. Both live in the Prefect server, so they bind every flow run and process that uses
it; each process creates them, or updates them to its settings, the first time it uses them.

Time spent waiting for a slot counts against the task's timeout (the HTTP timeout is computed
after the slot is granted). Server-side slots are slow to hand over (a refused acquisition backs
off for a server-chosen interval), so a workflow's breadth limit never depends on them: that
one is the scheduler's, in memory.
"""

from __future__ import annotations

import asyncio
import math
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from prefect.client.orchestration import get_client
from prefect.concurrency.asyncio import concurrency, rate_limit
from prefect.exceptions import ObjectAlreadyExists

from promptdag.llm.registry import split_model
from promptdag.settings import ProviderLimit, get_settings

_ensured: set[tuple[str, int, float | None]] = set()
_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
    weakref.WeakKeyDictionary()
)


def limit_names(provider: str) -> tuple[str, str]:
    """(concurrency limit, rate limit) names for a provider."""
    return f"promptdag:{provider}", f"promptdag:{provider}:rate"


async def _ensure(name: str, limit: int, decay: float | None) -> None:
    if (name, limit, decay) in _ensured:
        return
    async with _lock(), get_client() as client:
        if (name, limit, decay) in _ensured:
            return
        try:
            await client.upsert_global_concurrency_limit_by_name(name, limit, decay)
        except ObjectAlreadyExists:  # another process created it between read and create
            await client.upsert_global_concurrency_limit_by_name(name, limit, decay)
        _ensured.add((name, limit, decay))


def _lock() -> asyncio.Lock:
    """One lock per event loop: concurrent tasks of a run create a limit once."""
    loop = asyncio.get_running_loop()
    if loop not in _locks:
        _locks[loop] = asyncio.Lock()
    return _locks[loop]


async def ensure_limits(provider: str, limit: ProviderLimit) -> None:
    """Create or update the provider's limits in the Prefect server (once per process)."""
    in_flight, rate = limit_names(provider)
    if limit.requests_per_second:
        burst = max(1, math.ceil(limit.requests_per_second))
        await _ensure(rate, burst, limit.requests_per_second)
    if limit.max_in_flight:
        await _ensure(in_flight, limit.max_in_flight, None)


@asynccontextmanager
async def provider_slot(model: str) -> AsyncIterator[None]:
    """Hold the provider's cross-run slot (if a limit is configured) around one model call."""
    provider = split_model(model)[0]
    limit = get_settings().provider_limits.get(provider)
    if limit is None:
        yield
        return
    await ensure_limits(provider, limit)
    in_flight, rate = limit_names(provider)
    if limit.requests_per_second:
        await rate_limit(rate, occupy=1, strict=True)
    if limit.max_in_flight:
        async with concurrency(in_flight, occupy=1, strict=True):
            yield
    else:
        yield
